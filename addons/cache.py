"""Cache: identical LLM calls answered from the response cache without going upstream, in passthrough
(native bytes replayed; a stream from a whole answer and the reverse rendered in the provider's own
dialect) and, through `lookup`/`keep`, in router mode. Identical calls in flight wait for the first."""

from __future__ import annotations

import json
import logging
import time
from typing import Any

from cachetools import LRUCache
from mitmproxy import ctx, http

from core.cachekey import BadCacheControl, CacheControls, cache_key, controls
from core.cachestore import Entry, ResponseCache
from core.call import Call, iso, ms
from addons.capture import refuse
from core.schema import read_cache_entries
from addons.settings import Settings
from addons.store import Store
from core.tagging import new_span_id
from providers import Replay, replay_for
from providers.base import Route, Usage, parse_json
from providers.canonical import sampled
from providers.safe_json import loads
from providers.stream import StreamParser

log = logging.getLogger(__name__)

HEADER = "x-tapgate-cache"
# Endpoints whose answers depend only on the request. Streams need a replay for the provider's dialect.
CACHEABLE = {"chat.completions", "messages", "generateContent", "streamGenerateContent", "embeddings"}


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


class Cache:
    def __init__(self, settings: Settings, store: Store) -> None:
        self.settings = settings
        self.store = store
        self.cache = ResponseCache(settings.config.cache.max_bytes)
        # Entries served in the other mode (or without the usage the gateway asked for) are rendered
        # once per entry and variant: rendering costs more than the rest of a hit.
        self.renders: LRUCache[tuple, tuple[bytes, str] | None] = LRUCache(maxsize=256)
        # The usage each entry's original call reported, read from the entry once.
        self.usages: LRUCache[tuple, Usage] = LRUCache(maxsize=1024)
        self._shape: tuple[int, bool] | None = None

    def configure(self, updated: set[str]) -> None:
        config = self.settings.config.cache
        if (shape := (config.max_bytes, config.persist)) != self._shape:  # a new bound or store: start afresh
            self._shape = shape
            self.cache = ResponseCache(config.max_bytes, self._persist if config.persist else None)

    def running(self) -> None:
        if self.settings.config.cache.persist:
            count = self.cache.load(read_cache_entries(ctx.options.tapgate_db, time.time()))
            log.info("tapgate: %d cache entries loaded from the store", count)

    def _persist(self, row: dict[str, Any]) -> None:
        self.store.add("cache_entries", row)

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

    # -- shared with the router ----------------------------------------------------------------------

    async def lookup(self, call: Call, found: CacheControls) -> Entry | None:
        """The entry for the call's key (waiting for an identical call in flight), or None; a None
        leaves the call either leading (it will store its answer) or bypassing the cache."""
        started = time.time()
        call.cache_ttl = found.ttl
        entry = None
        if found.mode == "use":
            entry = self.cache.get(call.cache_key)
            if entry is None and call.cache_key in self.cache.inflight:
                entry = await self.cache.wait(call.cache_key, self.settings.config.cache.wait_for_identical)
        if entry is None and found.mode != "bypass":
            call.cache_leader = self.cache.lead(call.cache_key)
        call.cache_hit = entry is not None
        call.attempt_spans.append({
            "span_id": new_span_id(), "trace_id": call.trace_id, "parent_span_id": call.span_id,
            "request_id": call.id, "name": "cache lookup", "started_at": iso(started),
            "duration_ms": ms(started, time.time()), "status": "ok",
            "attributes": json.dumps({"hit": call.cache_hit, "mode": found.mode, "key": call.cache_key[:16]}),
        })
        return entry

    def keep(self, call: Call, entry: Entry) -> None:
        self.cache.put(call.cache_key, entry)

    # -- pieces -------------------------------------------------------------------------------------

    def _cacheable(self, flow: http.HTTPFlow, call: Call) -> bool:
        if call.route.endpoint not in CACHEABLE or not isinstance(call.body, dict):
            return False
        if call.route.path_stream and "alt=sse" not in flow.request.path:
            return False  # Gemini's JSON-array streams are not replayed
        return call.route.endpoint == "embeddings" or replay_for(call.route.provider, call.route.endpoint) is not None

    def _serve(self, flow: http.HTTPFlow, call: Call, entry: Entry) -> None:
        wants_stream = call.facts.stream or call.route.path_stream
        variant = (call.cache_key, entry.expires, wants_stream, call.facts.wants_usage)
        if (rendered := self.renders.get(variant, False)) is False:
            rendered = render(entry, wants_stream, replay_for(call.route.provider, call.route.endpoint),
                              call.facts.wants_usage)
            if rendered is not None and rendered[0] is not entry.body:
                self.renders[variant] = rendered
        if rendered is None:
            call.cache_hit = False
            return
        body, content_type = rendered
        if (usage := self.usages.get(variant[:2])) is None:
            usage = self.usages[variant[:2]] = original_usage(entry, call.route)
        call.cached_usage = usage
        flow.response = http.Response.make(200, body, {"content-type": content_type, HEADER: "HIT"})
        call.upstream_started = None
        call.mark_first_chunk()
        if wants_stream:  # Capture reads a stream hit as it reads any stream
            call.parser = StreamParser(call.route, content_type)
            call.parser.feed(body)
            call.parser.close()


def original_usage(entry: Entry, route: Route) -> Usage:
    """The usage the provider reported to the call that stored the entry (the gateway asks streams
    for it), so a hit in any shape records and saves exactly what that call cost."""
    if entry.stream:
        parser = StreamParser(route, entry.content_type)
        parser.feed(entry.body)
        parser.close()
        return parser.state.usage
    body = parse_json(entry.body)
    return route.provider.response_facts(route, body).usage if body is not None else Usage()


def render(entry: Entry, wants_stream: bool, replay: Replay | None, wants_usage: bool) -> tuple[bytes, str] | None:
    """The entry as the caller asked for it: the stored bytes when the mode matches, else the other
    mode rendered in the same dialect. None when it cannot be (no replay for the dialect)."""
    if entry.stream == wants_stream:
        if wants_stream and not wants_usage and entry.meta.get("usage_injected") and replay is not None:
            whole = replay.as_whole(entry.body)  # the gateway asked for usage the caller did not
            return (replay.as_stream(whole, include_usage=False), entry.content_type) if whole else None
        return entry.body, entry.content_type
    if replay is None:
        return None
    if wants_stream:
        return replay.as_stream(loads(entry.body), include_usage=wants_usage), "text/event-stream"
    whole = replay.as_whole(entry.body)
    return (json.dumps(whole).encode(), "application/json") if whole is not None else None
