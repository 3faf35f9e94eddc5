"""Ollama's native API (/api/chat, /api/generate: NDJSON streams) for a local host from config;
its /v1 paths speak OpenAI's dialect and are handed to that."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, ClassVar

from providers.base import (
    ErrorReply,
    ReportsUsageUnasked,
    RequestFacts,
    ResponseFacts,
    Route,
    StreamState,
    Usage,
    as_int,
    dig,
    host_matches,
    prompt_chars,
)
from providers.openai.wire import OpenAIDialect

ENDPOINTS = {"/api/chat": "ollama.chat", "/api/generate": "ollama.generate"}


@dataclass(frozen=True)
class OllamaNative(ReportsUsageUnasked):
    name: str
    hosts: tuple[str, ...]
    price_prefix: str = ""
    # The request field a gateway refusal names as the cap on output (spend's worst-case text).
    max_tokens_field: ClassVar[str] = "max_tokens"
    compat: OpenAIDialect = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "compat", OpenAIDialect(self.name, self.hosts, price_prefix=self.price_prefix))

    def route(self, host: str, path: str) -> Route | None:
        if not host_matches(host, self.hosts):
            return None
        if endpoint := ENDPOINTS.get(path):
            return Route(self, endpoint)
        return self.compat.route(host, path)

    def request_facts(self, route: Route, body: Any) -> RequestFacts:
        if not isinstance(body, dict):
            return RequestFacts()
        return RequestFacts(
            model=body.get("model") if isinstance(body.get("model"), str) else None,
            stream=body.get("stream", True) is not False,  # Ollama streams unless told not to
            max_tokens=as_int(dig(body, "options", "num_predict")),
            prompt_chars=prompt_chars(body.get("messages") or body.get("prompt")),
        )


    @staticmethod
    def usage(obj: dict[str, Any]) -> Usage:
        return Usage(input_tokens=as_int(obj.get("prompt_eval_count")), output_tokens=as_int(obj.get("eval_count")))

    def response_facts(self, route: Route, body: Any) -> ResponseFacts:
        if not isinstance(body, dict):
            return ResponseFacts(error="response body is not a JSON object")
        error = body.get("error")
        model = body.get("model")
        return ResponseFacts(
            usage=self.usage(body),
            response_model=model if isinstance(model, str) else None,
            error=error if isinstance(error, str) else None,
        )

    def stream_event(self, route: Route, state: StreamState, event: str | None, data: Any) -> None:
        state.events += 1
        if not isinstance(data, dict):
            return
        if isinstance(data.get("model"), str):
            state.response_model = data["model"]
        state.output.add_text(dig(data, "message", "content") or data.get("response"))
        for i, call in enumerate(dig(data, "message", "tool_calls") or ()):
            fn = (call.get("function") or {}) if isinstance(call, dict) else {}
            state.output.tool_call((state.events, i), fn.get("name"), json.dumps(fn.get("arguments") or {}))
        if isinstance(data.get("error"), str):
            state.error = data["error"]
        if data.get("done") is True:
            state.finished = True
            state.usage = self.usage(data)
            state.output.finish_reason = data.get("done_reason")


    def error_reply(self, status: int, message: str, code: str, param: str | None = None) -> ErrorReply:
        return ErrorReply(status, json.dumps({"error": message}).encode())
