"""OpenAI chat requests as Gemini generateContent calls and Gemini answers back as OpenAI chat
objects, so the router can send an OpenAI client to Gemini."""

from __future__ import annotations

import base64
import mimetypes
import posixpath
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, unquote_to_bytes, urlsplit

from providers.base import dig
from providers.chat import (
    InvalidRequest,
    ProviderStreamError,
    Unsupported,
    UnsupportedParam,
    UpstreamRequest,
    each_tool_call,
)
from providers.gemini.chat_stream import (
    GeminiChatStream,
    answer_parts,
    candidate_index,
    completion_id,
    created_at,
    finish_reason,
    logprobs,
    openai_usage,
    raise_error,
    response_model,
    split_call_id,
    tool_call,
)
from providers.safe_json import loads

# OpenAI parameter -> GenerationConfig field (generative_service.proto JSON names). In this order,
# so max_completion_tokens overrides the deprecated max_tokens.
GENERATION = {
    "max_tokens": "maxOutputTokens",
    "max_completion_tokens": "maxOutputTokens",
    "temperature": "temperature",
    "top_p": "topP",
    "n": "candidateCount",
    "seed": "seed",
    "presence_penalty": "presencePenalty",
    "frequency_penalty": "frequencyPenalty",
    "logprobs": "responseLogprobs",
    "top_logprobs": "logprobs",
}
# Translated below, outside GENERATION.
TRANSLATED = frozenset({"messages", "tools", "tool_choice", "response_format", "stop", "reasoning_effort"})
# Not sent and not worth a note: routing, streaming and OpenAI-side bookkeeping or cache hints.
NOT_SENT = frozenset({"model", "stream", "stream_options", "user", "safety_identifier", "metadata", "store",
                      "prompt_cache_key", "prompt_cache_retention", "prompt_cache_options"})
# OpenAI parameters Gemini has no equivalent for: why, for the note or the refusal.
UNSUPPORTED = {
    "logit_bias": "Gemini has no token biasing",
    "parallel_tool_calls": "Gemini cannot be held to one function call per turn",
    "audio": "this adapter asks Gemini for text answers only",
    "modalities": "this adapter asks Gemini for text answers only",
    "prediction": "Gemini has no predicted outputs",
    "web_search_options": "web search is not translated to Gemini's google_search tool",
    "service_tier": "Gemini generateContent has no service tier parameter",
    "verbosity": "Gemini has no verbosity setting",
    "moderation": "Gemini has no moderation parameter",
    "functions": "deprecated by OpenAI and not translated; send tools",
    "function_call": "deprecated by OpenAI and not translated; send tool_choice",
}
# Values that ask for nothing Gemini would not do anyway (OpenAI's defaults).
HARMLESS = {"parallel_tool_calls": (True,), "modalities": (["text"],), "service_tier": ("auto", "default"),
            "verbosity": ("medium",)}
# reasoning_effort -> ThinkingConfig.thinkingBudget, the budgets Google's own OpenAI-compatible endpoint
# uses (ai.google.dev/gemini-api/docs/openai: low 1K, medium 8K, high 24K; "none" turns thinking off).
THINKING_BUDGETS = {"none": 0, "low": 1024, "medium": 8192, "high": 24576}
TOOL_MODES = {"auto": "AUTO", "none": "NONE", "required": "ANY"}
# allowed_tools mode -> FunctionCallingConfig mode; allowedFunctionNames needs ANY or VALIDATED (content.proto).
ALLOWED_TOOL_MODES = {"auto": "VALIDATED", "required": "ANY"}
# Which content part types each role may carry (OpenAI ChatCompletionRequest*Message schemas).
ROLE_PARTS = {
    "system": frozenset({"text"}),
    "developer": frozenset({"text"}),
    "user": frozenset({"text", "image_url", "input_audio", "file"}),
    "assistant": frozenset({"text", "refusal"}),
    "tool": frozenset({"text"}),
}
# Image URL extension -> MIME type for fileData; the gateway never fetches a client's URL to look.
IMAGE_TYPES = {".png": "image/png", ".jpg": "image/jpeg", ".jpeg": "image/jpeg", ".webp": "image/webp",
               ".gif": "image/gif", ".heic": "image/heic", ".heif": "image/heif"}
DEFAULT_IMAGE_TYPE = "image/jpeg"
AUDIO_TYPES = {"wav": "audio/wav", "mp3": "audio/mp3"}  # input_audio.format (the spec's enum)
DEFAULT_FILE_TYPE = "application/pdf"  # OpenAI's file parts are PDFs


@dataclass(slots=True)
class _Policy:
    """What to do with something Gemini cannot take: drop it with a note, or refuse the request."""

    mode: Unsupported
    notes: list[str]

    def __call__(self, param: str, why: str) -> None:
        if self.mode == "refuse":
            raise UnsupportedParam(param, f"{param} is not supported by Gemini: {why}")
        self.notes.append(f"dropped {param}: {why}")


class GeminiChat:
    """ChatAdapter for the Gemini API's generateContent and streamGenerateContent."""

    def chat_request(self, body: dict[str, Any], model: str, *, stream: bool,
                     unsupported: Unsupported = "drop") -> UpstreamRequest:
        if not isinstance(body, dict):
            raise InvalidRequest(None, "the request body must be a JSON object")
        if not isinstance(body.get("messages"), list) or not body["messages"]:
            raise InvalidRequest("messages", "messages must be a non-empty array of chat messages")
        if not isinstance(model, str) or not model.removeprefix("models/"):
            raise InvalidRequest("model", "a Gemini model name is needed")
        policy = _Policy(unsupported, [])
        for param, value in body.items():
            if param in TRANSLATED or param in GENERATION or param in NOT_SENT or value is None:
                continue
            if value not in HARMLESS.get(param, ()):
                policy(param, UNSUPPORTED.get(param, "not a chat parameter Gemini has an equivalent for"))
        system, contents = _contents(body["messages"], policy)
        if not contents:  # Gemini requires contents; instructions alone are not a conversation
            raise InvalidRequest("messages", "messages need at least one user or assistant message with content")
        out: dict[str, Any] = {"contents": contents}
        if system:
            out["systemInstruction"] = {"parts": system}
        if tools := _tools(body.get("tools"), policy):
            out["tools"] = [{"functionDeclarations": tools}]
            # without declarations there is nothing to choose among, so tool_choice goes only with them
            if (config := _tool_choice(body.get("tool_choice"), policy)) is not None:
                out["toolConfig"] = {"functionCallingConfig": config}
        if generation := _generation(body, policy):
            out["generationConfig"] = generation
        name = quote(model.removeprefix("models/"), safe="")
        method = "streamGenerateContent?alt=sse" if stream else "generateContent"
        return UpstreamRequest(f"/v1beta/models/{name}:{method}", out, {}, policy.notes)

    def chat_response(self, body: Any, model: str) -> dict[str, Any]:
        if not isinstance(body, dict):
            raise ProviderStreamError(502, "Gemini answered with something other than a JSON object")
        raise_error(body)
        choices = []
        for position, candidate in enumerate(c for c in body.get("candidates") or () if isinstance(c, dict)):
            texts, calls = answer_parts(candidate)
            message: dict[str, Any] = {"role": "assistant", "content": "".join(texts) or None, "refusal": None}
            if calls:
                message["tool_calls"] = [tool_call(part) for part in calls]
            choices.append({"index": candidate_index(candidate, position), "message": message,
                            "logprobs": logprobs(candidate),
                            "finish_reason": finish_reason(candidate.get("finishReason"), bool(calls))})
        if not choices:  # a blocked prompt (promptFeedback.blockReason) has no candidates
            blocked = isinstance(dig(body, "promptFeedback", "blockReason"), str)
            choices.append({"index": 0, "message": {"role": "assistant", "content": None, "refusal": None},
                            "logprobs": None, "finish_reason": "content_filter" if blocked else "stop"})
        out = {"id": completion_id(body), "object": "chat.completion", "created": created_at(body),
               "model": response_model(body, model), "choices": choices}
        if (usage := openai_usage(body.get("usageMetadata"))) is not None:
            out["usage"] = usage
        return out

    def chat_stream(self, model: str, include_usage: bool) -> GeminiChatStream:
        return GeminiChatStream(model, include_usage)

    def auth_headers(self, api_key: str) -> dict[str, str]:
        return {"x-goog-api-key": api_key}


# -- messages -----------------------------------------------------------------------------------


def _contents(messages: list[Any], policy: _Policy) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(systemInstruction parts, contents): system and developer text wherever it appears; user and
    assistant turns as user and model, consecutive turns of one role merged (tool results included)."""
    system: list[dict[str, Any]] = []
    contents: list[dict[str, Any]] = []
    calls: dict[str, tuple[str, str]] = {}  # OpenAI tool call id -> (function name, Gemini call id)
    for i, message in enumerate(messages):
        where = f"messages[{i}]"
        if not isinstance(message, dict):
            raise InvalidRequest(where, "each message must be an object")
        role = message.get("role")
        if role == "function":
            policy(where, "function messages are deprecated by OpenAI and not translated; send tool messages")
            continue
        if not isinstance(role, str) or role not in ROLE_PARTS:
            raise InvalidRequest(f"{where}.role", f"unknown message role {role!r}")
        if role in ("system", "developer"):
            system += _parts(message.get("content"), role, where, policy)
            continue
        if role == "tool":
            parts = [_function_response(message, where, calls, policy)]
        else:
            parts = _parts(message.get("content"), role, where, policy)
        if role == "assistant":
            parts += _function_calls(message, where, calls, policy)
        gemini_role = "model" if role == "assistant" else "user"
        if not parts:
            continue
        if contents and contents[-1]["role"] == gemini_role:
            contents[-1]["parts"] += parts
        else:
            contents.append({"role": gemini_role, "parts": parts})
    return system, contents


def _parts(content: Any, role: str, where: str, policy: _Policy) -> list[dict[str, Any]]:
    """Gemini parts for a message's content: a string, or an array of OpenAI content parts."""
    if content is None:
        return []
    if isinstance(content, str):
        return [{"text": content}] if content else []
    if not isinstance(content, list):
        raise InvalidRequest(f"{where}.content", "content must be a string or an array of content parts")
    parts = []
    for j, part in enumerate(content):
        here = f"{where}.content[{j}]"
        kind = part.get("type") if isinstance(part, dict) else None
        if not isinstance(kind, str) or kind not in ROLE_PARTS[role]:
            raise InvalidRequest(f"{here}.type", f"{role} messages cannot carry a content part of type {kind!r}")
        if (translated := _PART_TYPES[kind](part, here, policy)) is not None:
            parts.append(translated)
    return parts


def _text(part: dict[str, Any], where: str, policy: _Policy) -> dict[str, Any] | None:
    key = "refusal" if part.get("type") == "refusal" else "text"
    if not isinstance(text := part.get(key), str):
        raise InvalidRequest(f"{where}.{key}", f"{key} must be a string")
    return {"text": text} if text else None


def _image(part: dict[str, Any], where: str, policy: _Policy) -> dict[str, Any]:
    where = f"{where}.image_url.url"
    if not isinstance(url := dig(part, "image_url", "url"), str):
        raise InvalidRequest(where, "image_url.url must be a string")
    if url.startswith("data:"):
        return {"inlineData": _data_url(url, where)}
    split = urlsplit(url)
    if split.scheme.lower() not in ("http", "https"):
        raise InvalidRequest(where, "image URLs must be http(s) or data: URLs")
    suffix = posixpath.splitext(split.path)[1].lower()
    # Gemini reads the URL itself (fileData); the gateway never fetches what a client points at.
    return {"fileData": {"mimeType": IMAGE_TYPES.get(suffix, DEFAULT_IMAGE_TYPE), "fileUri": url}}


def _audio(part: dict[str, Any], where: str, policy: _Policy) -> dict[str, Any]:
    audio = part.get("input_audio")
    data, kind = dig(audio, "data"), dig(audio, "format")
    if not isinstance(data, str):
        raise InvalidRequest(f"{where}.input_audio.data", "input_audio.data must be base64 audio")
    if not isinstance(kind, str) or kind not in AUDIO_TYPES:
        raise InvalidRequest(f"{where}.input_audio.format", f"input_audio.format must be one of {sorted(AUDIO_TYPES)}")
    return {"inlineData": {"mimeType": AUDIO_TYPES[kind], "data": data}}


def _file(part: dict[str, Any], where: str, policy: _Policy) -> dict[str, Any] | None:
    file = part.get("file") if isinstance(part.get("file"), dict) else {}
    data = file.get("file_data")
    if isinstance(data, str) and data.startswith("data:"):
        return {"inlineData": _data_url(data, f"{where}.file.file_data")}
    if isinstance(data, str) and data:
        name = file.get("filename") if isinstance(file.get("filename"), str) else ""
        return {"inlineData": {"mimeType": mimetypes.guess_type(name)[0] or DEFAULT_FILE_TYPE, "data": data}}
    if file.get("file_id") is not None:
        policy(f"{where}.file.file_id", "an OpenAI file id means nothing to Gemini; send file_data")
        return None
    raise InvalidRequest(f"{where}.file", "a file part needs file_data")


_PART_TYPES = {"text": _text, "refusal": _text, "image_url": _image, "input_audio": _audio, "file": _file}


def _data_url(url: str, where: str) -> dict[str, str]:
    """A Blob (inlineData) from a data: URL (RFC 2397); Gemini wants the bytes base64 encoded."""
    header, comma, payload = url[5:].partition(",")
    mime, *params = header.split(";")
    if not comma or not mime:
        raise InvalidRequest(where, "a data: URL needs a media type and a comma before the data")
    data = payload.strip() if "base64" in params else base64.b64encode(unquote_to_bytes(payload)).decode()
    return {"mimeType": mime, "data": data}


def _function_calls(message: dict[str, Any], where: str, calls: dict[str, tuple[str, str]],
                    policy: _Policy) -> list[dict[str, Any]]:
    """functionCall parts for an assistant message's tool_calls, remembering each id for the results."""
    if message.get("function_call") is not None:
        policy(f"{where}.function_call", "deprecated by OpenAI and not translated; send tool_calls")
    parts = []
    for here, call in each_tool_call(message.get("tool_calls"), where):
        if call.get("type", "function") != "function":
            policy(here, f"{call.get('type')!r} tool calls have no Gemini equivalent")
            continue
        name, arguments, call_id = dig(call, "function", "name"), dig(call, "function", "arguments"), call.get("id")
        if not isinstance(name, str) or not name:
            raise InvalidRequest(f"{here}.function.name", "a tool call needs a function name")
        if not isinstance(call_id, str) or not call_id:
            raise InvalidRequest(f"{here}.id", "a tool call needs an id")
        try:
            args = loads(arguments) if arguments else {}
        except (TypeError, ValueError):
            raise InvalidRequest(f"{here}.function.arguments", "function arguments are not valid JSON") from None
        if not isinstance(args, dict):
            raise InvalidRequest(f"{here}.function.arguments", "function arguments must be a JSON object")
        gemini_id, signature = split_call_id(call_id)
        # Google's own OpenAI-compatible shape for a signature, should a client send that instead
        signature = signature or dig(call, "extra_content", "google", "thought_signature")
        calls[call_id] = (name, gemini_id)
        part: dict[str, Any] = {"functionCall": {"id": gemini_id, "name": name, "args": args}}
        if isinstance(signature, str) and signature:
            part["thoughtSignature"] = signature
        parts.append(part)
    return parts


def _function_response(message: dict[str, Any], where: str, calls: dict[str, tuple[str, str]],
                       policy: _Policy) -> dict[str, Any]:
    """A functionResponse part for a tool message, named after the call it answers."""
    call_id = message.get("tool_call_id")
    if not isinstance(call_id, str) or call_id not in calls:
        raise InvalidRequest(f"{where}.tool_call_id", f"{call_id!r} answers no earlier assistant tool call")
    name, gemini_id = calls[call_id]
    text = "".join(p["text"] for p in _parts(message.get("content"), "tool", where, policy))
    try:
        result = loads(text)
    except ValueError:
        result = text
    # FunctionResponse.response is a Struct: an object result goes as is, anything else as the string
    response = {"result": result if isinstance(result, dict) else text}
    return {"functionResponse": {"id": gemini_id, "name": name, "response": response}}


# -- tools and generation ------------------------------------------------------------------------


def _tools(tools: Any, policy: _Policy) -> list[dict[str, Any]]:
    """FunctionDeclarations; parametersJsonSchema takes a full JSON Schema, where `parameters` takes
    only the OpenAPI subset in content.proto's Schema."""
    if tools is None:
        return []
    if not isinstance(tools, list):
        raise InvalidRequest("tools", "tools must be an array")
    declarations = []
    for i, tool in enumerate(tools):
        where = f"tools[{i}]"
        if not isinstance(tool, dict):
            raise InvalidRequest(where, "each tool must be an object")
        if tool.get("type") != "function":
            policy(where, f"{tool.get('type')!r} tools have no Gemini equivalent")
            continue
        function = tool.get("function") if isinstance(tool.get("function"), dict) else {}
        if not isinstance(name := function.get("name"), str) or not name:
            raise InvalidRequest(f"{where}.function.name", "a function tool needs a name")
        description = function.get("description")
        declaration = {"name": name, "description": description if isinstance(description, str) else ""}
        if function.get("parameters") is not None:
            declaration["parametersJsonSchema"] = function["parameters"]
        declarations.append(declaration)
    return declarations


def _tool_choice(choice: Any, policy: _Policy) -> dict[str, Any] | None:
    """FunctionCallingConfig for tool_choice: a mode, or a named set of functions."""
    if choice is None:
        return None
    if isinstance(choice, str) and choice in TOOL_MODES:
        return {"mode": TOOL_MODES[choice]}
    kind = choice.get("type") if isinstance(choice, dict) else None
    if kind == "function" and isinstance(name := dig(choice, "function", "name"), str) and name:
        return {"mode": "ANY", "allowedFunctionNames": [name]}
    if kind == "allowed_tools":
        allowed = choice.get("allowed_tools")
        mode, tools = dig(allowed, "mode"), dig(allowed, "tools")
        names = [dig(t, "function", "name") for t in tools] if isinstance(tools, list) else None
        if isinstance(mode, str) and mode in ALLOWED_TOOL_MODES and names and all(isinstance(n, str) for n in names):
            return {"mode": ALLOWED_TOOL_MODES[mode], "allowedFunctionNames": names}
    if kind == "custom":
        policy("tool_choice", "custom tools have no Gemini equivalent")
        return None
    raise InvalidRequest("tool_choice", "tool_choice must be auto, none, required, a function or allowed_tools")


def _generation(body: dict[str, Any], policy: _Policy) -> dict[str, Any]:
    """GenerationConfig: renamed sampling and length parameters, stop, response_format, thinking."""
    config = {GENERATION[p]: body[p] for p in GENERATION if body.get(p) is not None}
    if (stop := body.get("stop")) is not None:
        config["stopSequences"] = [stop] if isinstance(stop, str) else stop
    if (effort := body.get("reasoning_effort")) is not None:
        if isinstance(effort, str) and effort in THINKING_BUDGETS:
            config["thinkingConfig"] = {"thinkingBudget": THINKING_BUDGETS[effort]}
        else:
            policy("reasoning_effort", f"{effort!r} has no Gemini thinking budget")
    response_format = body.get("response_format")
    kind = response_format.get("type") if isinstance(response_format, dict) else response_format
    if kind in ("json_object", "json_schema"):
        config["responseMimeType"] = "application/json"
    if kind == "json_schema":
        # responseJsonSchema takes JSON Schema; responseSchema only the OpenAPI subset (generative_service.proto)
        if (schema := dig(response_format, "json_schema", "schema")) is not None:
            config["responseJsonSchema"] = schema
    elif kind not in (None, "text", "json_object"):
        raise InvalidRequest("response_format.type", "response_format.type must be text, json_object or json_schema")
    return config


gemini_chat = GeminiChat()
