"""A cached answer served in the other mode: a whole body as its provider's own stream, or a
complete stream as the whole body, so each official SDK parses the replay as if it were live."""

from __future__ import annotations

from typing import Any, Protocol

from providers.anthropic.wire import AnthropicMessages
from providers.gemini.wire import GeminiProvider
from providers.openai.wire import OpenAIDialect
from providers.anthropic.replay import AnthropicReplay, anthropic_replay
from providers.gemini.replay import GeminiReplay, gemini_replay
from providers.openai.replay import OpenAIChatReplay, openai_chunks, openai_completion, openai_replay


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


# Provider class -> its replay. Every OpenAIDialect (openai and the hosts in compatible.py) is one
# class; AnthropicMessages covers Vertex rawPredict; Ollama's native NDJSON has none.
REPLAYS: tuple[tuple[type, Replay], ...] = (
    (OpenAIDialect, openai_replay),
    (AnthropicMessages, anthropic_replay),
    (GeminiProvider, gemini_replay),
)


def replay_for(provider: object, endpoint: str | None = None) -> Replay | None:
    """The replay that serves this provider's answers, or None. Given an endpoint (Route.endpoint),
    also None when that endpoint is not one the replay handles (OpenAI responses, embeddings)."""
    for kind, replay in REPLAYS:
        if isinstance(provider, kind):
            return replay if endpoint is None or endpoint in replay.endpoints else None
    return None


__all__ = [
    "AnthropicReplay",
    "GeminiReplay",
    "OpenAIChatReplay",
    "Replay",
    "openai_chunks",
    "openai_completion",
    "replay_for",
]
