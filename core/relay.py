"""Relay: a routed stream from the deployment that answered to the client, chunk by chunk as it
arrives, read for the trace as it passes; a break after the first byte is told to the client in its
own shape, since nothing can be retried once the client has seen part of an answer. The call is
recorded (`answered`) before the final bytes go out, so it is in the journal before the client can
have read its end. Written to a Sink (the router's HTTP response, or a test's list) and timed by a
Clock, so it imports no server."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Protocol

from core.clock import SYSTEM, Clock
from core.continuation import Resume, Seam
from core.outcome import Outcome
from core.policies.engine import StreamGuard
from core.policies.streaming import FrameFilter
from core.secrets import scrub
from core.sending import RawStreamAnswer, StreamAnswer, UpstreamBroke
from providers import INNER_CHAT
from providers.base import Route, StreamState
from providers.chat import ProviderStreamError
from providers.stream import StreamParser

SSE_HEADERS = {"content-type": "text/event-stream; charset=utf-8", "cache-control": "no-cache"}


class Sink(Protocol):
    """Where a relayed stream goes. Writes raise ConnectionError when the client has left."""

    async def prepare(self) -> None:
        """Send the status line and headers."""

    async def write(self, data: bytes) -> None: ...

    async def write_eof(self) -> None: ...


class Stalled(TimeoutError):
    """A started stream sent nothing for `stall` seconds (stream_timeouts.stall)."""


async def next_within[T](clock: Clock, more: Callable[[], Awaitable[T]], deadline: float,
                         stall: float | None = None) -> T:
    """The stream's next piece, within what is left of the call's one deadline (router `timeout`) and
    within `stall` seconds (raises Stalled when that limit is the one that passed)."""
    left = max(deadline - clock.now(), 0.001)
    if stall is None or stall >= left:
        return await clock.within(more(), left)
    try:
        return await clock.within(more(), stall)
    except TimeoutError:
        raise Stalled(f"no event for {stall:g} s") from None


def why_broken(e: BaseException) -> str:
    """A stream's break, as the client's error event and the row tell it."""
    if isinstance(e, Stalled):
        return f"stalled: {e}"
    if isinstance(e, TimeoutError):
        return "passed the call's timeout"
    return f"broke: {getattr(e, 'kind', None) or e or type(e).__name__}"


class Relay:
    """What both relays share. `cancelled`: the router's handler was cancelled (its client left) while
    the relay waited; the outcome says so and the caller re-raises once it is recorded."""

    cancelled = False

    def _client_left(self, e: BaseException) -> tuple[str, str]:
        """(status, error) of a stream whose client went away: a write that failed, or the handler cancelled."""
        self.cancelled = isinstance(e, asyncio.CancelledError)
        return "client_disconnected", "the client left mid-stream" + (
            "" if self.cancelled else f": {type(e).__name__}")


class ChatRelay(Relay):
    """OpenAI chunks from the translator, written in the client's shape (OpenAI SSE or Anthropic events)."""

    def __init__(self, answer: StreamAnswer, out, deadline: float, headers: dict[str, str] | None = None,
                 keep: list | None = None, clock: Clock = SYSTEM, stall: float | None = None,
                 resume: Resume | None = None, guard: StreamGuard | None = None) -> None:
        """`resume`: continue a broken stream on a fallback (core/continuation.py); None: end it with an error."""
        self.answer, self.out, self.deadline, self.clock, self.stall = answer, out, deadline, clock, stall
        self.keep = keep  # when given, every OpenAI chunk is kept here (the cache assembles the answer)
        self.headers = {**SSE_HEADERS, **(headers or {})}
        self.resume = resume
        self.continued: list[str] = []  # why each continuation was needed
        self.guard = guard  # the call's guardrails on the answer: restore, response policies

    async def run(self, sink: Sink, first_chunk: Callable[[], None], answered: Callable[[Outcome], None]) -> Outcome:
        answer, out, state = self.answer, self.out, StreamState()
        status, error, chunks, seam = "ok", None, answer.chunks, None
        first_id = next((c.get("id") for c in chunks if c.get("id")), None)
        try:
            await sink.prepare()
            while True:
                while chunks:
                    if seam is not None:
                        chunks = seam.join(chunks)
                    for chunk in chunks:
                        INNER_CHAT.wire.stream_event(INNER_CHAT.route, state, None, chunk)
                    if self.keep is not None:
                        self.keep += chunks
                    if self.guard is not None:
                        chunks = [c for chunk in chunks for c, _ in self.guard.feed(chunk)]
                    if data := out.feed(chunks):
                        first_chunk()
                        await sink.write(data)
                    if self.guard is not None and (block := self.guard.guard.block) is not None:
                        status, error = "error", block.message  # a policy stopped the answer: no continuation
                        await sink.write(out.error(block.status, "invalid_request_error", block.message, block.code))
                        break
                    try:
                        chunks = await next_within(self.clock, answer.more, self.deadline, self.stall)
                    except (ProviderStreamError, UpstreamBroke, TimeoutError) as e:
                        code = e.status if isinstance(e, ProviderStreamError) else 502
                        why = f"broke: {e or type(e).__name__}" if isinstance(e, ProviderStreamError) else why_broken(e)
                        status, error = "upstream_error", scrub(f"{answer.target.name}: stream {why}",
                                                                [answer.target.key])
                        break
                if status == "ok" and state.output.finish_reason is None:
                    # The connection ended cleanly but no chunk said why the answer stopped: a truncated
                    # answer, told as one rather than passed off as complete.
                    code, status = 502, "upstream_error"
                    error = f"{answer.target.name}: stream ended before its final event"
                if status in ("ok", "error") or self.resume is None or state.output.tool_calls:
                    break  # a partial tool call cannot be handed to another model to finish
                resumed = await self.resume("".join(state.output.text), answer.target.name, error)
                if resumed is None:
                    break
                self.continued.append(error)
                answer.release()  # the broken attempt's connection goes now
                self.answer = answer = resumed[0]
                seam = Seam(first_id, resumed[1])
                status, error, chunks = "ok", None, answer.chunks
            if status == "upstream_error":
                await sink.write(out.error(code, "server_error", error))
            if status == "ok":
                if self.guard is not None and (held := [c for c, _ in self.guard.close()]):
                    await sink.write(out.feed(held))
                state.finished = True
                answered(Outcome.of(state, status, error))
                await sink.write(out.close())
            await sink.write_eof()
        except (ConnectionError, asyncio.CancelledError) as e:
            status, error = self._client_left(e)
        finally:
            self.answer.release()  # an unfinished answer's connection is closed, not pooled
        return Outcome.of(state, status, error)


class RawRelay(Relay):
    """Bytes as the provider sent them (the client speaks the provider's shape), parsed as they pass."""

    def __init__(self, answer: RawStreamAnswer, route: Route, deadline: float, keep: list | None = None,
                 clock: Clock = SYSTEM, stall: float | None = None,
                 error_event: Callable[[int, str, str], bytes] | None = None, guard: StreamGuard | None = None) -> None:
        """`error_event(status, type, message)`: a stream error in the client's dialect, written when the
        provider's stream breaks, stalls or passes the deadline (the client must not take it as whole)."""
        self.answer, self.deadline, self.clock, self.stall = answer, deadline, clock, stall
        self.error_event = error_event
        self.keep = keep  # when given, the raw bytes are kept here (the cache assembles the answer)
        self.parser = StreamParser(route, answer.content_type)
        self.headers = SSE_HEADERS
        # The call's guardrails on the answer: events re-emitted restored, or the stream ended on a block.
        self.filter = FrameFilter(guard, route, answer.content_type) if guard is not None else None

    async def run(self, sink: Sink, first_chunk: Callable[[], None], answered: Callable[[Outcome], None]) -> Outcome:
        answer, status, error = self.answer, "ok", None
        data = answer.first
        state = self.parser.state
        try:
            await sink.prepare()
            while data:
                frames = self.parser.feed(data)
                out = data if self.filter is None else b"".join(f.raw for f, _ in self.filter(frames))
                if self.filter is not None and self.filter.stopped:
                    status, error = "error", self.filter.guard.guard.block.message
                    await sink.write(out)
                    break
                if state.finished and answered is not None:  # the final event is in this chunk
                    answered(Outcome.of(state, *verdict(state, "ok", None)))
                    answered = None
                if self.keep is not None:
                    self.keep.append(data)
                first_chunk()
                if out:
                    await sink.write(out)
                try:
                    data = await next_within(self.clock, answer.more, self.deadline, self.stall)
                except (UpstreamBroke, TimeoutError) as e:
                    status, error = "upstream_error", f"{answer.target.name}: stream {why_broken(e)}"
                    if self.error_event is not None and not state.finished:
                        await sink.write(self.error_event(502, "server_error", error))
                    break
            rest = self.parser.close()
            if self.filter is not None and not self.filter.stopped and (tail := self.filter(rest, True)):
                await sink.write(b"".join(f.raw for f, _ in tail))
            if status == "ok" and not state.finished and self.error_event is not None:
                status, error = "upstream_error", f"{answer.target.name}: stream ended before its final event"
                await sink.write(self.error_event(502, "server_error", error))
            await sink.write_eof()
        except (ConnectionError, asyncio.CancelledError) as e:
            status, error = self._client_left(e)
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
