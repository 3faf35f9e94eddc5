"""An answer's stream through the guardrails, as frames: events re-emitted restored or redacted,
and after a block one error event in the client's dialect and nothing more."""

from __future__ import annotations

from typing import Any

from core.policies.engine import StreamGuard
from providers.base import Route
from providers.sse import Frame
from providers.stream import reencode, stream_error


class FrameFilter:
    """A StreamTap's `rewrite` (passthrough) and the router's raw relay: parsed frames in, frames out."""

    def __init__(self, guard: StreamGuard, route: Route, content_type: str) -> None:
        self.guard, self.route, self.content_type = guard, route, content_type
        self.stopped = False

    def __call__(self, frames: list[tuple[Frame, Any]], final: bool = False) -> list[tuple[Frame, Any]]:
        if self.stopped:
            return []
        out: list[tuple[Frame, Any]] = []
        for frame, data in frames:
            if isinstance(data, dict | list):
                out += self.guard.feed(data, frame)
            else:  # comments, [DONE], unparsable events: in order, after anything held
                out += self.guard.close() + [(data, frame)]
            if (block := self.guard.guard.block) is not None:
                self.stopped = True
                out = [pair for pair in out if pair[1] is not frame]  # the event that completed the match stays back
                error = stream_error(self.route, self.content_type, block.status, block.message, block.code)
                return [self._frame(d, f) for d, f in out] + [(error, None)]
        if final:
            out += self.guard.close()
        return [self._frame(d, f) for d, f in out]

    def _frame(self, data: Any, frame: Frame) -> tuple[Frame, Any]:
        return (reencode(frame, data) if self.guard.changed(data) else frame), data
