"""Anthropic's /v1/messages in front of the OpenAI-chat router, so the anthropic SDK can reach any provider:
requests become OpenAI chat bodies, chat completions and their chunks become Messages and Messages SSE."""

from __future__ import annotations

import json
import re
import uuid
from dataclasses import dataclass, field
from typing import Any

from providers.base import dig
from providers.chat import InvalidRequest, Unsupported, UnsupportedParam
from providers.openai import openai

# OpenAI finish_reason -> Anthropic stop_reason (spec StopReason). OpenAI never says which stop
# sequence matched, so "stop" is end_turn and stop_sequence stays null.
STOP_REASONS = {"stop": "end_turn", "length": "max_tokens", "tool_calls": "tool_use", "function_call": "tool_use",
                "content_filter": "refusal"}
# Anthropic tool_choice.type -> OpenAI tool_choice; "tool" names one function (see _tool_choice).
TOOL_CHOICES = {"auto": "auto", "any": "required", "none": "none"}
# Which content blocks each role may send here (spec InputMessage; role "system" is in its enum).
ALLOWED_BLOCKS = {"user": frozenset({"text", "image", "document", "tool_result"}),
                  "assistant": frozenset({"text", "tool_use"}), "system": frozenset({"text"})}
# Blocks from earlier turns that only Anthropic's models read: dropped with a note, never refused,
# or no conversation that once used extended thinking could move to another provider.
ANTHROPIC_HISTORY = frozenset({"thinking", "redacted_thinking"})
# Blocks of Anthropic's server tools, and search results for citations (spec InputContentBlock).
SERVER_BLOCKS = frozenset({"server_tool_use", "web_search_tool_result", "web_fetch_tool_result",
                           "code_execution_tool_result", "bash_code_execution_tool_result", "search_result",
                           "text_editor_code_execution_tool_result", "tool_search_tool_result", "container_upload"})
KNOWN_BLOCKS = frozenset().union(*ALLOWED_BLOCKS.values(), ANTHROPIC_HISTORY, SERVER_BLOCKS)
# Request fields that only steer caching, capacity or placement: dropped with a note, never refused.
HINTS = frozenset({"cache_control", "service_tier", "inference_geo", "speed"})
# Request fields read by to_chat; any other is dropped (or refused) as having no equivalent.
READ = frozenset({"model", "messages", "system", "max_tokens", "stop_sequences", "temperature", "top_p", "metadata",
                  "stream", "tools", "tool_choice", "thinking", "output_config", "output_format"})
# Which fields each image or document source type must carry as strings (spec *Source schemas).
SOURCE_FIELDS = {"base64": ("data", "media_type"), "url": ("url",), "text": ("data",)}
# The usage fields a message_delta carries (spec MessageDeltaUsage).
DELTA_USAGE = ("input_tokens", "cache_creation_input_tokens", "cache_read_input_tokens", "output_tokens",
               "output_tokens_details", "server_tool_use")


@dataclass(slots=True)
class _Notes:
    """What a translation dropped, and whether dropping is allowed at all."""

    unsupported: Unsupported
    notes: list[str] = field(default_factory=list)

    def drop(self, param: str, why: str, refusable: bool = True) -> None:
        if refusable and self.unsupported == "refuse":
            raise UnsupportedParam(param, f"{param}: {why}")
        self.notes.append(f"dropped {param}: {why}")


# -- requests -------------------------------------------------------------------------------------


def to_chat(body: Any, unsupported: Unsupported = "drop") -> tuple[dict[str, Any], list[str]]:
    """An Anthropic CreateMessage body -> (OpenAI chat body, notes on what was dropped).
    Raises InvalidRequest for a malformed body, UnsupportedParam under unsupported="refuse"."""
    if not isinstance(body, dict):
        raise InvalidRequest(None, "the request body must be a JSON object")
    notes = _Notes(unsupported)
    model, max_tokens, stream = body.get("model"), body.get("max_tokens"), body.get("stream", False)
    _need(isinstance(model, str) and model, "model", "a model name is required")
    _need(type(max_tokens) is int and max_tokens >= 0, "max_tokens", "a non-negative integer is required")
    _need(isinstance(stream, bool), "stream", "a boolean is required")
    out: dict[str, Any] = {"model": model, "messages": _messages(body, notes), "max_tokens": max_tokens}
    if "stop_sequences" in body:
        stop = body["stop_sequences"]
        _need(isinstance(stop, list) and all(isinstance(s, str) for s in stop), "stop_sequences",
              "an array of strings is required")
        out["stop"] = stop
    for name in ("temperature", "top_p"):
        if name in body:
            _need(type(body[name]) in (int, float), name, "a number is required")
            out[name] = body[name]
    if isinstance(user := dig(body, "metadata", "user_id"), str):
        out["user"] = user
    if stream:  # an Anthropic stream always reports usage, so the router must always ask for it
        out["stream"], out["stream_options"] = True, {"include_usage": True}
    if "tools" in body and (tools := _tools(body["tools"], notes)):
        out["tools"] = tools
        if "tool_choice" in body:  # OpenAI refuses tool_choice and parallel_tool_calls without tools
            _tool_choice(body["tool_choice"], out)
    _output(body, out, notes)
    for name in sorted(body.keys() - READ):
        notes.drop(name, "no OpenAI chat equivalent", refusable=name not in HINTS)
    return out, list(dict.fromkeys(notes.notes))


def _need(ok: Any, param: str, what: str) -> None:
    """InvalidRequest naming the param path unless ok."""
    if not ok:
        raise InvalidRequest(param, f"{param}: {what}")


def _blocks(raw: Any, param: str) -> list[Any]:
    """Content as a list of blocks: a string is shorthand for one text block."""
    _need(isinstance(raw, (str, list)), param, "a string or an array of content blocks is required")
    return [{"type": "text", "text": raw}] if isinstance(raw, str) else raw


def _messages(body: dict[str, Any], notes: _Notes) -> list[dict[str, Any]]:
    called: set[str] = set()  # tool_use ids so far: each tool_result must answer one
    system = body.get("system")
    out = _turn("system", _blocks(system, "system"), "system", notes, called) if system else []
    raw = body.get("messages")
    _need(isinstance(raw, list) and raw, "messages", "a non-empty array is required")
    for i, msg in enumerate(raw):
        _need(isinstance(msg, dict), f"messages[{i}]", "an object is required")
        _need(msg.get("role") in ALLOWED_BLOCKS, f"messages[{i}].role", "must be user, assistant or system")
        where = f"messages[{i}].content"
        out += _turn(msg["role"], _blocks(msg.get("content"), where), where, notes, called)
    return out


def _turn(role: str, blocks: list[Any], path: str, notes: _Notes, called: set[str]) -> list[dict[str, Any]]:
    """One Anthropic turn -> OpenAI messages. tool_result blocks become `tool` messages placed first,
    so each follows the assistant message holding its call; the rest of the turn comes after them."""
    parts: list[dict[str, Any]] = []
    calls: list[dict[str, Any]] = []
    results: list[dict[str, Any]] = []
    for j, block in enumerate(blocks):
        where = f"{path}[{j}]"
        kind = _kind(block, where)
        if kind in ANTHROPIC_HISTORY:
            notes.drop(f"{kind} blocks", "only Anthropic models read them", refusable=False)
        elif kind in SERVER_BLOCKS:
            notes.drop(where, f"{kind} blocks have no OpenAI chat equivalent")
        elif kind not in ALLOWED_BLOCKS[role]:
            _need(False, f"{where}.type", f"{kind} blocks are not allowed in {role} turns")
        elif kind == "text":
            parts.append({"type": "text", "text": _text(block, where)})
        elif kind in ("image", "document"):
            parts.extend(_media(block, where, notes))
        elif kind == "tool_use":
            calls.append(_tool_call(block, where))
            called.add(block["id"])
        else:
            results.append(_tool_result(block, where, notes, called, parts))
    text = "\n".join(p["text"] for p in parts if p["type"] == "text")
    if role == "assistant":  # OpenAI wants content or tool_calls; content null beside tool calls
        msg: dict[str, Any] = {"role": "assistant", "content": text if parts or not calls else None}
        return [msg | {"tool_calls": calls}] if calls else [msg]
    if parts or not results:  # text alone as a string: some OpenAI-compatible hosts reject part arrays
        results.append({"role": role, "content": text if all(p["type"] == "text" for p in parts) else parts})
    return results


def _kind(block: Any, where: str) -> str:
    _need(isinstance(block, dict), where, "a content block object is required")
    _need(block.get("type") in KNOWN_BLOCKS, f"{where}.type", f"unknown content block type {block.get('type')!r}")
    return block["type"]


def _text(block: dict[str, Any], where: str) -> str:
    _need(isinstance(block.get("text"), str), f"{where}.text", "a string is required")
    return block["text"]


def _source(block: dict[str, Any], where: str) -> tuple[str, dict[str, Any]]:
    src = block.get("source")
    _need(isinstance(src, dict) and isinstance(src.get("type"), str), f"{where}.source",
          "an object with a type is required")
    for key in SOURCE_FIELDS.get(src["type"], ()):
        _need(isinstance(src.get(key), str), f"{where}.source.{key}", "a string is required")
    return src["type"], src


def _media(block: dict[str, Any], where: str, notes: _Notes) -> list[dict[str, Any]]:
    """An image (base64 or URL) or document (plain text or base64 PDF) -> OpenAI content parts."""
    kind, src = _source(block, where)
    if block["type"] == "image" and kind in ("base64", "url"):
        url = src["url"] if kind == "url" else f"data:{src['media_type']};base64,{src['data']}"
        return [{"type": "image_url", "image_url": {"url": url}}]
    if block["type"] == "document" and kind == "text":
        return [{"type": "text", "text": src["data"]}]
    if block["type"] == "document" and kind == "base64" and src["media_type"] == "application/pdf":
        name = block["title"] if isinstance(block.get("title"), str) else "document.pdf"
        return [{"type": "file", "file": {"filename": name, "file_data": f"data:application/pdf;base64,{src['data']}"}}]
    notes.drop(f"{where}.source", f"{kind} {block['type']} sources have no OpenAI chat equivalent")
    return []


def _tool_call(block: dict[str, Any], where: str) -> dict[str, Any]:
    _need(isinstance(block.get("id"), str) and block["id"], f"{where}.id", "a string is required")
    _need(isinstance(block.get("name"), str) and block["name"], f"{where}.name", "a string is required")
    _need(isinstance(block.get("input"), dict), f"{where}.input", "an object is required")
    arguments = json.dumps(block["input"], ensure_ascii=False)
    return {"id": block["id"], "type": "function", "function": {"name": block["name"], "arguments": arguments}}


def _tool_result(block: dict[str, Any], where: str, notes: _Notes, called: set[str],
                 parts: list[dict[str, Any]]) -> dict[str, Any]:
    """A `tool` message; images in the result move to the user message after it (tool messages are text)."""
    call_id = block.get("tool_use_id")
    _need(isinstance(call_id, str) and call_id in called, f"{where}.tool_use_id", "no earlier tool_use has this id")
    texts = []
    for k, inner in enumerate(_blocks(block.get("content", ""), f"{where}.content")):
        at = f"{where}.content[{k}]"
        kind = _kind(inner, at)
        if kind == "text":
            texts.append(_text(inner, at))
        elif kind == "image":
            parts.extend(_media(inner, at, notes))
            notes.notes.append(f"moved {at} to a user message: OpenAI tool messages carry only text")
        else:
            notes.drop(at, f"{kind} blocks in tool results have no OpenAI equivalent")
    text = ("Error: " if block.get("is_error") is True else "") + "\n".join(texts)  # OpenAI has no is_error
    return {"role": "tool", "tool_call_id": call_id, "content": text}


def _tools(raw: Any, notes: _Notes) -> list[dict[str, Any]]:
    _need(isinstance(raw, list), "tools", "an array is required")
    out = []
    for i, tool in enumerate(raw):
        where = f"tools[{i}]"
        _need(isinstance(tool, dict), where, "an object is required")
        if tool.get("type") not in (None, "custom"):
            notes.drop(where, f"{tool.get('type')} is one of Anthropic's own tools")
            continue
        _need(isinstance(tool.get("name"), str) and tool["name"], f"{where}.name", "a string is required")
        _need(isinstance(tool.get("input_schema"), dict), f"{where}.input_schema", "an object is required")
        fn = {"name": tool["name"], "description": tool.get("description"), "parameters": tool["input_schema"],
              "strict": tool.get("strict")}
        out.append({"type": "function", "function": {k: v for k, v in fn.items() if v is not None}})
    return out


def _tool_choice(raw: Any, out: dict[str, Any]) -> None:
    kind = raw.get("type") if isinstance(raw, dict) else None
    _need(kind in TOOL_CHOICES or kind == "tool", "tool_choice.type", "must be auto, any, tool or none")
    if kind == "tool":
        _need(isinstance(raw.get("name"), str) and raw["name"], "tool_choice.name", "a tool name is required")
    out["tool_choice"] = {"type": "function", "function": {"name": raw["name"]}} if kind == "tool" else TOOL_CHOICES[kind]
    if raw.get("disable_parallel_tool_use") is True:
        out["parallel_tool_calls"] = False


def _output(body: dict[str, Any], out: dict[str, Any], notes: _Notes) -> None:
    """thinking and effort are dropped: OpenAI's reasoning_effort fails on models that do not reason,
    and the router may pick any. output_config.format (output_format in the beta) is kept."""
    thinking, config = body.get("thinking"), body.get("output_config") or {}
    if thinking is not None and dig(thinking, "type") != "disabled":
        notes.drop("thinking", "no OpenAI chat equivalent every provider accepts")
    _need(isinstance(config, dict), "output_config", "an object is required")
    if config.get("effort") is not None:
        notes.drop("output_config.effort", "no OpenAI chat equivalent every provider accepts")
    for param, fmt in (("output_config.format", config.get("format")), ("output_format", body.get("output_format"))):
        if fmt is not None:
            _need(dig(fmt, "type") == "json_schema" and isinstance(fmt.get("schema"), dict), param,
                  "type json_schema with a schema object is required")
            out["response_format"] = {"type": "json_schema", "json_schema": {"name": "output", "schema": fmt["schema"]}}


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
        args = json.loads(arguments) if isinstance(arguments, str) else {}
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
            # block's index: the anthropic SDK and providers.anthropic accumulate by index.
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
