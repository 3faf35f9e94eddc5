"""Gemini generateContent in the other mode: a GenerateContentResponse as the alt=sse events of
streamGenerateContent, and a whole response folded from those events."""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any

from providers.base import dig
from providers.replay_sse import read_events, write_events

# Part fields that may ride along on a text part that is merged into the one before it.
_TEXT_PART = frozenset({"text", "thought", "thoughtSignature"})


def _events(body: dict[str, Any]) -> list[dict[str, Any]]:
    """Event i carries part i of every candidate that has one, each event a whole
    GenerateContentResponse as Gemini streams them; the last event carries every candidate's
    finishReason (and its other fields) and the usageMetadata, so a stream cut before it is unfinished."""
    top = {k: v for k, v in body.items() if k not in ("candidates", "usageMetadata")}
    candidates = [c for c in body.get("candidates") or () if isinstance(c, dict)]
    if not candidates:  # a blocked prompt: promptFeedback and usage, no candidates
        return [body]
    contents = [c.get("content") if isinstance(c.get("content"), dict) else {} for c in candidates]
    count = max(1, *(len(content.get("parts") or ()) for content in contents))
    events = []
    for i in range(count):
        last, pieces = i == count - 1, []
        for candidate, content in zip(candidates, contents, strict=True):
            parts = content.get("parts") or []
            piece = {"content": content | {"parts": [parts[i]]}} if i < len(parts) else {}
            if last:
                piece |= {k: v for k, v in candidate.items() if k != "content"}
            elif piece and "index" in candidate:
                piece["index"] = candidate["index"]
            pieces += [piece] if piece else []
        usage = {"usageMetadata": body["usageMetadata"]} if last and "usageMetadata" in body else {}
        events.append({"candidates": pieces} | usage | top)
    return events


def _merge_parts(parts: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Consecutive text parts (of the same thought flag, at most one signature) as one part; the
    empty text part a stream's last event often carries is dropped."""
    out: list[dict[str, Any]] = []
    for part in parts:
        if not (isinstance(part, dict) and isinstance(part.get("text"), str) and set(part) <= _TEXT_PART):
            out.append(part)
            continue
        prev = out[-1] if out else None
        if (
            isinstance(prev, dict) and isinstance(prev.get("text"), str) and set(prev) <= _TEXT_PART
            and prev.get("thought") == part.get("thought")
            and not ("thoughtSignature" in prev and "thoughtSignature" in part)
        ):
            prev["text"] += part["text"]
            prev |= {k: v for k, v in part.items() if k == "thoughtSignature"}
        elif part != {"text": ""}:
            out.append(part)
    return out


@dataclass(frozen=True, slots=True)
class GeminiReplay:
    """generateContent replayed between a GenerateContentResponse and CRLF-framed `data:` events."""

    endpoints: tuple[str, ...] = ("generateContent", "streamGenerateContent")

    def as_stream(self, body: dict[str, Any], *, include_usage: bool = True) -> bytes:
        """include_usage is ignored: Gemini streams always carry usageMetadata."""
        return write_events(((None, event) for event in _events(body)), eol=b"\r\n")

    def as_whole(self, raw: bytes) -> dict[str, Any] | None:
        """Parts concatenated per candidate and merged; for every other field the last value wins
        (usageMetadata is cumulative). None unless every candidate got a finishReason (or the
        prompt was blocked), or when an event is an error."""
        events = read_events(raw)
        out: dict[str, Any] = {}
        candidates: dict[int, dict[str, Any]] = {}
        for _, data in events or ():
            if not isinstance(data, dict) or "error" in data:
                return None
            for key, value in copy.deepcopy(data).items():
                if key != "candidates":
                    out[key] = value
                    continue
                out.setdefault("candidates", None)  # keeps the key's place
                for candidate in value or ():
                    acc = candidates.setdefault(candidate.get("index", 0), {})
                    for field, item in candidate.items():
                        if field != "content" or not isinstance(item, dict):
                            acc[field] = item
                            continue
                        content = acc.setdefault("content", {"parts": []})
                        content["parts"] += item.get("parts") or []
                        content |= {k: v for k, v in item.items() if k != "parts"}
        blocked = dig(out, "promptFeedback", "blockReason") is not None
        if not (blocked or candidates) or not all("finishReason" in c for c in candidates.values()):
            return None
        for candidate in candidates.values():
            if "content" in candidate:
                candidate["content"]["parts"] = _merge_parts(candidate["content"]["parts"])
        if candidates:
            out["candidates"] = [candidates[i] for i in sorted(candidates)]
        else:
            out.pop("candidates", None)
        return out


gemini_replay = GeminiReplay()
