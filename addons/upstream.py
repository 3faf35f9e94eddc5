"""The router's client side: one pooled aiohttp session, and one attempt at one deployment that ends
either in an answer (a whole translated body, or a stream with its first chunks in hand) or a Failure."""

from __future__ import annotations

import asyncio
import email.utils
import json
import time
from dataclasses import dataclass, field
from typing import Any

import aiohttp

from addons.router_errors import Failure
from addons.routing import Target
from providers.chat import ChatStream, ProviderStreamError, UpstreamRequest, error_summary, translate_frames
from providers.safe_json import TooDeep, loads
from providers.sse import SSEDecoder

READ_SIZE = 64 * 1024


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
    response: aiohttp.ClientResponse
    decoder: SSEDecoder
    translator: ChatStream
    chunks: list[dict[str, Any]] = field(default_factory=list)
    ended: bool = False

    async def more(self) -> list[dict[str, Any]]:
        """The next OpenAI chunks ([] at the end). Raises ProviderStreamError, aiohttp.ClientError."""
        while not self.ended:
            data = await self.response.content.readany()
            if not data:
                self.ended = True
                return translate_frames(self.translator, self.decoder.close()) + self.translator.close()
            if chunks := translate_frames(self.translator, self.decoder.feed(data)):
                return chunks
        return []

    def release(self) -> None:
        self.response.release()


@dataclass
class RawStreamAnswer:
    """A stream relayed byte for byte (/v1/responses): its first bytes are in hand."""

    target: Target
    status: int
    response: aiohttp.ClientResponse
    first: bytes
    ended: bool = False

    async def more(self) -> bytes:
        data = await self.response.content.readany()
        self.ended = not data
        return data

    def release(self) -> None:
        self.response.release()


class Upstream:
    """Holds the session: keep-alive connections to every provider, shared by all routed calls."""

    def __init__(self) -> None:
        self.session: aiohttp.ClientSession | None = None

    async def start(self) -> None:
        if self.session is None:
            connector = aiohttp.TCPConnector(limit=0, ttl_dns_cache=300, enable_cleanup_closed=True)
            self.session = aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=None),
                                                 skip_auto_headers=("User-Agent",))

    async def close(self) -> None:
        if self.session is not None:
            await self.session.close()
            self.session = None

    async def attempt(self, target: Target, request: UpstreamRequest, *, stream: bool, remaining: float,
                      connect_timeout: float, first_byte_timeout: float,
                      as_is: bool = False) -> WholeAnswer | StreamAnswer | RawStreamAnswer | Failure:
        """One try: send, wait for the answer's first byte (a stream: its first chunk), read or hold it.
        `as_is`: the provider already speaks the client's shape; nothing is translated."""
        assert self.session is not None, "Upstream.start() first"
        headers = {"content-type": "application/json", **request.headers, **dict(target.headers)}
        if target.key:
            headers.update(target.endpoint.adapter.auth_headers(target.key))
        first_byte = min(first_byte_timeout, remaining)
        started = time.monotonic()
        timeout = aiohttp.ClientTimeout(total=None, sock_connect=min(connect_timeout, remaining))
        try:
            response = await asyncio.wait_for(
                self.session.post(target.base_url + request.path, data=json.dumps(request.body).encode(),
                                  headers=headers, timeout=timeout),
                first_byte,
            )
        except aiohttp.ConnectionTimeoutError:
            return Failure("connect_timeout", f"no connection within {connect_timeout:g} s")
        except TimeoutError:
            return Failure("first_byte_timeout", f"no answer within {first_byte:g} s")
        except aiohttp.ClientConnectorError as e:
            return Failure("connect", f"connection failed: {e.os_error.strerror or e.os_error}")
        except aiohttp.ClientError as e:
            return Failure("reset", f"{type(e).__name__}: {e}".rstrip(": "))
        left = first_byte - (time.monotonic() - started)
        try:
            if response.status >= 400:
                raw = await asyncio.wait_for(response.read(), max(left, 1.0))
                response.release()
                return http_failure(response.status, raw, response.headers)
            if not stream:  # the first body byte is due within the first-byte timeout too
                raw = await asyncio.wait_for(response.content.readany(), max(left, 0.001))
                raw += await asyncio.wait_for(response.content.read(), remaining - (time.monotonic() - started))
                try:
                    parsed = loads(raw)
                    body = parsed if as_is else target.endpoint.adapter.chat_response(parsed, target.model)
                except TooDeep as e:
                    return Failure("http", f"the provider's answer is not JSON: {e}", response.status)
                except ValueError:
                    return Failure("http", "the provider's answer is not JSON", response.status)
                return WholeAnswer(target, response.status, body, raw)
            if as_is:
                first = await asyncio.wait_for(response.content.readany(), max(left, 0.001))
                if not first:
                    response.release()
                    return Failure("reset", "the stream ended before its first byte")
                return RawStreamAnswer(target, response.status, response, first)
            answer = StreamAnswer(target, response.status, response, SSEDecoder(),
                                  target.endpoint.adapter.chat_stream(target.model, True))
            answer.chunks = await asyncio.wait_for(answer.more(), max(left, 0.001))
            if not answer.chunks:
                response.release()
                return Failure("reset", "the stream ended before its first event")
            return answer
        except TimeoutError:
            response.close()
            return Failure("first_byte_timeout", f"no first byte within {first_byte:g} s")
        except ProviderStreamError as e:
            response.close()
            return Failure("stream_error", str(e), e.status, e.type)
        except aiohttp.ClientError as e:
            response.close()
            return Failure("reset", f"the connection broke: {type(e).__name__}")
        except asyncio.CancelledError:  # the client left: this attempt's connection goes now, not at a timeout
            response.close()
            raise
        finally:
            if not stream:
                response.release()


def http_failure(status: int, raw: bytes, headers) -> Failure:
    """A provider's error response as a Failure: its message and code, and how long it asks us to wait."""
    message, code = error_summary(raw)
    return Failure("http", message or f"HTTP {status}", status, code, retry_after(headers))


def retry_after(headers) -> float | None:
    """Seconds to wait from retry-after-ms (OpenAI, Azure) or Retry-After (seconds or an HTTP date)."""
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
        return max(0.0, email.utils.parsedate_to_datetime(value).timestamp() - time.time())
    except (TypeError, ValueError):
        return None
