"""Cache: an identical call answered before is answered again from the response cache, nothing sent
upstream; identical calls in flight wait for the first. The key is made here (core/cachekey.py),
entries kept by core/cache.py; the door renders a hit in its client's shape."""

from __future__ import annotations

from core.cache import CACHEABLE, Caching
from core.cachekey import BadCacheControl, cache_key, controls
from core.call import Call
from core.errors import BadRequest
from core.pipeline import Hit
from providers import replay_for
from providers.canonical import sampled


class CacheLookup:
    name = "cache"

    def __init__(self, caching: Caching) -> None:
        self.caching = caching

    async def __call__(self, call: Call, ask) -> Hit | None:
        if (asked := ask.cache) is None:
            return None
        if call.guard is not None and call.guard.keeps_out_of_cache:
            return None  # an answer restored for this caller must never reach another (docs/policies.md)
        config = self.caching.settings.config.cache
        key = call.caller.key
        try:
            found = controls(config, {**call.tags.params, **ask.fields}, ask.headers, key.id if key else None,
                             call.model)
        except BadCacheControl as e:
            raise BadRequest(str(e), param=e.param, code=ask.bad_field_code) from None
        if found is None or (sampled(asked.body) and not config.store_sampled):
            return None
        call.cache.key = cache_key(dialect=asked.dialect, endpoint=asked.endpoint, body=asked.body,
                                   tenant=key.id if key else asked.tenant, customer=call.tags.customer_identifier, controls=found,
                                   model=call.model)
        call.prompt_sent = False  # not while it waits for an identical call (a client leaving then owes nothing)
        if (entry := await self.caching.lookup(call, found)) is None:
            return None
        if (answer := asked.render(call, entry)) is None:  # not in the shape this call asked for
            call.cache.hit = False
            return None
        call.answered_by = "cache"
        return Hit(answer)


def passthrough_cacheable(call: Call, path: str) -> bool:
    """Whether a passthrough call can be answered from the cache: an endpoint whose answer depends
    only on the request, in a dialect the cache can replay (Gemini's JSON-array streams it cannot)."""
    if call.route.endpoint not in CACHEABLE or not isinstance(call.body, dict):
        return False
    if call.route.path_stream and "alt=sse" not in path:
        return False
    return call.route.endpoint == "embeddings" or replay_for(call.route.provider, call.route.endpoint) is not None
