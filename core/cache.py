"""Caching: identical LLM calls answered from the response cache without going upstream, for both
doors: passthrough (native bytes replayed; a stream from a whole answer and the reverse rendered in
the provider's own dialect) and the router (`lookup`/`keep`). Identical calls in flight wait for the
first. With Redis (core/shared/cache.py) entries are shared by every gateway process and so is the
wait: this process's cache answers first, then Redis. The Cache addon (addons/cache.py) is
passthrough's door to it."""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cachetools import LRUCache

from core import database
from core.cachekey import CacheControls
from core.cachestore import Entry, ResponseCache
from core.call import Call, iso, ms
from core.schema import read_cache_entries
from core.tagging import new_span_id
from providers import Replay, replay_for
from providers.base import Route, Usage, parse_json
from providers.safe_json import loads
from providers.stream import StreamParser

if TYPE_CHECKING:
    from core.config import Configured
    from core.store import Rows

log = logging.getLogger(__name__)

HEADER = "x-tapgate-cache"
# Endpoints whose answers depend only on the request. Streams need a replay for the provider's dialect.
CACHEABLE = {"chat.completions", "messages", "generateContent", "streamGenerateContent", "embeddings"}


class Caching:
    def __init__(self, settings: Configured, store: Rows) -> None:
        self.settings = settings
        self.store = store
        self.cache = ResponseCache(settings.config.cache.max_bytes)
        # Entries served in the other mode (or without the usage the gateway asked for) are rendered
        # once per entry and variant: rendering costs more than the rest of a hit.
        self.renders: LRUCache[tuple, tuple[bytes, str] | None] = LRUCache(maxsize=256)
        # The usage each entry's original call reported, read from the entry once.
        self.usages: LRUCache[tuple, Usage] = LRUCache(maxsize=1024)
        self._shape: tuple[int, bool] | None = None
        self.shared: Any = None  # core/shared/cache.py's SharedCache when tapgate_redis is set
        self.locks: dict[str, str] = {}  # cache key -> the Redis lock this process's leading call holds

    def reshape(self) -> None:
        """Follow the config: a new bound or a change of persistence starts an empty cache."""
        config = self.settings.config.cache
        if (shape := (config.max_bytes, config.persist)) != self._shape:  # a new bound or store: start afresh
            self._shape = shape
            self.cache = ResponseCache(config.max_bytes, self._persist if config.persist else None)

    def restore(self, db: str | Path) -> None:
        """The persisted entries still fresh, from the store at `db` (when the config persists them)."""
        if self.settings.config.cache.persist:
            try:
                entries = read_cache_entries(db, time.time())
            except database.StoreError as e:  # PostgreSQL away at start: the cache starts empty
                log.warning("tapgate: persisted cache entries not loaded: %s", e)
                return
            count = self.cache.load(entries)
            log.info("tapgate: %d cache entries loaded from the store", count)

    def _persist(self, row: dict[str, Any]) -> None:
        self.store.add("cache_entries", row)

    # -- both doors ----------------------------------------------------------------------

    async def lookup(self, call: Call, found: CacheControls) -> Entry | None:
        """The entry for the call's key (waiting for an identical call in flight), or None; a None
        leaves the call either leading (it will store its answer) or bypassing the cache."""
        started = time.time()
        call.cache.ttl = found.ttl
        entry = None
        if found.mode == "use":
            entry = self.cache.get(call.cache.key)
            if entry is None and call.cache.key in self.cache.inflight:
                entry = await self.cache.wait(call.cache.key, self.settings.config.cache.wait_for_identical)
        shared = False
        if entry is None and found.mode != "bypass":
            call.cache.leader = self.cache.lead(call.cache.key)
            if call.cache.leader and self.shared is not None and found.mode == "use":
                entry = await self._fetch_shared(call.cache.key)
                shared = entry is not None
                if shared:
                    call.cache.leader = False
        call.cache.hit = entry is not None
        call.spans.append({
            "span_id": new_span_id(), "trace_id": call.trace_id, "parent_span_id": call.span_id,
            "request_id": call.id, "name": "cache lookup", "started_at": iso(started),
            "duration_ms": ms(started, time.time()), "status": "ok",
            "attributes": json.dumps({"hit": call.cache.hit, "mode": found.mode, "key": call.cache.key[:16],
                                      "shared": shared}),
        })
        return entry

    async def _fetch_shared(self, key: str) -> Entry | None:
        """The entry in Redis (this process's identical calls wait on this one meanwhile), or None with
        this call leading: holding the cross-process lock when Redis gave it, else on its own."""
        entry, token = await self.shared.fetch(key, self.settings.config.cache.wait_for_identical)
        if entry is not None:
            self.cache.put(key, entry, persist=False)  # kept here too: the next identical call asks no one
            self.cache.release(key)
        elif token is not None:
            self.locks[key] = token
        return entry

    def keep(self, call: Call, entry: Entry) -> None:
        self.cache.put(call.cache.key, entry)
        if self.shared is not None:
            self.shared.put(call.cache.key, entry, self.locks.pop(call.cache.key, None))

    def release(self, call: Call) -> None:
        """A leading call ended: identical calls waiting here go on, and in other processes too when it
        stored nothing (they find the lock gone, and one of them calls upstream)."""
        key = call.cache.key
        self.cache.release(key)
        if (token := self.locks.pop(key, None)) is not None and self.shared is not None:
            self.shared.release(key, token)

    # -- pieces -------------------------------------------------------------------------------------

    def answer(self, call: Call, entry: Entry) -> tuple[bytes, str] | None:
        """(body, content type) of a hit as the call asked for it, the call marked answered from the
        cache; None (and not a hit) when the entry cannot be rendered in the mode it asked for."""
        wants_stream = call.facts.stream or call.route.path_stream
        variant = (call.cache.key, entry.expires, wants_stream, call.facts.wants_usage)
        if (rendered := self.renders.get(variant, False)) is False:
            rendered = render(entry, wants_stream, replay_for(call.route.provider, call.route.endpoint),
                              call.facts.wants_usage)
            if rendered is not None and rendered[0] is not entry.body:
                self.renders[variant] = rendered
        if rendered is None:
            return None
        body, content_type = rendered
        if (usage := self.usages.get(variant[:2])) is None:
            usage = self.usages[variant[:2]] = original_usage(entry, call.route)
        call.cache.usage = usage
        call.upstream_started = None
        call.mark_first_chunk()
        if wants_stream:  # Capture reads a stream hit as it reads any stream
            call.parser = StreamParser(call.route, content_type)
            call.parser.feed(body)
            call.parser.close()
        return body, content_type


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
