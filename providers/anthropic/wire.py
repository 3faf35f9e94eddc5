"""Anthropic's Messages API, on api.anthropic.com and on Vertex AI (publishers/anthropic)."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any, ClassVar
from urllib.parse import unquote

from providers.base import (
    ErrorReply,
    ReportsUsageUnasked,
    RequestFacts,
    ResponseFacts,
    Route,
    StreamState,
    Usage,
    add,
    as_int,
    dig,
    host_matches,
    prompt_chars,
)
from providers.vertex import VERTEX_HOSTS

API_HOST = "api.anthropic.com"
# Vertex shares its hosts with Gemini, so only publishers/anthropic paths are ours. Token counting
# is the pseudo-model "count-tokens" (same SDK file), which is not a billed call.
_VERTEX_PATH = re.compile(
    r"^/v1(?:beta1)?/projects/[^/]+/locations/[^/]+/publishers/anthropic/models/([^/:]+):(rawPredict|streamRawPredict)$"
)
# HTTP status -> Anthropic error type (docs "Errors"; the spec's ErrorType enum for the rest).
ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    402: "billing_error",
    403: "permission_error",
    404: "not_found_error",
    413: "request_too_large",
    429: "rate_limit_error",
    500: "api_error",
    504: "timeout_error",
    529: "overloaded_error",
}


def usage(raw: Any) -> Usage:
    """Normalise an Anthropic `usage` object: its input_tokens leaves cache reads and writes out."""
    if not isinstance(raw, dict):
        return Usage()
    write = as_int(raw.get("cache_creation_input_tokens"))
    read = as_int(raw.get("cache_read_input_tokens"))
    return Usage(
        input_tokens=add(as_int(raw.get("input_tokens")), write, read),
        output_tokens=as_int(raw.get("output_tokens")),
        cache_read_tokens=read,
        cache_write_tokens=write,
        cache_write_1h_tokens=as_int(dig(raw, "cache_creation", "ephemeral_1h_input_tokens")),
        reasoning_tokens=as_int(dig(raw, "output_tokens_details", "thinking_tokens")),
    )


def merge_usage(old: Usage, raw: Any) -> Usage:
    """Usage after a message_delta: each raw field it carries wins, the rest stay from message_start.

    Older message_deltas carry only output_tokens; newer ones repeat the input counts, and with
    server tools those grow (WIRE-FORMATS.md, messages_stream_prompt_cache_server_tools.sse).
    StreamState has no room for the raw counts, so the uncached input is recovered from `old`.
    """
    if not isinstance(raw, dict):
        return old
    new = usage(raw)
    read = _first(new.cache_read_tokens, old.cache_read_tokens)
    write = _first(new.cache_write_tokens, old.cache_write_tokens)
    uncached = as_int(raw.get("input_tokens"))
    if uncached is None and old.input_tokens is not None:
        uncached = old.input_tokens - (old.cache_read_tokens or 0) - (old.cache_write_tokens or 0)
    return Usage(
        input_tokens=add(uncached, write, read),
        output_tokens=_first(new.output_tokens, old.output_tokens),
        cache_read_tokens=read,
        cache_write_tokens=write,
        cache_write_1h_tokens=_first(new.cache_write_1h_tokens, old.cache_write_1h_tokens),
        reasoning_tokens=_first(new.reasoning_tokens, old.reasoning_tokens),
    )


def _first(a: int | None, b: int | None) -> int | None:
    return a if a is not None else b


def error_message(body: Any) -> str | None:
    """The "<type>: <message>" of an Anthropic error body or `error` event; Google's front end on
    Vertex answers in its own shape ({"error": {"status", "message"}}), read the same way."""
    err = body.get("error") if isinstance(body, dict) else None
    if not isinstance(err, dict):
        return None
    kind = err.get("type") or err.get("status")
    msg = err.get("message")
    text = msg if isinstance(msg, str) and msg else "error"
    return f"{kind}: {text}" if isinstance(kind, str) and kind else text


@dataclass(frozen=True)
class AnthropicMessages(ReportsUsageUnasked):
    """The Messages endpoint; Vertex speaks the same body with the model in the URL."""

    name: str = "anthropic"
    hosts: tuple[str, ...] = (API_HOST, *VERTEX_HOSTS)
    price_prefix: str = ""
    # The request field a gateway refusal names as the cap on output (spend's worst-case text).
    max_tokens_field: ClassVar[str] = "max_tokens"
    # Credentials of a subscription login (Claude Pro/Max through Claude Code's OAuth), not an API key:
    # such calls are not billed per token, so they are recorded with a shadow cost instead of a cost.
    subscription_prefixes: ClassVar[tuple[str, ...]] = ("sk-ant-oat",)

    def route(self, host: str, path: str) -> Route | None:
        if host == API_HOST:
            return Route(self, "messages") if path == "/v1/messages" else None
        if not host_matches(host, VERTEX_HOSTS) or not (m := _VERTEX_PATH.match(path)):
            return None
        model = unquote(m.group(1))
        if model == "count-tokens":
            return None
        return Route(
            self, "messages", path_model=model, path_stream=m.group(2) == "streamRawPredict", price_prefix="vertex_ai/"
        )

    def request_facts(self, route: Route, body: Any) -> RequestFacts:
        if not isinstance(body, dict):
            return RequestFacts(model=route.path_model, stream=route.path_stream)
        model, user = body.get("model"), dig(body, "metadata", "user_id")
        return RequestFacts(
            model=model if isinstance(model, str) and model else route.path_model,
            stream=body.get("stream") is True or route.path_stream,
            user=user if isinstance(user, str) else None,
            metadata={},  # Anthropic's metadata holds only user_id, reported as `user`
            max_tokens=as_int(body.get("max_tokens")),
            wants_usage=True,  # message_start and message_delta always carry usage
            prompt_chars=prompt_chars(body.get("system")) + prompt_chars(body.get("messages")),
        )


    def response_facts(self, route: Route, body: Any) -> ResponseFacts:
        if isinstance(body, list) and body:  # Google's front end may wrap a Vertex error in a list
            body = body[0]
        if not isinstance(body, dict):
            return ResponseFacts(error="response body is not a JSON object")
        model = body.get("model")
        return ResponseFacts(
            usage=usage(body.get("usage")),
            response_model=model if isinstance(model, str) and model else None,
            error=error_message(body),
        )

    def stream_event(self, route: Route, state: StreamState, event: str | None, data: Any) -> None:
        state.events += 1
        if not isinstance(data, dict):
            return
        kind = data.get("type") or event
        index = data.get("index") if isinstance(data.get("index"), int) else None
        if kind == "message_start" and isinstance(message := data.get("message"), dict):
            if isinstance(model := message.get("model"), str) and model:
                state.response_model = model
            state.usage = merge_usage(state.usage, message.get("usage"))
        elif kind == "message_delta":
            state.usage = merge_usage(state.usage, data.get("usage"))
            if isinstance(reason := dig(data, "delta", "stop_reason"), str):
                state.output.finish_reason = reason
        elif kind == "content_block_start" and isinstance(block := data.get("content_block"), dict):
            if block.get("type") == "text":
                state.output.add_text(block.get("text"))
            elif block.get("type") == "tool_use" and index is not None:
                name, call_id = block.get("name"), block.get("id")
                state.output.tool_call(
                    index, name if isinstance(name, str) else None, id=call_id if isinstance(call_id, str) else None
                )
        elif kind == "content_block_delta" and isinstance(delta := data.get("delta"), dict):
            if delta.get("type") == "text_delta":
                state.output.add_text(delta.get("text"))
            # Only blocks started as client tool_use: server_tool_use input streams the same way but
            # the client never acts on it. thinking_delta is not answer text.
            elif delta.get("type") == "input_json_delta" and index in state.output.tool_calls:
                partial = delta.get("partial_json")
                state.output.tool_call(index, arguments=partial if isinstance(partial, str) else "")
        elif kind == "message_stop":
            state.finished = True
        elif kind == "error":
            state.error = error_message(data) or "stream error"


    def error_reply(self, status: int, message: str, code: str, param: str | None = None) -> ErrorReply:
        """Anthropic's error shape; it has no code or param field, so `code` is not sent."""
        kind = ERROR_TYPES.get(status, "invalid_request_error" if status < 500 else "api_error")
        body = {"type": "error", "error": {"type": kind, "message": message}}
        return ErrorReply(status, json.dumps(body, separators=(",", ":")).encode())

    def stream_error(self, status: int, message: str, code: str) -> bytes:
        """The gateway ending a 200 stream, as Anthropic does: an `error` event (its SDKs raise on it)."""
        kind = ERROR_TYPES.get(status, "invalid_request_error" if status < 500 else "api_error")
        body = {"type": "error", "error": {"type": kind, "message": message}}
        return f"event: error\ndata: {json.dumps(body, separators=(',', ':'))}\n\n".encode()


anthropic = AnthropicMessages()
