"""SSE framing for cached answers replayed in the other mode: a whole stream in, events out, and back."""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

from providers.safe_json import loads
from providers.sse import SSEDecoder

DONE = "[DONE]"


def read_events(raw: bytes) -> list[tuple[str | None, Any]] | None:
    """Every event of a complete SSE stream as (event name, parsed data), comments left out and
    "[DONE]" kept as that string; None when a data field is not JSON (a stream cut mid-event)."""
    decoder = SSEDecoder()
    events: list[tuple[str | None, Any]] = []
    for frame in decoder.feed(raw) + decoder.close():
        if frame.data is None:
            continue
        if frame.data == DONE:
            events.append((frame.event, DONE))
            continue
        try:
            events.append((frame.event, loads(frame.data)))
        except ValueError:
            return None
    return events


def write_events(events: Iterable[tuple[str | None, Any]], eol: bytes = b"\n") -> bytes:
    """SSE bytes for (event name or None, data) pairs; data is JSON-encoded unless already a str."""
    out = []
    for name, data in events:
        text = data if isinstance(data, str) else json.dumps(data, separators=(",", ":"), ensure_ascii=False)
        head = b"event: " + name.encode() + eol if name else b""
        out.append(head + b"data: " + text.encode() + eol + eol)
    return b"".join(out)
