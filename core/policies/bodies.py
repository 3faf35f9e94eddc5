"""Where the text is in a JSON body, read without knowing its provider: every string leaf of a request
but those that are not prose (ids, roles, base64 data), and the text-bearing keys of a stream event."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

# Request leaves that are never prose: names of things, ids, and binary data (images, audio, files,
# thinking signatures) that no detector should read and that must not count toward the scan limit.
SKIP_KEYS = frozenset({"model", "role", "type", "id", "tool_call_id", "tool_use_id", "signature", "data",
                       "b64_json", "mime_type", "mimeType", "media_type", "format", "detail", "file_id",
                       "object", "finish_reason", "stop_reason", "encrypted_content", "cache_control"})
# Stream-event keys that carry the answer's text in OpenAI, Anthropic and Gemini events.
STREAM_TEXT_KEYS = frozenset({"content", "text", "arguments", "partial_json", "thinking", "refusal", "delta"})

Leaf = tuple[Any, Any, str, tuple]  # (container, key or index, the string, its path from the root)


def request_leaves(body: Any) -> list[Leaf]:
    """Every prose string in a request body, with where it sits so it can be replaced."""
    return list(_walk(body, SKIP_KEYS, None)) if isinstance(body, dict | list) else []


def answer_leaves(body: Any) -> list[Leaf]:
    """Every prose string in a whole answer (the same rule as requests)."""
    return list(_walk(body, SKIP_KEYS, None)) if isinstance(body, dict | list) else []


def event_leaves(data: Any) -> list[Leaf]:
    """The text-bearing strings of one stream event."""
    return list(_walk(data, SKIP_KEYS, STREAM_TEXT_KEYS)) if isinstance(data, dict | list) else []


def _walk(node: Any, skip: frozenset[str], only: frozenset[str] | None, key: Any = None,
          path: tuple = ()) -> Iterator[Leaf]:
    items = node.items() if isinstance(node, dict) else enumerate(node)
    for k, v in items:
        name = k if isinstance(node, dict) else key  # a list's items go by the list's own key
        if name in skip:
            continue
        if isinstance(v, str):
            if (only is None or name in only) and v and not v.startswith("data:"):
                yield node, k, v, (*path, k)
        elif isinstance(v, dict | list):
            yield from _walk(v, skip, only, name, (*path, k))
