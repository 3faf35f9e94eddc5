"""Answers for /v1/messages clients: an OpenAI chat completion, or its chunks, as an Anthropic Message
or Messages SSE events (providers/anthropic/front.py turns their requests into OpenAI chat)."""

from __future__ import annotations

import json
import re
import uuid
from typing import Any

from providers.base import dig
from providers.openai.wire import openai
from providers.safe_json import loads

# OpenAI finish_reason -> Anthropic stop_reason (spec StopReason). OpenAI never says which stop
# sequence matched, so "stop" is end_turn and stop_sequence stays null.
STOP_REASONS = {"stop": "end_turn", "length": "max_tokens", "tool_calls": "tool_use", "function_call": "tool_use",
                "content_filter": "refusal"}
# The usage fields a message_delta carries (spec MessageDeltaUsage).
DELTA_USAGE = ("input_tokens", "cache_creation_input_tokens", "cache_read_input_tokens", "output_tokens",
               "output_tokens_details", "server_tool_use")


# -- responses ------------------------------------------------------------------------------------


def from_chat(completion: dict[str, Any], model: str) -> dict[str, Any]:
    """An OpenAI chat.completion -> an Anthropic Message (spec Message), from its first choice."""
    choice = dig(completion, "choices", 0) if isinstance(dig(completion, "choices", 0), dict) else {}
    message = choice.get("message") if isinstance(choice.get("message"), dict) else {}
    refusal = message.get("refusal") if isinstance(message.get("refusal"), str) else ""
    text = _text_of(message.get("content")) + refusal
    tools = [_tool_block(c.get("id"), dig(c, "function", "name"), _parse_input(dig(c, "function", "arguments")))
             for c in message.get("tool_calls") or () if isinstance(c, dict)]
    reason = _stop_reason(choice.get("finish_reason"), bool(tools), bool(refusal))
    content = ([_text_block(text)] if text else []) + tools
    return _message(completion.get("id"), model or completion.get("model") or "", content, reason,
                    _usage(completion.get("usage")))


def _message(chat_id: Any, model: str, content: list[dict[str, Any]], stop_reason: str | None,
             usage: dict[str, Any]) -> dict[str, Any]:
    tail = re.sub(r"[^A-Za-z0-9_-]", "", chat_id) if isinstance(chat_id, str) else ""
    return {"id": f"msg_{tail or uuid.uuid4().hex[:24]}", "type": "message", "role": "assistant", "model": model,
            "content": content, "stop_reason": stop_reason, "stop_sequence": None, "stop_details": None,
            "container": None, "usage": usage}


def _text_block(text: str) -> dict[str, Any]:
    return {"type": "text", "text": text, "citations": None}


def _tool_block(call_id: Any, name: Any, args: dict[str, Any]) -> dict[str, Any]:
    return {"type": "tool_use", "id": call_id if isinstance(call_id, str) and call_id else f"toolu_{uuid.uuid4().hex[:24]}",
            "name": name if isinstance(name, str) else "", "input": args, "caller": {"type": "direct"}}


def _parse_input(arguments: Any) -> dict[str, Any]:
    """Tool arguments as an object; arguments that do not parse to one become {} (Anthropic's input
    must be an object, and a made-up key would reach the client's tool)."""
    try:
        args = loads(arguments) if isinstance(arguments, str) else {}
    except ValueError:
        args = {}
    return args if isinstance(args, dict) else {}


def _text_of(content: Any) -> str:
    """Message or delta content: a string, or a list of parts (Mistral) whose text parts count."""
    if isinstance(content, list):
        return "".join(p["text"] for p in content if dig(p, "type") == "text" and isinstance(p.get("text"), str))
    return content if isinstance(content, str) else ""


def _stop_reason(finish: Any, tool_calls: bool, refused: bool) -> str:
    """Some OpenAI-compatible hosts finish with "stop" after tool calls; the SDK's tool runner needs tool_use."""
    if refused or (tool_calls and finish in (None, "stop")):
        return "refusal" if refused else "tool_use"
    return STOP_REASONS.get(finish, "end_turn") if isinstance(finish, str) else "end_turn"


def _usage(raw: Any) -> dict[str, Any]:
    """OpenAI usage -> Anthropic usage, whose input_tokens leaves out cache reads and writes."""
    u = openai.usage(raw)
    read, write = u.cache_read_tokens or 0, u.cache_write_tokens or 0
    thinking = None if u.reasoning_tokens is None else {"thinking_tokens": u.reasoning_tokens}
    return {"input_tokens": max((u.input_tokens or 0) - read - write, 0), "cache_creation_input_tokens": write,
            "cache_read_input_tokens": read, "cache_creation": None, "inference_geo": None,
            "output_tokens": u.output_tokens or 0, "output_tokens_details": thinking, "server_tool_use": None,
            "service_tier": None}


# -- streams --------------------------------------------------------------------------------------


def sse(event: str, data: dict[str, Any]) -> bytes:
    """One complete Anthropic SSE event."""
    return f"event: {event}\ndata: {json.dumps(data, ensure_ascii=False, separators=(',', ':'))}\n\n".encode()


def error_event(type: str, message: str) -> bytes:
    """A mid-stream failure as Anthropic sends it after a 200 (messages_stream_error_overloaded.sse);
    the stream then ends without message_stop. `type` is an Anthropic error type (anthropic.ERROR_TYPES)."""
    return sse("error", {"type": "error", "error": {"type": type, "message": message}})


class MessagesStream:
    """OpenAI chat.completion.chunk dicts in, Anthropic SSE events out, for one streamed reply.

    Blocks are numbered in the order they start: text, then one tool_use block per OpenAI tool call
    index. message_delta waits for the finish reason and the usage chunk include_usage adds after it
    (or close(), if that chunk never comes)."""

    def __init__(self, model: str) -> None:
        self.model = model
        self.started = False
        self.done = False
        self.blocks = 0  # content blocks started so far, i.e. the next block's index
        self.open: int | None = None  # the block started and not yet stopped
        self.open_text = False
        self.tools: dict[Any, int] = {}  # OpenAI tool call index -> block index
        self.finish: str | None = None
        self.refused = False
        self.usage: dict[str, Any] | None = None

    def feed(self, chunk: dict[str, Any]) -> bytes:
        """One OpenAI chunk -> zero or more complete Anthropic events."""
        if self.done or not isinstance(chunk, dict):
            return b""
        usage = chunk.get("usage") or dig(chunk, "x_groq", "usage")
        if isinstance(usage, dict):
            self.usage = usage
        out = [] if self.started else [self._start(chunk)]
        for choice in chunk.get("choices") or ():
            if isinstance(choice, dict) and choice.get("index", 0) == 0:
                out += self._choice(choice)
        if self.finish is not None and isinstance(usage, dict):
            out += self._end()
        return b"".join(out)

    def close(self) -> bytes:
        """The OpenAI stream ended: the events still owed, through message_stop."""
        if self.done:
            return b""
        return b"".join(([] if self.started else [self._start({})]) + self._end())

    def error_event(self, type: str, message: str) -> bytes:
        """A mid-stream failure; nothing more is sent after it."""
        self.done = True
        return error_event(type, message)

    def _start(self, chunk: dict[str, Any]) -> bytes:
        self.started = True
        model = self.model or chunk.get("model") or ""
        return sse("message_start", {"type": "message_start",
                                     "message": _message(chunk.get("id"), model, [], None, _usage(self.usage))})

    def _choice(self, choice: dict[str, Any]) -> list[bytes]:
        delta = choice.get("delta") if isinstance(choice.get("delta"), dict) else {}
        out = []
        if text := _text_of(delta.get("content")):
            out += self._text(text)
        if isinstance(refusal := delta.get("refusal"), str) and refusal:
            self.refused = True
            out += self._text(refusal)
        for call in delta.get("tool_calls") or ():
            if isinstance(call, dict):
                out += self._tool(call)
        if isinstance(reason := choice.get("finish_reason"), str) and reason:
            self.finish = reason
            out += self._stop_block()
        return out

    def _text(self, text: str) -> list[bytes]:
        out = [] if self.open_text else self._begin(_text_block(""), text=True)
        return out + [self._delta({"type": "text_delta", "text": text})]

    def _tool(self, call: dict[str, Any]) -> list[bytes]:
        key, out = call.get("index", 0), []
        if key not in self.tools:
            self.tools[key] = self.blocks
            out += self._begin(_tool_block(call.get("id"), dig(call, "function", "name"), {}), text=False)
        if isinstance(args := dig(call, "function", "arguments"), str) and args:
            # A fragment for a call whose block already stopped (interleaved calls) still names that
            # block's index: the anthropic SDK and providers.anthropic.wire accumulate by index.
            out.append(self._delta({"type": "input_json_delta", "partial_json": args}, self.tools[key]))
        return out

    def _begin(self, block: dict[str, Any], text: bool) -> list[bytes]:
        out = self._stop_block()
        self.open, self.open_text = self.blocks, text
        self.blocks += 1
        return out + [sse("content_block_start", {"type": "content_block_start", "index": self.open,
                                                  "content_block": block})]

    def _delta(self, delta: dict[str, Any], index: int | None = None) -> bytes:
        index = self.open if index is None else index  # a tool call's fragments name its own block
        return sse("content_block_delta", {"type": "content_block_delta", "index": index, "delta": delta})

    def _stop_block(self) -> list[bytes]:
        if self.open is None:
            return []
        index, self.open, self.open_text = self.open, None, False
        return [sse("content_block_stop", {"type": "content_block_stop", "index": index})]

    def _end(self) -> list[bytes]:
        self.done = True
        usage = _usage(self.usage)
        delta = {"stop_reason": _stop_reason(self.finish, bool(self.tools), self.refused), "stop_sequence": None,
                 "stop_details": None, "container": None}
        return self._stop_block() + [
            sse("message_delta", {"type": "message_delta", "delta": delta, "usage": {k: usage[k] for k in DELTA_USAGE}}),
            sse("message_stop", {"type": "message_stop"}),
        ]
