"""A cached answer served in the other mode: a whole body as its provider's own stream, or a
complete stream as the whole body, so each official SDK parses the replay as if it were live.
Each provider package renders its own dialect; the registry (providers.replay_for) finds it."""

from __future__ import annotations

from typing import Any, Protocol


class Replay(Protocol):
    """One dialect's two conversions; both are pure functions of their input."""

    # The route endpoints (base.Route.endpoint) whose answers this replays.
    endpoints: tuple[str, ...]

    def as_stream(self, body: dict[str, Any], *, include_usage: bool = True) -> bytes:
        """A whole native body -> the complete native SSE bytes, ending as the provider's streams end.
        include_usage matters only where the provider streams usage on request (OpenAI)."""

    def as_whole(self, raw: bytes) -> dict[str, Any] | None:
        """The raw bytes of a complete native SSE stream -> the whole body the provider would have
        returned; None when the stream is cut short or errored and must not be served whole."""
