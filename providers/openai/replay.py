"""OpenAI chat completions in the other mode: a chat.completion as the chunks OpenAI would have
streamed, and a whole completion assembled from chunks, for OpenAI and every compatible host."""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any

from providers.base import dig
from providers.replay_sse import DONE, read_events, write_events

# Top-level chunk fields that describe one chunk, not the completion.
_CHUNK_ONLY = ("object", "choices", "usage", "obfuscation")
_CHOICE_OWN = ("index", "message", "delta", "logprobs", "finish_reason")
# Delta fields that repeat rather than accumulate (OpenRouter repeats role in every chunk).
_REPLACED = ("index", "type", "role", "id")


def openai_chunks(completion: dict[str, Any], include_usage: bool) -> list[dict[str, Any]]:
    """The `chat.completion.chunk`s of a `chat.completion`, as OpenAI streams them.

    Per choice: a role chunk, then content, refusal, any other message field (DeepSeek's
    reasoning_content...), each tool call's index/id/type/name and then its arguments, and a chunk
    with only the finish_reason; choices follow one another (n > 1 is not interleaved). With
    include_usage every chunk has "usage": null and one last chunk with "choices": [] has the usage
    (stream_options.include_usage in the spec); without it no usage appears at all.
    """
    head = {"id": completion.get("id"), "object": "chat.completion.chunk"}
    head |= {k: v for k, v in completion.items() if k not in ("id", "object", "choices", "usage")}
    chunks = []
    for choice in completion.get("choices") or ():
        for delta in _choice_deltas(choice):
            chunks.append({**head, "choices": [delta]} | ({"usage": None} if include_usage else {}))
    if include_usage and isinstance(usage := completion.get("usage"), dict):
        chunks.append({**head, "choices": [], "usage": usage})
    return chunks


def _choice_deltas(choice: dict[str, Any]) -> list[dict[str, Any]]:
    index, message = choice.get("index", 0), choice.get("message") or {}
    content, refusal = message.get("content"), message.get("refusal")
    deltas: list[dict[str, Any]] = [
        {
            "role": message.get("role") or "assistant",
            "content": "" if isinstance(content, str) else None,
            "refusal": "" if isinstance(refusal, str) else None,
        }
    ]
    for key, value in message.items():  # reasoning_content, annotations, audio...
        if key in ("role", "content", "refusal", "tool_calls"):
            continue
        if value in (None, "", [], {}):
            deltas[0][key] = value  # an empty field rides on the role chunk, so it survives the round trip
        else:
            deltas.append({key: value})
    if content:
        deltas.append({"content": content})
    if refusal:
        deltas.append({"refusal": refusal})
    for i, call in enumerate(message.get("tool_calls") or ()):
        fn = call.get("function") or {}
        deltas.append({"tool_calls": [{"index": i, "id": call.get("id"), "type": call.get("type", "function"),
                                       "function": {"name": fn.get("name"), "arguments": ""}}]})
        if fn.get("arguments"):
            deltas.append({"tool_calls": [{"index": i, "function": {"arguments": fn["arguments"]}}]})
    # The whole choice's logprobs ride on the chunk with its text, so assembling gives them back.
    text_at = next((i for i, d in enumerate(deltas) if i and ("content" in d or "refusal" in d)), 0)
    out = [{"index": index, "delta": d, "logprobs": choice.get("logprobs") if i == text_at else None,
            "finish_reason": None} for i, d in enumerate(deltas)]
    extra = {k: v for k, v in choice.items() if k not in _CHOICE_OWN}  # Azure's content_filter_results
    out.append({"index": index, "delta": {}, "logprobs": None, "finish_reason": choice.get("finish_reason")} | extra)
    return out


def openai_completion(chunks: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The `chat.completion` a list of chunks adds up to; None unless every choice saw a finish_reason,
    or when a chunk carries an error (OpenRouter's mid-stream error).

    Fields concatenate as the openai SDK's accumulate_delta does (strings join, lists extend, tool
    calls merge by index), logprobs included; the first non-empty value of a top-level field wins
    (Azure's first chunk has "" and 0, Groq's last id is "stub"); usage is the last one seen,
    top-level or under x_groq.
    """
    top: dict[str, Any] = {}
    choices: dict[int, dict[str, Any]] = {}
    usage = None
    for chunk in copy.deepcopy(chunks):
        if not isinstance(chunk, dict) or chunk.get("error") is not None:
            return None
        for key, value in chunk.items():
            if key not in _CHUNK_ONLY and top.get(key) in (None, "", 0):
                top[key] = value
        if isinstance(found := chunk.get("usage") or dig(chunk, "x_groq", "usage"), dict):
            usage = found
        for part in chunk.get("choices") or ():
            _fold(choices.setdefault(part.get("index", 0), {"message": {}, "calls": {}}), part)
    if not choices or any(c.get("finish_reason") is None for c in choices.values()):
        return None
    body = {"id": top.pop("id", None), "object": "chat.completion", "created": top.pop("created", None),
            "model": top.pop("model", None), "choices": [_choice(i, choices[i]) for i in sorted(choices)]}
    # A field null in every chunk is left out (Azure's system_fingerprint), as whole bodies leave it out.
    return body | {k: v for k, v in top.items() if v is not None} | ({"usage": usage} if usage is not None else {})


def _fold(acc: dict[str, Any], part: dict[str, Any]) -> None:
    delta = part.get("delta") or {}
    for call in delta.get("tool_calls") or ():
        key = call.get("index", len(acc["calls"]))
        _merge(acc["calls"].setdefault(key, {}), {k: v for k, v in call.items() if k != "index"})
    _merge(acc["message"], {k: v for k, v in delta.items() if k != "tool_calls"})
    if part.get("logprobs") is not None:
        acc["logprobs"] = _merge(acc.get("logprobs") or {}, part["logprobs"])
    for key, value in part.items():
        if key not in ("index", "delta", "logprobs") and value is not None:
            acc[key] = value


def _merge(acc: dict[str, Any], delta: dict[str, Any]) -> dict[str, Any]:
    for key, new in delta.items():
        old = acc.get(key)
        if old is None or key in _REPLACED:
            if new is not None or key not in acc:
                acc[key] = new
        elif isinstance(old, str) and isinstance(new, str):
            acc[key] = old + new
        elif isinstance(old, dict) and isinstance(new, dict):
            _merge(old, new)
        elif isinstance(old, list) or isinstance(new, list):  # Mistral: content as a list of parts, or text
            acc[key] = _parts(old) + _parts(new)
        elif new is not None:
            acc[key] = new
    return acc


def _parts(value: Any) -> list[Any]:
    if isinstance(value, list):
        return value
    return [{"type": "text", "text": value}] if isinstance(value, str) and value else []


def _choice(index: int, acc: dict[str, Any]) -> dict[str, Any]:
    msg, by_index = acc.pop("message"), acc.pop("calls")
    calls = [by_index[k] for k in sorted(by_index)]
    message = {"role": msg.pop("role", None) or "assistant", "content": msg.pop("content", None),
               "refusal": msg.pop("refusal", None)} | msg
    if calls:
        message["tool_calls"] = [
            {"id": c.get("id"), "type": c.get("type") or "function",
             "function": {"name": (c.get("function") or {}).get("name"),
                          "arguments": (c.get("function") or {}).get("arguments") or ""}}
            for c in calls
        ]
    rest = {k: v for k, v in acc.items() if k not in ("logprobs", "finish_reason")}
    return {"index": index, "message": message, "logprobs": acc.get("logprobs"),
            "finish_reason": acc["finish_reason"]} | rest


@dataclass(frozen=True, slots=True)
class OpenAIChatReplay:
    """Chat completions replayed between `chat.completion` and chunks ending `data: [DONE]`."""

    endpoints: tuple[str, ...] = ("chat.completions",)

    def as_stream(self, body: dict[str, Any], *, include_usage: bool = True) -> bytes:
        chunks = openai_chunks(body, include_usage)
        return write_events([(None, c) for c in chunks] + [(None, DONE)])

    def as_whole(self, raw: bytes) -> dict[str, Any] | None:
        """None for a stream cut before `data: [DONE]`, and as openai_completion says."""
        events = read_events(raw)
        if not events or events[-1][1] != DONE:
            return None
        return openai_completion([data for _, data in events[:-1]])


openai_replay = OpenAIChatReplay()
