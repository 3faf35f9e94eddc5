"""Gemini output as OpenAI chat pieces (finish reasons, tool calls, usage, logprobs) and the stream
translator built from them, so whole and streamed answers agree."""

from __future__ import annotations

import datetime
import json
import secrets
import time
from typing import Any

from providers.base import as_int, dig
from providers.chat import ProviderStreamError
from providers.chat import openai_usage as openai_usage_of
from providers.gemini.wire import error_message, gemini

# Candidate.FinishReason (generative_service.proto) -> OpenAI finish_reason; anything else is "stop".
FINISH_REASONS = {
    "STOP": "stop",
    "MAX_TOKENS": "length",
    "SAFETY": "content_filter",
    "RECITATION": "content_filter",
    "BLOCKLIST": "content_filter",
    "PROHIBITED_CONTENT": "content_filter",
    "SPII": "content_filter",
    "IMAGE_SAFETY": "content_filter",
    "IMAGE_PROHIBITED_CONTENT": "content_filter",
    "IMAGE_RECITATION": "content_filter",
}
# google.rpc status -> HTTP status, for an error object that carries no numeric code.
ERROR_STATUS = {"RESOURCE_EXHAUSTED": 429}
# Gemini 3 rejects a replayed functionCall without its thoughtSignature ("Function call is missing a
# thought_signature", e.g. nanbingxyz/5ire#405). OpenAI clients keep nothing but the tool call id, so
# the signature rides in the id after this marker and chat_request takes it out again.
SIGNATURE_MARK = "__thought__"


def finish_reason(reason: Any, has_calls: bool) -> str:
    """OpenAI finish_reason for a Gemini one; a candidate that stopped with function calls asks for them."""
    mapped = FINISH_REASONS.get(reason, "stop") if isinstance(reason, str) else "stop"
    return "tool_calls" if has_calls and mapped == "stop" else mapped


def answer_parts(candidate: dict[str, Any]) -> tuple[list[str], list[dict[str, Any]]]:
    """A candidate's answer: its non-empty text parts and its functionCall parts (thoughts left out)."""
    texts, calls = [], []
    parts = dig(candidate, "content", "parts")
    for part in parts if isinstance(parts, list) else ():
        if not isinstance(part, dict) or part.get("thought") is True:
            continue
        if isinstance(text := part.get("text"), str) and text:
            texts.append(text)
        if isinstance(call := part.get("functionCall"), dict) and isinstance(call.get("name"), str):
            calls.append(part)
    return texts, calls


def tool_call(part: dict[str, Any]) -> dict[str, Any]:
    """An OpenAI tool call from a functionCall part: Gemini's id (or a new one), its thoughtSignature
    appended after SIGNATURE_MARK, the args as a JSON string."""
    call = part["functionCall"]
    call_id = call.get("id") if isinstance(call.get("id"), str) and call.get("id") else f"call_{secrets.token_hex(12)}"
    if isinstance(signature := part.get("thoughtSignature"), str) and signature:
        # URL-safe alphabet, no padding: the id stays within [A-Za-z0-9_-], which Anthropic requires of
        # tool ids should a fallback model see this conversation.
        safe = signature.replace("+", "-").replace("/", "_").rstrip("=")
        call_id = f"{call_id}{SIGNATURE_MARK}{safe}"
    args = call.get("args") if isinstance(call.get("args"), dict) else {}
    return {"id": call_id, "type": "function",
            "function": {"name": call["name"], "arguments": json.dumps(args, ensure_ascii=False)}}


def split_call_id(call_id: str) -> tuple[str, str | None]:
    """(the id Gemini knows, the thoughtSignature or None) from an id made by tool_call."""
    base, mark, safe = call_id.partition(SIGNATURE_MARK)
    if not mark or not safe:
        return base, None
    signature = safe.replace("-", "+").replace("_", "/")
    return base, signature + "=" * (-len(signature) % 4)


def openai_usage(metadata: Any) -> dict[str, Any] | None:
    """OpenAI CompletionUsage from usageMetadata, or None when it has no counts. Thoughts count as
    completion tokens and tool-use prompts as prompt tokens (WIRE-FORMATS.md, "Gemini / Vertex")."""
    usage = gemini.usage(metadata)
    if not usage.known:
        return None
    return openai_usage_of(usage, cache_writes=False, thoughts_counted=True)


def _top(entry: dict[str, Any]) -> dict[str, Any]:
    token = entry.get("token") if isinstance(entry.get("token"), str) else ""
    logprob = entry.get("logProbability")
    # proto3 JSON leaves a log probability of 0 out
    return {"token": token, "logprob": logprob if isinstance(logprob, int | float) else 0.0,
            "bytes": list(token.encode())}


def logprobs(candidate: dict[str, Any]) -> dict[str, Any] | None:
    """OpenAI choice logprobs from a candidate's logprobsResult (chosen token and top tokens per step)."""
    result = candidate.get("logprobsResult")
    if not isinstance(result, dict) or not isinstance(chosen := result.get("chosenCandidates"), list):
        return None
    steps = result.get("topCandidates") if isinstance(result.get("topCandidates"), list) else []
    content = []
    for i, pick in enumerate(c for c in chosen if isinstance(c, dict)):
        tops = dig(steps, i, "candidates")
        content.append({**_top(pick), "top_logprobs": [_top(t) for t in tops or () if isinstance(t, dict)]})
    return {"content": content, "refusal": None}


def candidate_index(candidate: dict[str, Any], position: int) -> int:
    """Candidate.index; proto3 JSON leaves index 0 out and Vertex may send none, so the position."""
    index = as_int(candidate.get("index"))
    return position if index is None else index


def completion_id(body: dict[str, Any]) -> str:
    response_id = body.get("responseId")
    return f"chatcmpl-{response_id if isinstance(response_id, str) and response_id else secrets.token_hex(12)}"


def created_at(body: dict[str, Any]) -> int:
    """Vertex's createTime (RFC 3339) when present and readable, else now."""
    if isinstance(stamp := body.get("createTime"), str):
        try:
            return int(datetime.datetime.fromisoformat(stamp).timestamp())
        except ValueError:
            pass  # more than microsecond precision, say: the clock will do
    return int(time.time())


def response_model(body: dict[str, Any], model: str) -> str:
    version = body.get("modelVersion")
    return version if isinstance(version, str) and version else model


def raise_error(body: dict[str, Any]) -> None:
    """ProviderStreamError for a google.rpc.Status body; error.code is the HTTP status it has unstreamed."""
    if (message := error_message(body)) is None:
        return
    err = body["error"]
    code = as_int(err.get("code"))
    name = err.get("status") if isinstance(err.get("status"), str) else ""
    status = code if code is not None and 400 <= code < 600 else ERROR_STATUS.get(name, 500)
    raise ProviderStreamError(status, message)


class GeminiChatStream:
    """One streamGenerateContent?alt=sse response, chunk by chunk. Each event is a whole
    GenerateContentResponse: text parts become content deltas, functionCall parts (always whole)
    become complete tool_calls deltas, finishReason the finish chunk; usage is the last one seen."""

    def __init__(self, model: str, include_usage: bool) -> None:
        self.model = model
        self.include_usage = include_usage
        self.id: str | None = None  # fixed, with created and model, by the first event
        self.created = 0
        self.started: set[int] = set()  # candidates whose role chunk went out
        self.calls: dict[int, int] = {}  # candidate index -> tool calls sent so far
        self.finished: set[int] = set()
        self.usage: dict[str, Any] | None = None

    def feed(self, event: str | None, data: Any) -> list[dict[str, Any]]:
        if not isinstance(data, dict):
            return []
        raise_error(data)
        if self.id is None:
            self.id, self.created = completion_id(data), created_at(data)
            self.model = response_model(data, self.model)
        if (usage := openai_usage(data.get("usageMetadata"))) is not None:
            self.usage = usage  # cumulative: the last one is the total
        candidates = [c for c in data.get("candidates") or () if isinstance(c, dict)]
        if not candidates and isinstance(dig(data, "promptFeedback", "blockReason"), str):
            return [] if 0 in self.finished else self._finish(0, "content_filter")  # no candidates follow
        chunks: list[dict[str, Any]] = []
        for position, candidate in enumerate(candidates):
            chunks += self._candidate(candidate_index(candidate, position), candidate)
        return chunks

    def close(self) -> list[dict[str, Any]]:
        """The usage chunk, if asked for and Gemini sent usage. A stream that ended without a
        finishReason was cut off: no finish chunk is made up for it."""
        if not self.include_usage or self.usage is None or self.id is None:
            return []
        usage, self.usage = self.usage, None  # once
        return [self._envelope([], usage)]

    def _candidate(self, index: int, candidate: dict[str, Any]) -> list[dict[str, Any]]:
        if index in self.finished:
            return []
        chunks = self._start(index)
        texts, calls = answer_parts(candidate)
        if texts:
            chunks.append(self._chunk(index, {"content": "".join(texts)}, logprobs=logprobs(candidate)))
        if calls:
            first = self.calls.get(index, 0)
            self.calls[index] = first + len(calls)
            deltas = [{"index": first + n, **tool_call(part)} for n, part in enumerate(calls)]
            chunks.append(self._chunk(index, {"tool_calls": deltas}))
        if (reason := candidate.get("finishReason")) is not None:
            chunks += self._finish(index, finish_reason(reason, self.calls.get(index, 0) > 0))
        return chunks

    def _start(self, index: int) -> list[dict[str, Any]]:
        if index in self.started:
            return []
        self.started.add(index)
        return [self._chunk(index, {"role": "assistant", "content": ""})]

    def _finish(self, index: int, reason: str) -> list[dict[str, Any]]:
        self.finished.add(index)
        return [*self._start(index), self._chunk(index, {}, reason)]

    def _chunk(self, index: int, delta: dict[str, Any], finish: str | None = None,
               logprobs: dict[str, Any] | None = None) -> dict[str, Any]:
        return self._envelope([{"index": index, "delta": delta, "logprobs": logprobs, "finish_reason": finish}])

    def _envelope(self, choices: list[dict[str, Any]], usage: dict[str, Any] | None = None) -> dict[str, Any]:
        chunk = {"id": self.id, "object": "chat.completion.chunk", "created": self.created,
                 "model": self.model, "choices": choices}
        if self.include_usage:
            chunk["usage"] = usage
        return chunk
