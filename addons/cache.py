"""Cache: passthrough's door to the response cache (core/cache.py). A hit is answered in `request`,
whole, before anything goes upstream; a miss's answer is kept as it passes (a stream chunk by chunk)."""

from __future__ import annotations

import time

from mitmproxy import ctx, http

from addons.capture import refuse
from core.cache import CACHEABLE, HEADER, Caching
from core.cachekey import BadCacheControl, cache_key, controls
from core.cachestore import Entry
from core.call import Call
from providers import replay_for
from providers.canonical import sampled


class Collector:
    """Wraps the stream tap: keeps the provider's raw bytes (up to a limit) for the cache as they pass,
    and hands them on once the tap has recorded the call answered (its final event passed), before
    the client can have read the end and left."""

    def __init__(self, tap, limit: int, call: Call, on_answered) -> None:
        self.tap, self.limit = tap, limit
        self.call, self.on_answered = call, on_answered
        self.chunks: list[bytes] = []
        self.size = 0

    def __call__(self, chunk: bytes):
        if self.size <= self.limit:
            self.chunks.append(chunk)
            self.size += len(chunk)
        out = self.tap(chunk) if callable(self.tap) else chunk
        if self.on_answered is not None and self.call.recorded:
            on_answered, self.on_answered = self.on_answered, None
            on_answered(self)
        return out


class Cache(Caching):
    def configure(self, updated: set[str]) -> None:
        self.reshape()

    def running(self) -> None:
        self.restore(ctx.options.tapgate_db)

    # -- hooks (passthrough) -------------------------------------------------------------------------

    async def request(self, flow: http.HTTPFlow) -> None:
        call: Call | None = flow.metadata.get("tapgate")
        if call is None or flow.response is not None or not self._cacheable(flow, call):
            return
        key = flow.metadata.get("tapgate_key")
        try:
            found = controls(self.settings.config.cache, call.params, call.headers, key.id if key else None,
                             call.facts.model)
        except BadCacheControl as e:
            refuse(flow, call, 400, str(e), "invalid_tapgate_header", e.param)
            return
        if found is None or (sampled(call.body) and not self.settings.config.cache.store_sampled):
            return
        tenant = key.id if key else call.key_id or "-"
        call.cache_key = cache_key(dialect=call.provider, endpoint=call.route.endpoint, body=call.body,
                                   tenant=tenant, customer=call.customer_identifier, controls=found,
                                   model=call.facts.model or call.route.path_model)
        call.prompt_sent = False  # not while it waits for an identical call (a client leaving then owes nothing)
        entry = await self.lookup(call, found)
        call.prompt_sent = entry is None
        if entry is not None:
            self._serve(flow, call, entry)
        elif call.cache_leader:
            flow.request.headers["accept-encoding"] = "identity"  # the cache keeps decoded bytes

    def responseheaders(self, flow: http.HTTPFlow) -> None:
        call: Call | None = flow.metadata.get("tapgate")
        if call is None or call.cache_key is None or call.cache_hit:
            return
        flow.response.headers[HEADER] = "MISS" if call.cache_leader else "BYPASS"
        if call.cache_leader and flow.response.stream:
            flow.response.stream = Collector(flow.response.stream, self.settings.config.cache.max_entry_bytes, call,
                                             lambda collected: self._keep_answer(flow, call, collected))

    def response(self, flow: http.HTTPFlow) -> None:
        call: Call | None = flow.metadata.get("tapgate")
        if call is None or not call.cache_leader:
            return
        collected = flow.response.stream if isinstance(flow.response.stream, Collector) else None
        if collected is None or collected.on_answered is not None:  # else kept at the stream's final event
            self._keep_answer(flow, call, collected)

    def _keep_answer(self, flow: http.HTTPFlow, call: Call, collected: Collector | None) -> None:
        """An answered call's bytes become an entry; identical calls waiting for it are let go."""
        try:
            if call.status == "ok" and flow.response.status_code == 200:
                resp = flow.response
                body = b"".join(collected.chunks) if collected else resp.get_content(strict=False) or b""
                if len(body) <= self.settings.config.cache.max_entry_bytes:
                    self.keep(call, Entry(collected is not None, resp.headers.get("content-type", ""), body,
                                          time.time() + call.cache_ttl, {"usage_injected": call.injected_usage}))
        finally:
            self.cache.release(call.cache_key)

    def error(self, flow: http.HTTPFlow) -> None:
        call: Call | None = flow.metadata.get("tapgate")
        if call is not None and call.cache_leader:
            self.cache.release(call.cache_key)

    def _cacheable(self, flow: http.HTTPFlow, call: Call) -> bool:
        if call.route.endpoint not in CACHEABLE or not isinstance(call.body, dict):
            return False
        if call.route.path_stream and "alt=sse" not in flow.request.path:
            return False  # Gemini's JSON-array streams are not replayed
        return call.route.endpoint == "embeddings" or replay_for(call.route.provider, call.route.endpoint) is not None

    def _serve(self, flow: http.HTTPFlow, call: Call, entry: Entry) -> None:
        if (answer := self.answer(call, entry)) is not None:
            body, content_type = answer
            flow.response = http.Response.make(200, body, {"content-type": content_type, HEADER: "HIT"})
