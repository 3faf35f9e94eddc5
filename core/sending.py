"""The seam between the router and the network: one attempt at one deployment, ending in a whole answer,
a stream with its first chunks in hand, or a Failure.

The router is given an `Upstream`; the real one (core/upstream.py) opens HTTP connections with aiohttp,
the tests' fake replays captured fixtures on a virtual clock. Both only open the response (`open`); what
follows (first-byte timeout, error bodies, translation, first chunks) is `OpeningUpstream.attempt`, here,
the same for both. Nothing here imports mitmproxy or an HTTP library."""

from __future__ import annotations

import email.utils
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from core.clock import SYSTEM, Clock
from core.errors import Failure
from core.routing import Target
from providers.chat import ChatStream, ProviderStreamError, UpstreamRequest, error_summary, translate_frames
from providers.safe_json import TooDeep, loads
from providers.sse import SSEDecoder


class UpstreamBroke(Exception):
    """The provider's connection broke while its body was read. `kind` names what broke it."""

    def __init__(self, message: str, kind: str = "") -> None:
        super().__init__(message)
        self.kind = kind or message


class Body(Protocol):
    """A response body being received. Reads raise UpstreamBroke."""

    async def readany(self) -> bytes:
        """What has arrived (waiting for something); b"" at the end."""

    async def read(self) -> bytes:
        """All the rest."""

    def release(self) -> None:
        """Done with it: a finished connection may be reused."""

    def close(self) -> None:
        """Drop the connection now."""


@dataclass
class Opened:
    """A response whose status and headers have arrived."""

    status: int
    headers: Mapping[str, str]  # looked up by lower-case name
    body: Body


@dataclass
class WholeAnswer:
    target: Target
    status: int
    body: dict[str, Any]  # the OpenAI chat.completion
    raw: bytes  # the provider's own body, for the trace


@dataclass
class StreamAnswer:
    """A stream that has produced its first OpenAI chunks; nothing has reached the client yet."""

    target: Target
    status: int
    body: Body
    decoder: SSEDecoder
    translator: ChatStream
    chunks: list[dict[str, Any]] = field(default_factory=list)
    ended: bool = False
    on_release: Callable[[bool], None] | None = None  # told once, when released, whether the stream ended

    async def more(self) -> list[dict[str, Any]]:
        """The next OpenAI chunks ([] at the end). Raises ProviderStreamError, UpstreamBroke."""
        while not self.ended:
            data = await self.body.readany()
            if not data:
                self.ended = True
                return translate_frames(self.translator, self.decoder.close()) + self.translator.close()
            if chunks := translate_frames(self.translator, self.decoder.feed(data)):
                return chunks
        return []

    def release(self) -> None:
        self.body.release()
        _released(self)


def _released(answer: StreamAnswer | RawStreamAnswer) -> None:
    if (told := answer.on_release) is not None:
        answer.on_release = None
        told(answer.ended)


@dataclass
class RawStreamAnswer:
    """A stream relayed byte for byte (/v1/responses, same-dialect calls): its first bytes are in hand."""

    target: Target
    status: int
    body: Body
    first: bytes
    content_type: str = "text/event-stream"
    ended: bool = False
    on_release: Callable[[bool], None] | None = None  # told once, when released, whether the stream ended

    async def more(self) -> bytes:
        """The next bytes (b"" at the end). Raises UpstreamBroke."""
        data = await self.body.readany()
        self.ended = not data
        return data

    def release(self) -> None:
        self.body.release()
        _released(self)


type Answer = WholeAnswer | StreamAnswer | RawStreamAnswer


class Upstream(Protocol):
    """What the router sends through: one try at one deployment."""

    async def start(self) -> None: ...

    async def close(self) -> None: ...

    async def attempt(self, target: Target, request: UpstreamRequest, *, stream: bool, remaining: float,
                      connect_timeout: float, first_byte_timeout: float, as_is: bool = False) -> Answer | Failure:
        """Send, wait for the answer's first byte (a stream: its first chunk), read or hold it.
        `remaining`: seconds left of the call's deadline. `as_is`: the provider already speaks the
        client's shape; nothing is translated."""


class OpeningUpstream:
    """An Upstream made of `open` (send the request, wait for the status line: transport-specific) and
    the rest of an attempt, which is not. Subclasses set `clock` and define `open`."""

    clock: Clock = SYSTEM

    async def start(self) -> None:
        pass

    async def close(self) -> None:
        pass

    async def open(self, target: Target, request: UpstreamRequest, connect_timeout: float) -> Opened | Failure:
        """Send the request; its response once the headers are in, or why not (connect, reset)."""
        raise NotImplementedError

    async def attempt(self, target: Target, request: UpstreamRequest, *, stream: bool, remaining: float,
                      connect_timeout: float, first_byte_timeout: float, as_is: bool = False) -> Answer | Failure:
        clock = self.clock
        first_byte = min(first_byte_timeout, remaining)
        started = clock.now()
        try:
            opened = await clock.within(self.open(target, request, min(connect_timeout, remaining)), first_byte)
        except TimeoutError:
            return Failure("first_byte_timeout", f"no answer within {first_byte:g} s")
        if isinstance(opened, Failure):
            return opened
        return await read_answer(target, opened, clock, stream=stream, as_is=as_is, started=started,
                                 first_byte=first_byte, remaining=remaining)


async def read_answer(target: Target, opened: Opened, clock: Clock, *, stream: bool, as_is: bool, started: float,
                      first_byte: float, remaining: float) -> Answer | Failure:
    """After the headers: an error body as a Failure, a whole body read and translated, or a stream held
    until its first chunk. The attempt `started` then; its first byte is due `first_byte` seconds after."""
    status, body = opened.status, opened.body
    left = first_byte - (clock.now() - started)
    try:
        if status >= 400:
            raw = await clock.within(body.read(), max(left, 1.0))
            body.release()
            return http_failure(status, raw, opened.headers, clock.wall())
        if not stream:  # the first body byte is due within the first-byte timeout too
            raw = await clock.within(body.readany(), max(left, 0.001))
            raw += await clock.within(body.read(), remaining - (clock.now() - started))
            try:
                parsed = loads(raw)
                answer = parsed if as_is else target.endpoint.adapter.chat_response(parsed, target.model)
            except TooDeep as e:
                return Failure("http", f"the provider's answer is not JSON: {e}", status)
            except ValueError:
                return Failure("http", "the provider's answer is not JSON", status)
            return WholeAnswer(target, status, answer, raw)
        if as_is:
            first = await clock.within(body.readany(), max(left, 0.001))
            if not first:
                body.release()
                return Failure("reset", "the stream ended before its first byte")
            return RawStreamAnswer(target, status, body, first,
                                   opened.headers.get("content-type", "text/event-stream"))
        held = StreamAnswer(target, status, body, SSEDecoder(), target.endpoint.adapter.chat_stream(target.model, True))
        held.chunks = await clock.within(held.more(), max(left, 0.001))
        if not held.chunks:
            body.release()
            return Failure("reset", "the stream ended before its first event")
        return held
    except TimeoutError:
        body.close()
        return Failure("first_byte_timeout", f"no first byte within {first_byte:g} s")
    except ProviderStreamError as e:
        body.close()
        return Failure("stream_error", str(e), e.status, e.type)
    except UpstreamBroke as e:
        body.close()
        return Failure("reset", f"the connection broke: {e.kind}")
    except BaseException:  # the client left (cancelled): this attempt's connection goes now, not at a timeout
        body.close()
        raise
    finally:
        if not stream:
            body.release()


def http_failure(status: int, raw: bytes, headers: Mapping[str, str], now: float) -> Failure:
    """A provider's error response as a Failure: its message and code, and how long it asks us to wait."""
    message, code = error_summary(raw)
    return Failure("http", message or f"HTTP {status}", status, code, retry_after(headers, now))


def retry_after(headers: Mapping[str, str], now: float) -> float | None:
    """Seconds to wait from retry-after-ms (OpenAI, Azure) or Retry-After (seconds, or an HTTP date
    compared with `now`, epoch seconds)."""
    if (ms := headers.get("retry-after-ms")) is not None:
        try:
            return max(0.0, float(ms) / 1000)
        except ValueError:
            pass
    value = headers.get("retry-after")
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        return max(0.0, email.utils.parsedate_to_datetime(value).timestamp() - now)
    except (TypeError, ValueError):
        return None
