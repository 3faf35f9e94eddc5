"""OpenAI-dialect providers behind the router: the body goes through nearly as sent, and the
answer is already in the client's shape, so the adapter only sets the model and asks for usage."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from providers.base import Route
from providers.chat import InvalidRequest, ProviderStreamError, Unsupported, UpstreamRequest
from providers.openai.replay import openai_chunks, openai_completion
from providers.openai.wire import OpenAIDialect, error_message, openai

# How the router reads the OpenAI chat it works in (requests, answers and chunks of every deployment).
CHAT_ROUTE = Route(openai, "chat.completions")
# OpenAI endpoints the router relays untranslated to OpenAI-dialect deployments (/v1/embeddings, /v1/responses).
RELAYED = ("embeddings", "responses")

# OpenAI's documented request parameters (CreateChatCompletionRequest and CreateEmbeddingRequest in
# its OpenAPI spec; tests/test_specs.py holds these to it). A router client's other body fields
# (`api_base`, `base_url`, a vendor's own knobs) stay at the gateway unless config router.extra_params
# names them: an OpenAI-compatible host might act on a field the gateway never meant to pass on.
DOCUMENTED_PARAMS = {
    "chat.completions": frozenset({
        "audio", "frequency_penalty", "function_call", "functions", "logit_bias", "logprobs",
        "max_completion_tokens", "max_tokens", "messages", "metadata", "modalities", "model", "moderation", "n",
        "parallel_tool_calls", "prediction", "presence_penalty", "prompt_cache_key", "prompt_cache_options",
        "prompt_cache_retention", "reasoning_effort", "response_format", "safety_identifier", "seed",
        "service_tier", "stop", "store", "stream", "stream_options", "temperature", "tool_choice", "tools",
        "top_logprobs", "top_p", "user", "verbosity", "web_search_options",
    }),
    "embeddings": frozenset({"input", "model", "encoding_format", "dimensions", "user"}),
}


def documented_only(endpoint: str, body: dict[str, Any], extra: list[str]) -> tuple[dict[str, Any], list[str]]:
    """(the body with only OpenAI's documented parameters and the `extra` ones config allows, the names
    left out). `"*"` in extra, or an endpoint without a list, keeps the body whole."""
    known = DOCUMENTED_PARAMS.get(endpoint)
    if known is None or "*" in extra:
        return body, []
    dropped = [name for name in body if name not in known and name not in extra]
    return ({k: v for k, v in body.items() if k not in dropped}, dropped) if dropped else (body, [])


@dataclass(frozen=True, slots=True)
class OpenAIChat:
    """ChatAdapter for OpenAI and the OpenAI-compatible hosts (their quirks live on the dialect)."""

    dialect: OpenAIDialect
    # Parameters this host knows under another name: OpenAI's reasoning models refuse max_tokens.
    renames: tuple[tuple[str, str], ...] = ()

    def chat_request(self, body: dict[str, Any], model: str, *, stream: bool,
                     unsupported: Unsupported = "drop") -> UpstreamRequest:
        if not isinstance(body.get("messages"), list):
            raise InvalidRequest("messages", "messages must be a list of chat messages")
        out = {**body, "model": model}
        for old, new in self.renames:
            if old in out and new not in out:
                out[new] = out.pop(old)
        if stream:
            out["stream"] = True
            if self.dialect.accepts_stream_options:  # the router always wants usage; it hides it if unasked
                out["stream_options"] = {**(body.get("stream_options") or {}), "include_usage": True}
            else:
                out.pop("stream_options", None)
        else:
            out.pop("stream", None)
            out.pop("stream_options", None)
        return UpstreamRequest("/chat/completions", out)

    def chat_response(self, body: Any, model: str) -> dict[str, Any]:
        if not isinstance(body, dict) or not isinstance(body.get("choices"), list):
            raise ProviderStreamError(502, f"{self.dialect.name} answered without choices", "api_error")
        return body

    def chat_stream(self, model: str, include_usage: bool) -> PassThroughStream:
        return PassThroughStream(include_usage)

    def auth_headers(self, api_key: str) -> dict[str, str]:
        return {"authorization": f"Bearer {api_key}"}


class PassThroughStream:
    """OpenAI chunks pass as they are; an error chunk (OpenRouter's mid-stream error) raises, and
    the usage chunk is dropped unless the client asked for it."""

    def __init__(self, include_usage: bool) -> None:
        self.include_usage = include_usage

    def feed(self, event: str | None, data: Any) -> list[dict[str, Any]]:
        if not isinstance(data, dict):
            return []
        if "error" in data and not data.get("choices"):
            code = (data.get("error") or {}).get("code") if isinstance(data.get("error"), dict) else None
            status = code if isinstance(code, int) and 400 <= code < 600 else 500
            raise ProviderStreamError(status, error_message(data) or "error event in the stream")
        if not self.include_usage:
            if not data.get("choices"):
                return []  # the usage chunk the router asked for on the client's behalf
            data.pop("usage", None)
        return [data]

    def close(self) -> list[dict[str, Any]]:
        return []


@dataclass(frozen=True, slots=True)
class InnerChat:
    """The shape the router works in between a front and a deployment: OpenAI chat, read with the
    OpenAI wire parser, its answers split into chunks and assembled from them as OpenAI streams."""

    wire: OpenAIDialect
    route: Route

    def route_for(self, endpoint: str | None) -> Route:
        """How the router reads a call to this endpoint (None: chat): as OpenAI chat, or as the
        relayed endpoint."""
        return Route(self.wire, endpoint) if endpoint in RELAYED else self.route

    @staticmethod
    def documented_only(endpoint: str, body: dict[str, Any], extra: list[str]) -> tuple[dict[str, Any], list[str]]:
        return documented_only(endpoint, body, extra)

    @staticmethod
    def chunks(completion: dict[str, Any], include_usage: bool) -> list[dict[str, Any]]:
        return openai_chunks(completion, include_usage)

    @staticmethod
    def assemble(chunks: list[dict[str, Any]]) -> dict[str, Any] | None:
        return openai_completion(chunks)


INNER_CHAT = InnerChat(openai, CHAT_ROUTE)
