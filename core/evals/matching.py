"""When a replayed request is the recorded one: the same model, messages, tools and other fields that
bear on the answer, streamed or not; delivery options and per-call tags (user, metadata) ignored."""

from __future__ import annotations

import hashlib
import json
import re
from typing import Any

from providers.canonical import canonical

# Fields that change from run to run of the same test without changing what is asked.
VOLATILE = ("user", "metadata", "store", "service_tier", "prompt_cache_key", "safety_identifier")
PATH_MODEL = re.compile(r"/models/([^/:]+)")


def request_key(path: str, body: Any) -> str:
    """A digest of what the request asks: its model (from the body, else the URL, as Gemini names it),
    whether it streams, and its canonical body without the volatile fields."""
    body = body if isinstance(body, dict) else {}
    model = body.get("model") or ((m := PATH_MODEL.search(path)) and m.group(1)) or None
    stream = bool(body.get("stream")) or "streamGenerateContent" in path
    _, rest = canonical("", body)
    rest = {k: v for k, v in rest.items() if k not in VOLATILE} if isinstance(rest, dict) else rest
    text = json.dumps([model, stream, rest], sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()
