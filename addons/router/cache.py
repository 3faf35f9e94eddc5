"""The response cache as the router uses it: every entry is an OpenAI answer (chat completion or
embeddings), keyed on the OpenAI body the router works in, and served in the client's own shape."""

from __future__ import annotations

import json
import time
from typing import Any

from addons.settings import Settings
from core.cache import Caching
from core.cachekey import BadCacheControl, cache_key, controls
from core.cachestore import Entry
from core.call import Call
from core.errors import BadRequest
from providers import INNER_CHAT
from providers.canonical import sampled
from providers.safe_json import loads


class RouterCache:
    def __init__(self, settings: Settings, cache: Caching) -> None:
        self.settings = settings
        self.cache = cache

    async def lookup(self, call: Call, headers: dict[str, str], body: dict, fields: dict, key, model: str,
                     as_is: str | None) -> Entry | None:
        """The cached answer for this call, if caching is on for it and there is one. The tenant is the
        gateway key, or "master" for the master key and an open router. Raises BadRequest."""
        config = self.settings.config.cache
        try:
            found = controls(config, fields, headers, key.id if key else None, model)
        except BadCacheControl as e:
            raise BadRequest(str(e), param=e.param) from None
        if found is None or (sampled(body) and not config.store_sampled):
            return None
        call.cache_key = cache_key(dialect="router", endpoint=as_is or "chat", body=body,
                                   tenant=key.id if key else "master", customer=call.customer_identifier,
                                   controls=found, model=model)
        return await self.cache.lookup(call, found)

    def keep(self, call: Call, answer: dict[str, Any]) -> None:
        body = json.dumps(answer, separators=(",", ":")).encode()
        if len(body) <= self.settings.config.cache.max_entry_bytes:
            self.cache.keep(call, Entry(False, "application/json", body, time.time() + call.cache_ttl,
                                        {"routed_to": call.routed_to}))


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
