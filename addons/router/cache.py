"""The response cache as the router uses it: every entry is an OpenAI answer (chat completion or
embeddings), keyed on the OpenAI body the router works in (core/stages/cache.py), and served in the
client's own shape."""

from __future__ import annotations

import json
import time
from typing import Any

from core.cache import Caching
from core.cachestore import Entry
from core.call import Call
from core.config import Configured
from providers import INNER_CHAT
from providers.safe_json import loads


def keep_answer(caching: Caching, settings: Configured, call: Call, answer: dict[str, Any]) -> None:
    """A leading call's OpenAI answer becomes its entry, naming the deployment that answered."""
    body = json.dumps(answer, separators=(",", ":")).encode()
    if len(body) <= settings.config.cache.max_entry_bytes:
        caching.keep(call, Entry(False, "application/json", body, time.time() + call.cache.ttl,
                                 {"routed_to": call.routing.deployment}))


def render_cached(front, entry: Entry, stream: bool, wants_usage: bool, as_is: str | None,
                  model: str | None) -> tuple[dict[str, Any], bytes, str]:
    """(the OpenAI answer, the bytes for the client, their content type) for a hit."""
    answer = loads(entry.body)
    if as_is:
        return answer, entry.body, "application/json"
    if stream:
        out = front.stream(model, wants_usage)
        return answer, out.feed(INNER_CHAT.chunks(answer, True)) + out.close(), "text/event-stream"
    return answer, front.whole(answer, model), "application/json"
