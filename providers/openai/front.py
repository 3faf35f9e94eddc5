"""OpenAI chat (/v1/chat/completions) as router clients speak it: the router works in OpenAI chat
inside, so this front passes bodies through and writes chunks as SSE."""

from __future__ import annotations

import json
from typing import Any

from providers.chat import Unsupported
from providers.openai.wire import openai


def _dumps(obj: Any) -> bytes:
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False).encode()


class OpenAIChatFront:
    """Clients of /v1/chat/completions: the body is already OpenAI chat."""

    path = "/v1/chat/completions"
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

    def error(self, status: int, type: str, message: str, code: str = "upstream_stream_failed") -> bytes:
        # The openai SDK raises APIError for a data event carrying "error".
        return b"data: " + _dumps({"error": {"message": message, "type": type, "param": None,
                                             "code": code}}) + b"\n\n"


front = OpenAIChatFront()
