"""Cache entries: per-entry TTL, a bound in bytes with LRU beyond it, identical calls waiting."""

from __future__ import annotations

import asyncio
import time

from core.cachestore import ENTRY_OVERHEAD, Entry, ResponseCache


def entry(size: int = 100, ttl: float = 60) -> Entry:
    return Entry(False, "application/json", b"x" * size, time.time() + ttl)


def test_each_entry_expires_on_its_own():
    cache = ResponseCache(10_000)
    cache.put("short", entry(ttl=-1))
    cache.put("long", entry(ttl=60))
    assert cache.get("short") is None and cache.get("long") is not None


def test_bounded_in_bytes_least_recently_used_out_first():
    cache = ResponseCache(3 * (100 + ENTRY_OVERHEAD))
    for name in ("a", "b", "c"):
        cache.put(name, entry())
    cache.get("a")  # a is now more recent than b
    cache.put("d", entry())
    assert [n for n in "abcd" if cache.get(n) is not None] == ["a", "c", "d"]
    cache.put("huge", entry(size=10_000))  # larger than the whole bound: never stored
    assert cache.get("huge") is None and cache.get("d") is not None


def test_persisted_rows_and_reload_skip_the_expired():
    rows = []
    cache = ResponseCache(10_000, persist=rows.append)
    cache.put("k", Entry(True, "text/event-stream", b"data: x\n\n", time.time() + 60, {"usage_injected": True}))
    assert rows[0]["key"] == "k" and rows[0]["stream"] == 1
    again = ResponseCache(10_000)
    assert again.load(rows + [{**rows[0], "key": "old", "expires_at": time.time() - 1}]) == 1
    assert again.get("k").meta == {"usage_injected": True} and again.get("old") is None


def test_identical_calls_wait_for_the_one_in_flight():
    async def scenario():
        cache = ResponseCache(10_000)
        assert cache.lead("k") and not cache.lead("k")
        waiter = asyncio.create_task(cache.wait("k", timeout=5))
        await asyncio.sleep(0)
        cache.put("k", entry())
        cache.release("k")
        got = await waiter
        assert got is not None and "k" not in cache.inflight
        assert cache.lead("k2")
        assert await cache.wait("k2", timeout=0.01) is None  # the leader never answered in time
    asyncio.run(scenario())
