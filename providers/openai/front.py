"""The shapes router clients speak: OpenAI chat (/v1/chat/completions) and Anthropic Messages
(/v1/messages). The router works in OpenAI chat inside; a front converts at the edges."""

from __future__ import annotations

import json
from typing import Any

from providers.anthropic.wire import anthropic
from providers.chat import Unsupported
from providers.openai.wire import openai


def _dumps(obj: Any) -> bytes:
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False).encode()


class OpenAIChatFront:
    """Clients of /v1/chat/completions: the body is already OpenAI chat."""

    endpoint = "chat.completions"
    provider = openai  # whose error shape the client expects
    key_header = "authorization"  # where its SDK sends the API key (as a Bearer token)
    native = None  # OpenAI deployments already get the chat body nearly as sent (providers/openai/chat.py)

    def native_headers(self, headers) -> dict[str, str]:
        return {}

    def to_chat(self, body: dict[str, Any], unsupported: Unsupported) -> tuple[dict[str, Any], list[str]]:
        return body, []

    def wants_usage(self, body: dict[str, Any]) -> bool:
        return bool((body.get("stream_options") or {}).get("include_usage"))

    def whole(self, completion: dict[str, Any], model: str) -> bytes:
        return _dumps(completion)

    def stream(self, model: str, wants_usage: bool) -> OpenAIChunks:
        return OpenAIChunks(wants_usage)

    def error(self, status: int, body: dict[str, Any]) -> bytes:
        return _dumps(body)


class OpenAIChunks:
    """Chunks out as SSE; the usage the router always asks for is only passed on when the client asked."""

    def __init__(self, wants_usage: bool) -> None:
        self.wants_usage = wants_usage

    def feed(self, chunks: list[dict[str, Any]]) -> bytes:
        out = []
        for chunk in chunks:
            if not self.wants_usage:
                if not chunk.get("choices"):
                    continue  # the usage-only chunk
                chunk.pop("usage", None)
            out.append(b"data: " + _dumps(chunk) + b"\n\n")
        return b"".join(out)

    def close(self) -> bytes:
        return b"data: [DONE]\n\n"

    def error(self, status: int, type: str, message: str) -> bytes:
        # The openai SDK raises APIError for a data event carrying "error".
        return b"data: " + _dumps({"error": {"message": message, "type": type, "param": None,
                                             "code": "upstream_stream_failed"}}) + b"\n\n"


class MessagesFront:
    """Clients of /v1/messages (the anthropic SDK, ANTHROPIC_BASE_URL): Anthropic in, Anthropic out."""

    endpoint = "messages"
    provider = anthropic
    key_header = "x-api-key"
    # Anthropic deployments get the client's own body and answer bytes untranslated: thinking blocks,
    # cache_control, server tools and betas survive (Claude Code through the router keeps its caching).
    native = anthropic

    def native_headers(self, headers) -> dict[str, str]:
        """The client's API version and betas, which only mean something to Anthropic itself."""
        out = {"anthropic-version": headers.get("anthropic-version", "2023-06-01")}
        if beta := headers.get("anthropic-beta"):
            out["anthropic-beta"] = beta
        return out

    def to_chat(self, body: dict[str, Any], unsupported: Unsupported) -> tuple[dict[str, Any], list[str]]:
        from providers.anthropic.front import to_chat

        return to_chat(body, unsupported)

    def wants_usage(self, body: dict[str, Any]) -> bool:
        return True  # Anthropic streams always report usage

    def whole(self, completion: dict[str, Any], model: str) -> bytes:
        from providers.anthropic.reply import from_chat

        return _dumps(from_chat(completion, model))

    def stream(self, model: str, wants_usage: bool) -> AnthropicEvents:
        return AnthropicEvents(model)

    def error(self, status: int, body: dict[str, Any]) -> bytes:
        err = body.get("error") or {}
        return anthropic.error_reply(status, str(err.get("message", "")), str(err.get("code") or "")).body


class AnthropicEvents:
    def __init__(self, model: str) -> None:
        from providers.anthropic.reply import MessagesStream

        self.inner = MessagesStream(model)

    def feed(self, chunks: list[dict[str, Any]]) -> bytes:
        return b"".join(self.inner.feed(c) for c in chunks)

    def close(self) -> bytes:
        return self.inner.close()

    def error(self, status: int, type: str, message: str) -> bytes:
        from providers.anthropic.wire import ERROR_TYPES

        return self.inner.error_event(ERROR_TYPES.get(status, "api_error"), message)


FRONTS = {"/v1/chat/completions": OpenAIChatFront(), "/v1/messages": MessagesFront()}
