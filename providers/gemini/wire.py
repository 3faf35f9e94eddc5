"""Google's Gemini wire format, spoken by the Gemini API (generativelanguage) and Vertex AI alike."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any, ClassVar

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

# path method -> public endpoint name; :countTokens, :predict and the rest are not billed calls we track
ENDPOINTS = {
    "generateContent": "generateContent",
    "streamGenerateContent": "streamGenerateContent",
    "embedContent": "embedContent",
    "batchEmbedContents": "batchEmbedContents",
}
GEMINI_API_HOST = "generativelanguage.googleapis.com"
# The Gemini API's own paths (v1alpha is what the SDKs use for preview features), base and tuned models.
_GEMINI_API_PATH = re.compile(r"/v1(?:beta|alpha)?/(?:models|tunedModels)/([^/:]+):(\w+)")
# Vertex: publisher models under a project and location, or global without one (express mode).
_VERTEX_PATH = re.compile(r"/v1(?:beta1)?/(?:projects/[^/]+/locations/[^/]+/)?publishers/google/models/([^/:]+):(\w+)")
ERROR_INFO = "type.googleapis.com/google.rpc.ErrorInfo"
# HTTP status -> google.rpc.Code name, per the HTTP mappings in googleapis google/rpc/code.proto.
# Google sends no 413 itself: an oversized request is 400 INVALID_ARGUMENT "Request payload size exceeds the
# limit: N bytes." (quoted in MaKTaiL/gemini-srt-translator#63), so 413 keeps its status with that RPC code.
RPC_STATUS = {
    400: "INVALID_ARGUMENT",
    401: "UNAUTHENTICATED",
    403: "PERMISSION_DENIED",
    404: "NOT_FOUND",
    409: "ABORTED",
    413: "INVALID_ARGUMENT",
    429: "RESOURCE_EXHAUSTED",
    499: "CANCELLED",
    500: "INTERNAL",
    501: "UNIMPLEMENTED",
    502: "UNAVAILABLE",
    503: "UNAVAILABLE",
    504: "DEADLINE_EXCEEDED",
}


def _field(obj: Any, camel: str, snake: str) -> Any:
    """A request field by either name: Google's JSON mapping accepts lowerCamelCase and proto names."""
    if not isinstance(obj, dict):
        return None
    value = obj.get(camel)
    return obj.get(snake) if value is None else value


@dataclass(frozen=True)
class GeminiProvider(ReportsUsageUnasked):
    """generateContent and friends on the Gemini API and on Vertex AI's publisher models."""

    name: str = "gemini"
    hosts: tuple[str, ...] = (GEMINI_API_HOST, *VERTEX_HOSTS)
    price_prefix: str = "gemini/"
    # The request field a gateway refusal names as the cap on output (spend's worst-case text).
    max_tokens_field: ClassVar[str] = "generationConfig.maxOutputTokens"

    # -- routing -----------------------------------------------------------------------------

    def route(self, host: str, path: str) -> Route | None:
        vertex = host != GEMINI_API_HOST
        if vertex and not host_matches(host, VERTEX_HOSTS):
            return None
        match = (_VERTEX_PATH if vertex else _GEMINI_API_PATH).fullmatch(path)
        if match is None or (endpoint := ENDPOINTS.get(match.group(2))) is None:
            return None
        return Route(
            self,
            endpoint,
            path_model=match.group(1),
            path_stream=endpoint == "streamGenerateContent",
            price_prefix="vertex_ai/" if vertex else None,  # Vertex has its own price rows
        )

    # -- requests ----------------------------------------------------------------------------

    def request_facts(self, route: Route, body: Any) -> RequestFacts:
        facts = RequestFacts(model=route.path_model, stream=route.path_stream)
        if not isinstance(body, dict):
            return facts
        labels = body.get("labels")
        facts.metadata = labels if isinstance(labels, dict) else {}
        facts.max_tokens = as_int(
            _field(_field(body, "generationConfig", "generation_config"), "maxOutputTokens", "max_output_tokens")
        )
        # embedContent sends `content`, batchEmbedContents `requests`; generation sends `contents`
        prompt = body.get("contents") or body.get("content") or body.get("requests")
        system = _field(body, "systemInstruction", "system_instruction")
        facts.prompt_chars = prompt_chars(prompt) + prompt_chars(system)
        return facts


    # -- responses ---------------------------------------------------------------------------

    def usage(self, raw: Any) -> Usage:
        """Normalise usageMetadata. Counts of zero are left out of proto3 JSON, so a missing prompt
        or candidates count in a present usageMetadata means 0 (a stream's first chunks have none)."""
        if not isinstance(raw, dict):
            return Usage()
        prompt, candidates = as_int(raw.get("promptTokenCount")), as_int(raw.get("candidatesTokenCount"))
        tool_use, thoughts = as_int(raw.get("toolUsePromptTokenCount")), as_int(raw.get("thoughtsTokenCount"))
        if prompt is None and candidates is None and tool_use is None and thoughts is None:
            return Usage()
        return Usage(
            input_tokens=add(prompt, tool_use) or 0,
            # thoughtsTokenCount sits beside candidatesTokenCount, not inside it, and is billed as output
            output_tokens=add(candidates, thoughts) or 0,
            cache_read_tokens=as_int(raw.get("cachedContentTokenCount")),
            reasoning_tokens=thoughts,
        )

    def response_facts(self, route: Route, body: Any) -> ResponseFacts:
        # A streamGenerateContent without alt=sse is one JSON array of chunks: fold them as a stream.
        chunks = body if isinstance(body, list) else [body]
        if not any(isinstance(c, dict) for c in chunks):
            return ResponseFacts(error="response body is not a JSON object or array of objects")
        state = StreamState()
        for chunk in chunks:
            self.stream_event(route, state, None, chunk)
        return ResponseFacts(usage=state.usage, response_model=state.response_model, error=state.error)

    def stream_event(self, route: Route, state: StreamState, event: str | None, data: Any) -> None:
        state.events += 1
        if not isinstance(data, dict):
            return
        usage = self.usage(data.get("usageMetadata"))
        if usage.known:  # cumulative: the latest wins, even when a count went down (15 -> 13)
            state.usage = usage
        if isinstance(model := data.get("modelVersion"), str) and model:
            state.response_model = model
        if message := error_message(data):
            state.error = message
        if isinstance(blocked := dig(data, "promptFeedback", "blockReason"), str):
            state.output.finish_reason, state.finished = blocked, True  # no candidates will follow
        for candidate in data.get("candidates") or ():
            # index 0 is left out of proto3 JSON; other indexes are extra candidates (candidateCount > 1)
            if isinstance(candidate, dict) and candidate.get("index", 0) == 0:
                self._candidate(state, candidate)

    def _candidate(self, state: StreamState, candidate: dict[str, Any]) -> None:
        parts = dig(candidate, "content", "parts")
        for part in parts if isinstance(parts, list) else ():
            if not isinstance(part, dict) or part.get("thought") is True:
                continue  # thought summaries are reasoning, not the answer
            state.output.add_text(part.get("text"))
            call = part.get("functionCall")
            if isinstance(call, dict):
                # Calls arrive whole; a nameless one continues the last (Vertex partialArgs streaming).
                name = call.get("name") if isinstance(call.get("name"), str) else None
                calls = state.output.tool_calls
                key = len(calls) if name or not calls else next(reversed(calls))
                args = call.get("args")
                arguments = json.dumps(args, ensure_ascii=False) if isinstance(args, dict) else ""
                call_id = call.get("id") if isinstance(call.get("id"), str) else None
                state.output.tool_call(key, name, arguments, call_id)
        if isinstance(reason := candidate.get("finishReason"), str) and reason:
            state.output.finish_reason, state.finished = reason, True


    def error_reply(self, status: int, message: str, code: str, param: str | None = None) -> ErrorReply:
        rpc_status = RPC_STATUS.get(status, "INVALID_ARGUMENT" if status < 500 else "INTERNAL")
        # Google SDKs read code, message and status; the gateway's own code goes where Google puts
        # its machine-readable reason (API_KEY_INVALID...): a google.rpc.ErrorInfo in details.
        info: dict[str, Any] = {"@type": ERROR_INFO, "reason": code, "domain": "tapgate"}
        if param:
            info["metadata"] = {"param": param}
        body = {"error": {"code": status, "message": message, "status": rpc_status, "details": [info]}}
        return ErrorReply(status, json.dumps(body, indent=2).encode() + b"\n", "application/json; charset=UTF-8")


def error_message(body: dict[str, Any]) -> str | None:
    """The message of a google.rpc.Status error body as "<status>: <message>" (status, else HTTP code)."""
    err = body.get("error")
    if not isinstance(err, dict):
        return None
    message = err.get("message") if isinstance(err.get("message"), str) and err.get("message") else "error"
    status = err.get("status") or err.get("code")
    return f"{status}: {message}" if status else message


gemini = GeminiProvider()
