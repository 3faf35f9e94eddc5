"""Relay: a routed stream from the deployment that answered to the client, chunk by chunk as it
arrives, read for the trace as it passes; a break after the first byte is told to the client in its
own shape, since nothing can be retried once the client has seen part of an answer. The call is
recorded (`answered`) before the final bytes go out, so it is in the journal before the client can
have read its end."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass

import aiohttp
from aiohttp import web

from addons.secrets import scrub
from addons.upstream import RawStreamAnswer, StreamAnswer
from providers import INNER_CHAT
from providers.base import ResponseFacts, Route, StreamState
from providers.chat import ProviderStreamError
from providers.stream import StreamParser


def remaining(deadline: float) -> float:
    """Seconds left of the call's one deadline (router `timeout`), which the stream is held to too."""
    return max(deadline - time.monotonic(), 0.001)


SSE_HEADERS = {"content-type": "text/event-stream; charset=utf-8", "cache-control": "no-cache"}


@dataclass
class Outcome:
    facts: ResponseFacts
    finished: bool
    chars: int
    body: str | None
    status: str = "ok"
    error: str | None = None

    @classmethod
    def of(cls, state: StreamState, status: str, error: str | None) -> Outcome:
        facts = ResponseFacts(state.usage, state.response_model, state.error)
        return cls(facts, state.finished, state.output.chars, state.output.as_json(), status, error)


class ChatRelay:
    """OpenAI chunks from the translator, written in the client's shape (OpenAI SSE or Anthropic events).
    `cancelled`: the router's handler was cancelled (its client left) while the relay waited; the
    outcome says so and the caller re-raises once it is recorded."""

    cancelled = False

    def __init__(self, answer: StreamAnswer, out, deadline: float, headers: dict[str, str] | None = None,
                 keep: list | None = None) -> None:
        self.answer, self.out, self.deadline = answer, out, deadline
        self.keep = keep  # when given, every OpenAI chunk is kept here (the cache assembles the answer)
        self.response = web.StreamResponse(headers={**SSE_HEADERS, **(headers or {})})

    async def run(self, request: web.Request, first_chunk: Callable[[], None],
                  answered: Callable[[Outcome], None]) -> Outcome:
        answer, out, state = self.answer, self.out, StreamState()
        status, error, chunks = "ok", None, answer.chunks
        try:
            await self.response.prepare(request)
            while chunks:
                for chunk in chunks:
                    INNER_CHAT.wire.stream_event(INNER_CHAT.route, state, None, chunk)
                if self.keep is not None:
                    self.keep += chunks
                if data := out.feed(chunks):
                    first_chunk()
                    await self.response.write(data)
                try:
                    chunks = await asyncio.wait_for(answer.more(), remaining(self.deadline))
                except (ProviderStreamError, aiohttp.ClientError, TimeoutError) as e:
                    code = e.status if isinstance(e, ProviderStreamError) else 502
                    why = "passed the call's timeout" if isinstance(e, TimeoutError) else f"broke: {e or type(e).__name__}"
                    status, error = "upstream_error", scrub(f"{answer.target.name}: stream {why}", [answer.target.key])
                    await self.response.write(out.error(code, "server_error", error))
                    break
            if status == "ok":
                state.finished = True
                answered(Outcome.of(state, status, error))
                await self.response.write(out.close())
            await self.response.write_eof()
        except ConnectionError as e:
            status, error = "client_disconnected", f"the client left mid-stream: {type(e).__name__}"
        except asyncio.CancelledError:
            status, error, self.cancelled = "client_disconnected", "the client left mid-stream", True
        finally:
            answer.release()  # an unfinished answer's connection is closed, not pooled
        return Outcome.of(state, status, error)


class RawRelay:
    """Bytes as the provider sent them (the client speaks the provider's shape), parsed as they pass."""

    cancelled = False

    def __init__(self, answer: RawStreamAnswer, route: Route, deadline: float, keep: list | None = None) -> None:
        self.answer, self.deadline = answer, deadline
        self.keep = keep  # when given, the raw bytes are kept here (the cache assembles the answer)
        self.parser = StreamParser(route, answer.response.headers.get("content-type", "text/event-stream"))
        self.response = web.StreamResponse(headers=SSE_HEADERS)

    async def run(self, request: web.Request, first_chunk: Callable[[], None],
                  answered: Callable[[Outcome], None]) -> Outcome:
        answer, status, error = self.answer, "ok", None
        data = answer.first
        state = self.parser.state
        try:
            await self.response.prepare(request)
            while data:
                self.parser.feed(data)
                if state.finished and answered is not None:  # the final event is in this chunk
                    answered(Outcome.of(state, *verdict(state, "ok", None)))
                    answered = None
                if self.keep is not None:
                    self.keep.append(data)
                first_chunk()
                await self.response.write(data)
                try:
                    data = await asyncio.wait_for(answer.more(), remaining(self.deadline))
                except (aiohttp.ClientError, TimeoutError) as e:
                    status, error = "upstream_error", f"{answer.target.name}: stream broke: {type(e).__name__}"
                    break
            self.parser.close()
            await self.response.write_eof()
        except ConnectionError as e:
            status, error = "client_disconnected", f"the client left mid-stream: {type(e).__name__}"
        except asyncio.CancelledError:
            status, error, self.cancelled = "client_disconnected", "the client left mid-stream", True
        finally:
            answer.release()
        return Outcome.of(state, *verdict(state, status, error))


def verdict(state: StreamState, status: str, error: str | None) -> tuple[str, str | None]:
    """(status, error) of a relayed stream that was "ok" as far as the connections go: an error event
    (or one that could not be read) makes it an error, a stream cut before its final event incomplete."""
    if status == "ok" and state.error:
        return "error", state.error
    if status == "ok" and not state.finished:
        return "incomplete", "the stream ended before its final event"
    return status, error
