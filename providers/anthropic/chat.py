"""OpenAI chat completions in and out of Anthropic's Messages API, so an OpenAI client can be routed
to Claude; every rename, default and missing counterpart is a table here."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from providers.anthropic.chat_stream import AnthropicChatStream, finish_reason
from providers.anthropic.wire import usage as anthropic_usage
from providers.base import as_int, dig
from providers.chat import (
    InvalidRequest,
    ProviderStreamError,
    Unsupported,
    UnsupportedParam,
    UpstreamRequest,
    each_tool_call,
    openai_usage,
)
from providers.safe_json import loads

ANTHROPIC_VERSION = "2023-06-01"
# Messages requires max_tokens; an OpenAI client that sends none means "the model's default".
DEFAULT_MAX_TOKENS = 4096
# Messages takes temperature and top_p in 0..1 (CreateMessageParams); OpenAI's temperature goes to 2.
SAMPLING_RANGE = (0.0, 1.0)
# OpenAI reasoning_effort -> output_config.effort (spec EffortLevel); "none" is Anthropic's default
# (no thinking) and is left out, "minimal" has no level below "low".
EFFORT = {"minimal": "low", "low": "low", "medium": "medium", "high": "high", "xhigh": "xhigh", "max": "max"}
TOOL_CHOICES = {"auto": "auto", "required": "any", "none": "none"}
# Sent to the model for response_format json_object: Messages can only constrain output to a schema
# (output_config.format), and "any object" is not one every model accepts.
JSON_OBJECT_INSTRUCTION = "Respond with a single valid JSON object and nothing else: no prose, no code fences."

# OpenAI parameters with no Messages counterpart: the values that ask for nothing (SDKs send some
# of them by default), and why any other value is dropped or refused.
NO_EQUIVALENT: dict[str, tuple[tuple[Any, ...], str]] = {
    "n": ((1,), "Anthropic returns one choice per request"),
    "logprobs": ((False,), "Anthropic returns no log probabilities"),
    "top_logprobs": ((0,), "Anthropic returns no log probabilities"),
    "presence_penalty": ((0,), "Anthropic has no presence penalty"),
    "frequency_penalty": ((0,), "Anthropic has no frequency penalty"),
    "logit_bias": (({},), "Anthropic has no token bias"),
    "seed": ((), "Anthropic sampling cannot be seeded"),
    "audio": ((), "Anthropic has no audio output"),
    "modalities": ((["text"],), "Anthropic answers in text only"),
    "prediction": ((), "Anthropic has no predicted outputs"),
    "verbosity": (("medium",), "Anthropic has no verbosity setting"),
    "service_tier": (("auto", "default"), "Anthropic's tiers are not OpenAI's"),
    "web_search_options": ((), "Anthropic web search is a server tool this gateway does not add"),
    "moderation": ((), "OpenAI moderation does not run on Anthropic"),
    "functions": ((), "deprecated; send tools"),
    "function_call": ((), "deprecated; send tool_choice"),
}
# OpenAI fields that change nothing about the answer: storage, caching hints, stream framing (the
# router handles include_usage). Ignored without a note.
IGNORED = frozenset(
    "model stream stream_options store metadata prompt_cache_key prompt_cache_retention prompt_cache_options".split()
)
TRANSLATED = frozenset(
    "messages max_tokens max_completion_tokens temperature top_p stop user safety_identifier tools tool_choice "
    "parallel_tool_calls response_format reasoning_effort".split()
)


class _Translation:
    """One request's translation: its notes, and what to do with a parameter that has no counterpart."""

    def __init__(self, unsupported: Unsupported) -> None:
        self.unsupported = unsupported
        self.notes: list[str] = []

    def drop(self, param: str, why: str) -> None:
        if self.unsupported == "refuse":
            raise UnsupportedParam(param, f"{param} is not supported by Anthropic: {why}")
        self.notes.append(f"dropped {param}: {why}")

    def params(self, body: dict[str, Any]) -> None:
        for param, value in body.items():
            if value is None or param in IGNORED or param in TRANSLATED:
                continue
            if param in NO_EQUIVALENT:
                harmless, why = NO_EQUIVALENT[param]
                if value not in harmless:
                    self.drop(param, why)
            else:
                self.drop(param, "not an OpenAI chat parameter this gateway translates")

    # -- messages ---------------------------------------------------------------------------------

    def messages(self, messages: list[Any]) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        """(system blocks, turns): system and developer messages lift out, the rest alternate roles."""
        system: list[dict[str, Any]] = []
        turns: list[dict[str, Any]] = []
        for i, msg in enumerate(messages):
            path = f"messages[{i}]"
            if not isinstance(msg, dict):
                raise InvalidRequest(path, "a message must be an object")
            role, content = msg.get("role"), msg.get("content")
            if role in ("system", "developer"):
                system += self.text_only(self.blocks(content, f"{path}.content"), f"{path}.content")
                continue
            if role == "user":
                blocks = self.blocks(content, f"{path}.content")
            elif role == "assistant":
                blocks = self.blocks(content, f"{path}.content") + self.tool_uses(msg.get("tool_calls"), path)
            elif role == "tool":
                role, blocks = "user", [self.tool_result(msg, path)]
            else:
                raise InvalidRequest(f"{path}.role", f"role {role!r} cannot be sent to Anthropic")
            if not blocks:
                continue  # Messages rejects empty turns (an assistant turn that was only content: null)
            if turns and turns[-1]["role"] == role:  # Messages requires alternating roles
                turns[-1]["content"] += blocks
            else:
                turns.append({"role": role, "content": blocks})
        for turn in turns:  # tool results must open the user turn that answers a tool_use
            if turn["role"] == "user":
                turn["content"].sort(key=lambda block: block["type"] != "tool_result")
        return system, turns

    def blocks(self, content: Any, path: str) -> list[dict[str, Any]]:
        if content is None:
            return []
        if isinstance(content, str):
            return [{"type": "text", "text": content}] if content else []
        if not isinstance(content, list):
            raise InvalidRequest(path, "content must be a string or a list of content parts")
        out = []
        for j, part in enumerate(content):
            if not isinstance(part, dict):
                raise InvalidRequest(f"{path}[{j}]", "a content part must be an object")
            block = self.block(part, f"{path}[{j}]")
            if block is None:
                continue
            if isinstance(part.get("cache_control"), dict):  # Anthropic's own field, as OpenRouter passes it
                block["cache_control"] = part["cache_control"]
            elif isinstance(part.get("prompt_cache_breakpoint"), dict):
                block["cache_control"] = {"type": "ephemeral"}
            out.append(block)
        return out

    def block(self, part: dict[str, Any], path: str) -> dict[str, Any] | None:
        kind = part.get("type")
        if kind in ("text", "refusal"):  # an earlier assistant refusal is text in its history
            text = part.get(kind)
            if not isinstance(text, str):
                raise InvalidRequest(f"{path}.{kind}", f"a {kind} part needs a string {kind}")
            return {"type": "text", "text": text} if text else None  # Messages rejects empty text blocks
        if kind == "image_url":
            ref = part.get("image_url")
            return image(ref.get("url") if isinstance(ref, dict) else ref, f"{path}.image_url.url")
        if kind == "file" and (doc := pdf(dig(part, "file", "file_data"), f"{path}.file.file_data")):
            return doc
        self.drop(
            path,
            f"{kind} content parts have no Anthropic equivalent"
            if kind != "file"
            else "only PDFs sent as file_data data URLs translate (Anthropic cannot read OpenAI file ids)",
        )
        return None

    def text_only(self, blocks: list[dict[str, Any]], path: str) -> list[dict[str, Any]]:
        if any(b["type"] != "text" for b in blocks):
            self.drop(path, "Anthropic's system prompt takes text only")
        return [b for b in blocks if b["type"] == "text"]

    def tool_uses(self, calls: Any, path: str) -> list[dict[str, Any]]:
        out = []
        for where, call in each_tool_call(calls, path):
            if call.get("type", "function") != "function":
                self.drop(where, f"{call.get('type')} tool calls have no Anthropic equivalent")
                continue
            name, call_id = dig(call, "function", "name"), call.get("id")
            if not isinstance(name, str) or not isinstance(call_id, str):
                raise InvalidRequest(where, "a tool call needs an id and a function name")
            out.append(
                {
                    "type": "tool_use",
                    "id": call_id,
                    "name": name,
                    "input": arguments(dig(call, "function", "arguments"), f"{where}.function.arguments"),
                }
            )
        return out

    def tool_result(self, msg: dict[str, Any], path: str) -> dict[str, Any]:
        if not isinstance(msg.get("tool_call_id"), str):
            raise InvalidRequest(f"{path}.tool_call_id", "a tool message needs the tool_call_id it answers")
        result: dict[str, Any] = {"type": "tool_result", "tool_use_id": msg["tool_call_id"]}
        if blocks := self.blocks(msg.get("content"), f"{path}.content"):
            result["content"] = blocks
        return result

    # -- tools and output -------------------------------------------------------------------------

    def tools(self, tools: Any) -> list[dict[str, Any]]:
        if tools is None:
            return []
        if not isinstance(tools, list):
            raise InvalidRequest("tools", "tools must be a list")
        out = []
        for i, tool in enumerate(tools):
            fn = tool.get("function") if isinstance(tool, dict) else None
            if isinstance(tool, dict) and tool.get("type", "function") != "function":
                self.drop(f"tools[{i}]", f"{tool.get('type')} tools have no Anthropic equivalent")
                continue
            if not isinstance(fn, dict) or not isinstance(fn.get("name"), str):
                raise InvalidRequest(f"tools[{i}].function.name", "a function tool needs a name")
            schema = fn.get("parameters")
            spec = {"name": fn["name"], "input_schema": schema if isinstance(schema, dict) else {"type": "object"}}
            if isinstance(fn.get("description"), str) and fn["description"]:
                spec["description"] = fn["description"]
            if fn.get("strict") is True:  # Tool.strict: inputs are validated against the schema
                spec["strict"] = True
            out.append(spec)
        return out

    def tool_choice(self, choice: Any, tools: list[dict[str, Any]], parallel: Any) -> tuple[Any, list]:
        """(Anthropic tool_choice or None, the tools it leaves on offer)."""
        out: dict[str, Any] | None = None
        if isinstance(choice, str) and choice in TOOL_CHOICES:
            out = {"type": TOOL_CHOICES[choice]}
        elif isinstance(choice, dict) and choice.get("type") == "function":
            if not isinstance(name := dig(choice, "function", "name"), str):
                raise InvalidRequest("tool_choice.function.name", "a named tool_choice needs a function name")
            out = {"type": "tool", "name": name}
        elif isinstance(choice, dict) and choice.get("type") == "allowed_tools":
            allowed = dig(choice, "allowed_tools", "tools")
            names = {dig(t, "function", "name") for t in allowed} if isinstance(allowed, list) else set()
            tools = [t for t in tools if t["name"] in names]
            out = {"type": "any" if dig(choice, "allowed_tools", "mode") == "required" else "auto"}
        elif isinstance(choice, dict) and choice.get("type") == "custom":
            self.drop("tool_choice", "custom tools have no Anthropic equivalent")
        elif choice is not None:
            raise InvalidRequest("tool_choice", "tool_choice must be none, auto, required or a named tool")
        if parallel is False and (out is None or out["type"] != "none"):
            out = {**(out or {"type": "auto"}), "disable_parallel_tool_use": True}
        return out, tools

    def response_format(self, fmt: Any, out: dict[str, Any]) -> None:
        kind = fmt.get("type") if isinstance(fmt, dict) else None
        schema = dig(fmt, "json_schema", "schema")
        if fmt is None or kind == "text":
            return
        if kind == "json_schema" and isinstance(schema, dict):
            # output_config.format; the top-level output_format is deprecated (spec BetaCreateMessageParams).
            out.setdefault("output_config", {})["format"] = {"type": "json_schema", "schema": schema}
        elif kind in ("json_object", "json_schema"):
            out.setdefault("system", []).append({"type": "text", "text": JSON_OBJECT_INSTRUCTION})
            self.notes.append(f"response_format {kind} without a schema: asked for a JSON object in the system prompt")
        else:
            raise InvalidRequest(
                "response_format.type", "response_format type must be text, json_object or json_schema"
            )

    def sampling(self, body: dict[str, Any], out: dict[str, Any]) -> None:
        param = "max_completion_tokens" if body.get("max_completion_tokens") is not None else "max_tokens"
        limit = body.get(param)
        if limit is not None and ((limit := as_int(limit)) is None or limit < 1):
            raise InvalidRequest(param, f"{param} must be a positive integer")
        out["max_tokens"] = DEFAULT_MAX_TOKENS if limit is None else limit
        for param in ("temperature", "top_p"):
            value = body.get(param)
            if value is None:
                continue
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise InvalidRequest(param, f"{param} must be a number")
            low, high = SAMPLING_RANGE
            out[param] = min(max(value, low), high)
            if out[param] != value:
                self.notes.append(f"clamped {param} {value} to {out[param]}: Anthropic allows {low:g}..{high:g}")
        stop = body.get("stop")
        if isinstance(stop, str) or (isinstance(stop, list) and all(isinstance(s, str) for s in stop)):
            if stops := [stop] if isinstance(stop, str) else stop:
                out["stop_sequences"] = stops
        elif stop is not None:
            raise InvalidRequest("stop", "stop must be a string or a list of strings")
        user = body.get("safety_identifier") or body.get("user")
        if isinstance(user, str) and user:
            out["metadata"] = {"user_id": user}
        effort = body.get("reasoning_effort")
        if effort in EFFORT:
            out.setdefault("output_config", {})["effort"] = EFFORT[effort]
            if EFFORT[effort] != effort:
                self.notes.append(f"reasoning_effort {effort} sent as effort {EFFORT[effort]}")
        elif effort not in (None, "none"):
            raise InvalidRequest("reasoning_effort", f"unknown reasoning_effort {effort!r}")


def image(url: Any, path: str) -> dict[str, Any]:
    """An image block for an OpenAI image URL: a data: URL inline, an http(s) URL by reference."""
    if not isinstance(url, str) or not url:
        raise InvalidRequest(path, "an image part needs a URL")
    if url.startswith("data:"):
        media, data = data_url(url, path)
        return {"type": "image", "source": {"type": "base64", "media_type": media, "data": data}}
    if url.startswith(("https://", "http://")):
        return {"type": "image", "source": {"type": "url", "url": url}}
    raise InvalidRequest(path, "an image URL must be http(s) or a base64 data: URL")


def pdf(file_data: Any, path: str) -> dict[str, Any] | None:
    """A document block for a PDF sent inline; None for any other file."""
    if not isinstance(file_data, str) or not file_data.startswith("data:application/pdf;"):
        return None
    _, data = data_url(file_data, path)
    return {"type": "document", "source": {"type": "base64", "media_type": "application/pdf", "data": data}}


def data_url(url: str, path: str) -> tuple[str, str]:
    """(media type, base64 data) of a data: URL (RFC 2397)."""
    head, comma, data = url[len("data:") :].partition(",")
    media, *params = head.split(";")
    if not comma or "base64" not in params or not media or not data:
        raise InvalidRequest(path, "a data: URL must be data:<media type>;base64,<data>")
    return media, data


def arguments(raw: Any, path: str) -> dict[str, Any]:
    """A tool call's arguments JSON as the object Anthropic's tool_use.input must be."""
    if isinstance(raw, dict):
        return raw
    if raw in (None, ""):
        return {}
    try:
        value = loads(raw) if isinstance(raw, str) else None
    except ValueError:
        value = None
    if not isinstance(value, dict):
        raise InvalidRequest(path, "tool call arguments must be a JSON object")
    return value


@dataclass(frozen=True, slots=True)
class AnthropicChat:
    """ChatAdapter for api.anthropic.com's Messages endpoint."""

    clock: Callable[[], float] = time.time

    def chat_request(
        self, body: dict[str, Any], model: str, *, stream: bool, unsupported: Unsupported = "drop"
    ) -> UpstreamRequest:
        if not isinstance(body, dict):
            raise InvalidRequest(None, "the request body must be a JSON object")
        if not isinstance(body.get("messages"), list) or not body["messages"]:
            raise InvalidRequest("messages", "messages must be a non-empty list of chat messages")
        t = _Translation(unsupported)
        t.params(body)
        system, turns = t.messages(body["messages"])
        if not turns:
            raise InvalidRequest("messages", "Anthropic needs at least one user or assistant message")
        out: dict[str, Any] = {"model": model, "messages": turns, "stream": stream}
        if system:
            out["system"] = system
        t.sampling(body, out)
        t.response_format(body.get("response_format"), out)
        if tools := t.tools(body.get("tools")):  # tool_choice without tools means nothing to Anthropic
            choice, tools = t.tool_choice(body.get("tool_choice"), tools, body.get("parallel_tool_calls"))
            out["tools"] = tools
            if choice is not None:
                out["tool_choice"] = choice
        return UpstreamRequest("/v1/messages", out, {"anthropic-version": ANTHROPIC_VERSION}, t.notes)

    def chat_response(self, body: Any, model: str) -> dict[str, Any]:
        if not isinstance(body, dict) or not isinstance(body.get("content"), list):
            raise ProviderStreamError(502, "anthropic answered without content", "api_error")
        text, calls = [], []
        for block in body["content"]:  # thinking and server-tool blocks have no place in an OpenAI message
            kind = block.get("type") if isinstance(block, dict) else None
            if kind == "text" and isinstance(block.get("text"), str):
                text.append(block["text"])
            elif kind == "tool_use":
                calls.append(
                    {
                        "id": block.get("id"),
                        "type": "function",
                        "function": {
                            "name": block.get("name"),
                            "arguments": json.dumps(block.get("input") or {}, ensure_ascii=False),
                        },
                    }
                )
        message: dict[str, Any] = {"role": "assistant", "content": "".join(text) if text else None, "refusal": None}
        if calls:
            message["tool_calls"] = calls
        reply_model, reply_id = body.get("model"), body.get("id")
        return {
            "id": f"chatcmpl-{reply_id}" if isinstance(reply_id, str) and reply_id else f"chatcmpl-{uuid.uuid4().hex}",
            "object": "chat.completion",
            "created": int(self.clock()),
            "model": reply_model if isinstance(reply_model, str) and reply_model else model,
            "choices": [
                {
                    "index": 0,
                    "message": message,
                    "logprobs": None,
                    "finish_reason": finish_reason(body.get("stop_reason")),
                }
            ],
            "usage": openai_usage(anthropic_usage(body.get("usage"))),
        }

    def chat_stream(self, model: str, include_usage: bool) -> AnthropicChatStream:
        return AnthropicChatStream(model, include_usage, int(self.clock()))

    def auth_headers(self, api_key: str) -> dict[str, str]:
        return {"x-api-key": api_key}


anthropic_chat = AnthropicChat()
