"""OpenAI's wire format (chat completions, Responses, embeddings, legacy completions), and the
dialect every OpenAI-compatible host speaks with its quirks given as data (see compatible.py)."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any, ClassVar

from providers.base import (
    ErrorReply,
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

# path suffix -> public endpoint name
ENDPOINTS = {
    "/chat/completions": "chat.completions",
    "/responses": "responses",
    "/embeddings": "embeddings",
    "/completions": "completions",
}
# Endpoints whose streams carry usage only when asked with stream_options.include_usage.
ASKS_FOR_USAGE = ("chat.completions", "completions")
_AZURE_DEPLOYMENT = re.compile(r"^/openai/deployments/([^/]+)(/.*)$")
_USAGE_NULL = re.compile(rb',\s*"usage"\s*:\s*null|"usage"\s*:\s*null\s*,?')


@dataclass(frozen=True)
class OpenAIDialect:
    """A provider that speaks OpenAI's API. Each field is one documented quirk."""

    name: str
    hosts: tuple[str, ...]
    # Base paths before "/chat/completions" etc.; "" when the API sits at the root (DeepSeek).
    prefixes: tuple[str, ...] = ("/v1",)
    price_prefix: str = ""
    # Accepts stream_options.include_usage (OpenAI, Azure, vLLM...); others report usage unasked or not at all.
    accepts_stream_options: bool = True
    # xAI: completion_tokens leaves reasoning out, so reasoning is added to output.
    reasoning_outside_completion: bool = False
    # Azure classic: /openai/deployments/{deployment}/chat/completions, the deployment names the model.
    azure_deployments: bool = False
    # The variable holding its key when the router reaches it by name (its base URL is the first host
    # and prefix); None: the router reaches it only through a configured base_url (Azure).
    key_env: str | None = None
    # Prefixes of credentials that are a subscription login rather than an API key (core/clients.py):
    # such calls are not billed per token and are recorded with a shadow cost instead.
    subscription_prefixes: tuple[str, ...] = ()
    # The request field a gateway refusal names as the cap on output (spend's worst-case text).
    max_tokens_field: ClassVar[str] = "max_tokens"

    @property
    def base_url(self) -> str:
        return f"https://{self.hosts[0]}{self.prefixes[0]}"

    # -- routing -----------------------------------------------------------------------------

    def route(self, host: str, path: str) -> Route | None:
        if not host_matches(host, self.hosts):
            return None
        path_model = None
        if self.azure_deployments and (m := _AZURE_DEPLOYMENT.match(path)):
            path_model, path = m.group(1), "/v1" + m.group(2)
            prefixes: tuple[str, ...] = ("/v1",)
        else:
            prefixes = self.prefixes
        for prefix in prefixes:
            if path.startswith(prefix) and (endpoint := ENDPOINTS.get(path[len(prefix) :])):
                return Route(self, endpoint, path_model=path_model)
        return None

    # -- requests ----------------------------------------------------------------------------

    def request_facts(self, route: Route, body: Any) -> RequestFacts:
        if not isinstance(body, dict):
            return RequestFacts(model=route.path_model)
        stream = body.get("stream") is True
        user = body.get("user") or body.get("safety_identifier")
        metadata = body.get("metadata")
        return RequestFacts(
            model=body.get("model") if isinstance(body.get("model"), str) else route.path_model,
            stream=stream,
            user=user if isinstance(user, str) else None,
            metadata=metadata if isinstance(metadata, dict) else {},
            max_tokens=as_int(
                body.get("max_completion_tokens") or body.get("max_tokens") or body.get("max_output_tokens")
            ),
            wants_usage=not (stream and route.endpoint in ASKS_FOR_USAGE)
            or dig(body, "stream_options", "include_usage") is True,
            prompt_chars=prompt_chars(
                body.get("messages") or body.get("input") or body.get("prompt") or body.get("instructions")
            ),
        )

    def ask_for_usage(self, route: Route, body: Any) -> dict[str, Any] | None:
        if not (self.accepts_stream_options and route.endpoint in ASKS_FOR_USAGE and isinstance(body, dict)):
            return None
        if body.get("stream") is not True or dig(body, "stream_options", "include_usage") is True:
            return None
        options = body.get("stream_options")
        options = dict(options) if isinstance(options, dict) else {}
        options["include_usage"] = True
        return {"stream_options": options}

    # -- responses ---------------------------------------------------------------------------

    def usage(self, raw: Any) -> Usage:
        """Normalise a `usage` object of any OpenAI-shaped endpoint."""
        if not isinstance(raw, dict):
            return Usage()
        responses_api = "input_tokens" in raw or "output_tokens" in raw
        if responses_api:
            inp, out = as_int(raw.get("input_tokens")), as_int(raw.get("output_tokens"))
            cached = as_int(dig(raw, "input_tokens_details", "cached_tokens"))
            reasoning = as_int(dig(raw, "output_tokens_details", "reasoning_tokens"))
        else:
            inp, out = as_int(raw.get("prompt_tokens")), as_int(raw.get("completion_tokens"))
            cached = as_int(dig(raw, "prompt_tokens_details", "cached_tokens"))
            if cached is None:  # DeepSeek names its cache hits; Together puts them at the top level
                cached = as_int(raw.get("prompt_cache_hit_tokens"))
            if cached is None:
                cached = as_int(raw.get("cached_tokens"))
            reasoning = as_int(dig(raw, "completion_tokens_details", "reasoning_tokens"))
            if out is None and inp is not None and "completion_tokens" not in raw:
                out = 0  # embeddings: no output
        if self.reasoning_outside_completion and reasoning:
            out = add(out, reasoning)
        cost = raw.get("cost")
        ticks = raw.get("cost_in_usd_ticks")
        reported = (
            float(cost)
            if isinstance(cost, (int, float)) and not isinstance(cost, bool)
            else ticks * 1e-10
            if isinstance(ticks, (int, float)) and not isinstance(ticks, bool)
            else None
        )
        return Usage(
            input_tokens=inp,
            output_tokens=out,
            cache_read_tokens=cached,
            cache_write_tokens=as_int(dig(raw, "prompt_tokens_details", "cache_write_tokens")),
            reasoning_tokens=reasoning,
            reported_cost_usd=reported,
        )

    def response_facts(self, route: Route, body: Any) -> ResponseFacts:
        if isinstance(body, list) and body:  # some compatible hosts wrap errors in a list
            body = body[0]
        if not isinstance(body, dict):
            return ResponseFacts(error="response body is not a JSON object")
        usage_raw = body.get("usage")
        if usage_raw is None:
            usage_raw = dig(body, "x_groq", "usage")
        model = body.get("model")
        return ResponseFacts(
            usage=self.usage(usage_raw),
            response_model=model if isinstance(model, str) and model else None,
            error=error_message(body),
        )

    def stream_event(self, route: Route, state: StreamState, event: str | None, data: Any) -> None:
        state.events += 1
        if data == "[DONE]":
            state.finished = True
            return
        if not isinstance(data, dict):
            return
        if route.endpoint == "responses":
            self._responses_event(state, data)
            return
        if model := data.get("model"):
            if isinstance(model, str):
                state.response_model = model
        usage = data.get("usage") or ("x_groq" in data and dig(data, "x_groq", "usage"))
        if isinstance(usage, dict):
            state.usage = self.usage(usage)
        if "error" in data and (msg := error_message(data)):
            state.error = msg
        for choice in data.get("choices") or ():
            if not isinstance(choice, dict) or choice.get("index", 0) != 0:
                continue
            if reason := choice.get("finish_reason"):
                state.output.finish_reason = reason
            if route.endpoint == "completions":
                state.output.add_text(choice.get("text"))
                continue
            delta = choice.get("delta") or {}
            content = delta.get("content")
            if isinstance(content, list):  # Mistral: a list of typed parts
                for part in content:
                    if isinstance(part, dict) and part.get("type") == "text":
                        state.output.add_text(part.get("text"))
            else:
                state.output.add_text(content)
            for call in delta.get("tool_calls") or ():
                if isinstance(call, dict):
                    fn = call.get("function") or {}
                    state.output.tool_call(
                        call.get("index", 0), fn.get("name"), fn.get("arguments") or "", call.get("id")
                    )

    def _responses_event(self, state: StreamState, data: dict[str, Any]) -> None:
        kind = data.get("type")
        if kind == "response.output_text.delta":
            state.output.add_text(data.get("delta"))
        elif kind == "response.function_call_arguments.delta":
            state.output.tool_call(data.get("item_id"), arguments=data.get("delta") or "")
        elif kind == "response.output_item.added" and dig(data, "item", "type") == "function_call":
            item = data["item"]
            state.output.tool_call(item.get("id"), item.get("name"), id=item.get("call_id"))
        elif kind == "error":
            state.error = data.get("message") or dig(data, "error", "message") or "stream error"
        elif isinstance(kind, str) and kind.startswith("response."):
            response = data.get("response")
            if not isinstance(response, dict):
                return
            if isinstance(response.get("model"), str):
                state.response_model = response["model"]
            if isinstance(response.get("usage"), dict):
                state.usage = self.usage(response["usage"])
            if kind in ("response.completed", "response.incomplete", "response.failed"):
                state.finished = True
                state.output.finish_reason = response.get("status")
                reason = dig(response, "incomplete_details", "reason")
                if kind == "response.failed":
                    state.error = dig(response, "error", "message") or state.error or "response failed"
                elif reason:
                    state.output.finish_reason = reason

    def socket_request(self, route: Route, data: Any) -> dict[str, Any] | None:
        """The Responses request a client's WebSocket message asks (`{"type": "response.create",
        ...the body's fields}`), as the body an HTTP POST would carry; None for any other message.
        The events coming back are the Responses stream's, folded by stream_event."""
        if route.endpoint != "responses" or not isinstance(data, dict) or data.get("type") != "response.create":
            return None
        body = {k: v for k, v in data.items() if k != "type"}
        body["stream"] = True  # a socket always streams the turn back
        return body

    def hide_usage(self, route: Route, event: str | None, data: Any, raw: bytes) -> bytes:
        if not isinstance(data, dict):
            return raw
        if data.get("choices") == [] and data.get("usage"):
            return b""  # the extra chunk include_usage adds
        if "usage" in data and data["usage"] is None:
            if raw.count(b'"usage"') == 1 and b',"usage":null' in raw:  # the usual compact event: no regex
                return raw.replace(b',"usage":null', b"", 1)
            return _USAGE_NULL.sub(b"", raw, count=1)
        return raw

    def error_reply(self, status: int, message: str, code: str, param: str | None = None) -> ErrorReply:
        kind = {401: "authentication_error", 403: "permission_error", 429: "rate_limit_error"}.get(
            status, "invalid_request_error" if status < 500 else "server_error"
        )
        body = {"error": {"message": message, "type": kind, "param": param, "code": code}}
        return ErrorReply(status, json.dumps(body, indent=2).encode() + b"\n")


def error_message(body: dict[str, Any]) -> str | None:
    """The message of an OpenAI-shaped error body (also OpenRouter's mid-stream error chunk)."""
    err = body.get("error")
    if isinstance(err, dict):
        msg = err.get("message")
        code = err.get("code") or err.get("type")
        text = msg if isinstance(msg, str) and msg else "error"
        return f"{code}: {text}" if code else text
    if isinstance(err, str) and err:
        return err
    return None


openai = OpenAIDialect(name="openai", hosts=("api.openai.com",), key_env="OPENAI_API_KEY")
