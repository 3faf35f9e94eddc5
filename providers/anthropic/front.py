"""Anthropic's /v1/messages in front of the OpenAI-chat router, so the anthropic SDK can reach any provider:
its requests become OpenAI chat bodies here; the answers go back in providers/anthropic/reply.py.
MessagesFront is the front the router's door uses."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from providers.anthropic.reply import MessagesStream, from_chat
from providers.anthropic.wire import ERROR_TYPES, anthropic
from providers.base import dig
from providers.chat import InvalidRequest, Unsupported, UnsupportedParam

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
        if "cache_control" in block:  # a caching hint: never refused, but the trace says it is gone
            notes.drop("cache_control", "OpenAI chat has no prompt cache breakpoints", refusable=False)
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


class MessagesFront:
    """Clients of /v1/messages (the anthropic SDK, ANTHROPIC_BASE_URL): Anthropic in, Anthropic out."""

    path = "/v1/messages"
    endpoint = "messages"
    provider = anthropic
    key_header = "x-api-key"
    # Anthropic deployments get the client's own body and answer bytes untranslated: thinking blocks,
    # cache_control, server tools and betas survive (Claude Code through the router keeps its caching).
    native = anthropic

    def native_headers(self, headers) -> dict[str, str]:
        """The client's API version and betas, which only mean something to Anthropic itself."""
        out = {"anthropic-version": headers.get("anthropic-version", "2023-06-01")}
        if beta := headers.get("anthropic-beta"):
            out["anthropic-beta"] = beta
        return out

    def to_chat(self, body: dict[str, Any], unsupported: Unsupported) -> tuple[dict[str, Any], list[str]]:
        return to_chat(body, unsupported)

    def wants_usage(self, body: dict[str, Any]) -> bool:
        return True  # Anthropic streams always report usage

    def whole(self, completion: dict[str, Any], model: str) -> bytes:
        return json.dumps(from_chat(completion, model), separators=(",", ":"), ensure_ascii=False).encode()

    def stream(self, model: str, wants_usage: bool) -> AnthropicEvents:
        return AnthropicEvents(model)

    def error(self, status: int, body: dict[str, Any]) -> bytes:
        err = body.get("error") or {}
        return anthropic.error_reply(status, str(err.get("message", "")), str(err.get("code") or "")).body


class AnthropicEvents:
    """OpenAI chunks out as Messages SSE events, for one streamed answer."""

    def __init__(self, model: str) -> None:
        self.inner = MessagesStream(model)

    def feed(self, chunks: list[dict[str, Any]]) -> bytes:
        return b"".join(self.inner.feed(c) for c in chunks)

    def close(self) -> bytes:
        return self.inner.close()

    def error(self, status: int, type: str, message: str, code: str | None = None) -> bytes:
        return self.inner.error_event(ERROR_TYPES.get(status, "api_error"), message)  # Anthropic errors carry no code


front = MessagesFront()
