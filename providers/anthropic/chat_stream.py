"""Anthropic Messages stream events as OpenAI `chat.completion.chunk`s, plus the stop-reason and
usage mapping that whole responses share."""

from __future__ import annotations

import uuid
from typing import Any

from providers.anthropic.wire import ERROR_TYPES, merge_usage
from providers.base import Usage, dig
from providers.chat import ProviderStreamError, openai_usage

# Anthropic stop_reason (spec StopReason) -> OpenAI finish_reason; anything unknown is "stop".
FINISH_REASONS = {
    "end_turn": "stop",
    "stop_sequence": "stop",
    "pause_turn": "stop",  # a server-tool turn paused; the text so far is a whole answer
    "max_tokens": "length",
    "model_context_window_exceeded": "length",
    "tool_use": "tool_calls",
    "refusal": "content_filter",
}
# Anthropic error type -> the HTTP status the same error has when not streamed.
ERROR_STATUS = {kind: status for status, kind in ERROR_TYPES.items()}


def finish_reason(stop_reason: Any) -> str:
    return FINISH_REASONS.get(stop_reason, "stop") if isinstance(stop_reason, str) else "stop"


class AnthropicChatStream:
    """One streamed Messages response, translated event by event. Thinking, server tools and pings
    produce nothing; the usage chunk comes once, at message_stop or close(), if asked for."""

    def __init__(self, model: str, include_usage: bool, created: int) -> None:
        self.id = f"chatcmpl-{uuid.uuid4().hex}"  # replaced by the message id at message_start
        self.model = model
        self.created = created
        self.include_usage = include_usage
        self.usage = Usage()
        self.started = False  # the role chunk went out; id and model are fixed from then on
        self.closed = False
        self.tools: dict[int, int] = {}  # Anthropic content block index -> OpenAI tool_calls index

    def feed(self, event: str | None, data: Any) -> list[dict[str, Any]]:
        if not isinstance(data, dict):
            return []
        kind = data.get("type") or event
        if kind == "message_start":
            return self._start(data.get("message"))
        if kind == "content_block_start":
            return self._block_start(data.get("index"), data.get("content_block"))
        if kind == "content_block_delta":
            return self._block_delta(data.get("index"), data.get("delta"))
        if kind == "message_delta":
            self.usage = merge_usage(self.usage, data.get("usage"))
            return self._chunk({}, finish_reason(dig(data, "delta", "stop_reason")))
        if kind == "message_stop":
            return self.close()
        if kind == "error":
            err = data.get("error") if isinstance(data.get("error"), dict) else {}
            etype = err.get("type") if isinstance(err.get("type"), str) else "api_error"
            message = err.get("message") if isinstance(err.get("message"), str) else "error event in the stream"
            raise ProviderStreamError(ERROR_STATUS.get(etype, 500), message, etype)
        return []  # ping, content_block_stop, and events added after this was written

    def close(self) -> list[dict[str, Any]]:
        if self.closed or not self.include_usage or not self.usage.known:
            self.closed = True
            return []
        self.closed = True
        return [{**self._envelope(), "choices": [], "usage": openai_usage(self.usage)}]

    def _start(self, message: Any) -> list[dict[str, Any]]:
        if isinstance(message, dict):
            if not self.started:
                if isinstance(message.get("id"), str) and message["id"]:
                    self.id = f"chatcmpl-{message['id']}"
                if isinstance(message.get("model"), str) and message["model"]:
                    self.model = message["model"]
            self.usage = merge_usage(self.usage, message.get("usage"))
        return self._role()

    def _block_start(self, index: Any, block: Any) -> list[dict[str, Any]]:
        if not isinstance(block, dict) or not isinstance(index, int):
            return []
        if block.get("type") == "text" and isinstance(block.get("text"), str) and block["text"]:
            return self._chunk({"content": block["text"]})
        if block.get("type") != "tool_use":  # server_tool_use runs at Anthropic; the client never acts on it
            return []
        self.tools[index] = position = len(self.tools)
        call = {
            "index": position,
            "id": block.get("id"),
            "type": "function",
            "function": {"name": block.get("name"), "arguments": ""},
        }
        return self._chunk({"tool_calls": [call]})

    def _block_delta(self, index: Any, delta: Any) -> list[dict[str, Any]]:
        if not isinstance(delta, dict):
            return []
        if delta.get("type") == "text_delta" and isinstance(delta.get("text"), str) and delta["text"]:
            return self._chunk({"content": delta["text"]})
        partial = delta.get("partial_json")
        if delta.get("type") == "input_json_delta" and index in self.tools and isinstance(partial, str) and partial:
            return self._chunk({"tool_calls": [{"index": self.tools[index], "function": {"arguments": partial}}]})
        return []  # thinking_delta, signature_delta, citations, server tool input

    def _chunk(self, delta: dict[str, Any], finish: str | None = None) -> list[dict[str, Any]]:
        return [*self._role(), self._choice(delta, finish)]

    def _role(self) -> list[dict[str, Any]]:
        """The first chunk, as OpenAI sends it, unless it went out already."""
        if self.started:
            return []
        self.started = True
        return [self._choice({"role": "assistant", "content": ""}, None)]

    def _choice(self, delta: dict[str, Any], finish: str | None) -> dict[str, Any]:
        choice = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}
        return {**self._envelope(), "choices": [choice]}

    def _envelope(self) -> dict[str, Any]:
        out = {"id": self.id, "object": "chat.completion.chunk", "created": self.created, "model": self.model}
        if self.include_usage:
            out["usage"] = None
        return out
