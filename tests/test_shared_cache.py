"""The shared response cache against a real Redis: entries with their TTL, the tenant in the key, the
cross-process single-flight (one leader, its waiters answered, a dead leader's lock expiring, a waiter
taking over), and Redis away or slow being a miss, never an error."""

from __future__ import annotations

import asyncio
import socket
import time

import pytest
import redis.asyncio as aredis
from services import clear_prefix, redis_server, unique_prefix

from core.cachekey import CacheControls, cache_key
from core.cachestore import Entry
from core.shared.cache import SharedCache, decode, encode

BODY = {"model": "gpt-4.1-mini", "messages": [{"role": "user", "content": "the same question"}]}
CONTROLS = CacheControls(ttl=60, by_customer=False, by_model=True)


@pytest.fixture
def shared():
    url, prefix = redis_server(), unique_prefix()
    yield url, prefix
    clear_prefix(url, prefix)


def process(url: str, prefix: str, **kw) -> SharedCache:
    """One gateway process's view of the shared cache (its own client, its own listener)."""
    cache = SharedCache(aredis.from_url(url), prefix, **kw)
    cache.start()
    return cache


def entry(text: str = "answer", ttl: float = 60.0, stream: bool = False) -> Entry:
    return Entry(stream, "text/event-stream" if stream else "application/json", text.encode(), time.time() + ttl,
                 {"routed_to": "openai/gpt-4.1-mini"})


def key_for(tenant: str) -> str:
    return cache_key(dialect="openai", endpoint="chat.completions", body=BODY, tenant=tenant, customer=None,
                     controls=CONTROLS, model="gpt-4.1-mini")


async def stored(cache: SharedCache) -> None:
    """Until the writes queued by put() have reached Redis."""
    while cache._writes:
        await asyncio.wait(list(cache._writes))


def test_entries_round_trip_with_their_meta():
    e = entry("data: {}\n\n", stream=True)
    assert decode(encode(e)) == e
    assert decode(b"not an entry") is None


@pytest.mark.anyio
async def test_set_then_get_across_processes_expires_in_redis(shared):
    url, prefix = shared
    a, b = process(url, prefix), process(url, prefix)
    key = key_for("key-1")
    found, token = await a.fetch(key, 5)
    assert found is None and token is not None  # the first to miss leads
    a.put(key, entry(ttl=30), token)
    await stored(a)
    hit, none = await b.fetch(key, 5)
    assert none is None and hit is not None
    assert hit.body == b"answer" and hit.meta == {"routed_to": "openai/gpt-4.1-mini"}
    ttl_ms = await b.client.pttl(b.entry_key(key))
    assert 0 < ttl_ms <= 30_000  # Redis expires it: no process has to
    assert not await b.client.exists(b.lock_key(key))  # the store released the leader's lock
    assert (a.counts["miss"], a.counts["stored"], b.counts["hit"]) == (1, 1, 1)
    await a.stop()
    await b.stop()


@pytest.mark.anyio
async def test_an_expired_answer_is_not_stored(shared):
    a = process(*shared)
    key = key_for("key-1")
    _, token = await a.fetch(key, 5)
    a.put(key, entry(ttl=-1), token)
    await stored(a)
    assert not await a.client.exists(a.entry_key(key))
    assert not await a.client.exists(a.lock_key(key))  # released all the same: waiters go on
    await a.stop()


@pytest.mark.anyio
async def test_another_tenant_asking_the_same_misses(shared):
    a, b = process(*shared), process(*shared)
    mine, theirs = key_for("key-1"), key_for("key-2")
    assert mine != theirs
    _, token = await a.fetch(mine, 5)
    a.put(mine, entry(), token)
    await stored(a)
    found, token = await b.fetch(theirs, 5)
    assert found is None and token is not None  # a miss: key-2 leads its own call
    assert (await b.fetch(mine, 5))[0] is not None
    await a.stop()
    await b.stop()


@pytest.mark.anyio
async def test_one_leader_and_its_waiters_in_other_processes_get_its_answer(shared):
    leader, *others = [process(*shared) for _ in range(4)]
    key = key_for("key-1")
    _, token = await leader.fetch(key, 5)
    assert token is not None
    waiting = [asyncio.create_task(others[i % 3].fetch(key, 30)) for i in range(12)]
    await until_waiting(others, 12)
    assert not any(task.done() for task in waiting)
    leader.put(key, entry("the one answer"), token)
    results = await asyncio.gather(*waiting)
    assert all(found is not None and found.body == b"the one answer" and token is None for found, token in results)
    assert sum(o.counts["wait"] for o in others) == 12
    assert sum(o.counts["took_over"] + o.counts["miss"] for o in others) == 0  # none went upstream
    for cache in (leader, *others):
        await cache.stop()


async def until_waiting(caches: list[SharedCache], n: int) -> None:
    """Until n fetches are waiting on another process's lock (their count, polled on the loop)."""
    deadline = time.monotonic() + 10
    while sum(c.counts["wait"] for c in caches) < n:
        assert time.monotonic() < deadline, f"{n} fetches never waited"
        await asyncio.sleep(0.01)


@pytest.mark.anyio
async def test_a_dead_leaders_lock_expires_and_one_waiter_calls_upstream(shared):
    url, prefix = shared
    dead = process(url, prefix, lock_seconds=0.5)
    key = key_for("key-1")
    _, token = await dead.fetch(key, 5)
    await dead.stop()  # its process is gone: it will neither store nor release
    waiters = [process(url, prefix, poll=0.05) for _ in range(2)]
    waiting = [asyncio.create_task(w.fetch(key, 30)) for w in waiters for _ in range(3)]
    done, pending = await asyncio.wait(waiting, return_when=asyncio.FIRST_COMPLETED)
    (found, taken), = [t.result() for t in done]
    assert found is None and taken is not None and taken != token  # the lock expired; one waiter leads
    taker = next(w for w in waiters if w.counts["took_over"])
    taker.put(key, entry("from the new leader"), taken)
    rest = await asyncio.gather(*pending)
    assert [f.body for f, t in rest] == [b"from the new leader"] * 5 and not any(t for _, t in rest)
    assert sum(w.counts["took_over"] for w in waiters) == 1
    for w in waiters:
        await w.stop()


@pytest.mark.anyio
async def test_a_leader_that_stored_nothing_hands_over_to_one_waiter(shared):
    leader, a, b = (process(*shared) for _ in range(3))
    key = key_for("key-1")
    _, token = await leader.fetch(key, 5)
    waiting = [asyncio.create_task(p.fetch(key, 30)) for p in (a, b) for _ in range(2)]
    await until_waiting([a, b], 4)
    leader.release(key, token)  # its upstream call failed
    await stored(leader)
    done, pending = await asyncio.wait(waiting, return_when=asyncio.FIRST_COMPLETED)
    (found, second), = [t.result() for t in done]
    assert found is None and second is not None  # one waiter leads now; the others still wait for it
    owner = a if a.counts["took_over"] else b
    owner.put(key, entry("second try"), second)
    rest = await asyncio.gather(*pending)
    assert [f.body for f, _ in rest] == [b"second try"] * 3
    for p in (leader, a, b):
        await p.stop()


@pytest.mark.anyio
async def test_waiters_give_up_after_their_bound_and_call_upstream(shared):
    holder, waiter = process(*shared), process(*shared, poll=0.05)
    key = key_for("key-1")
    _, token = await holder.fetch(key, 5)
    assert await waiter.fetch(key, 0.2) == (None, None)  # no lock, no entry: it calls upstream itself
    assert waiter.counts["gave_up"] == 1
    holder.release(key, token)
    await stored(holder)
    for p in (holder, waiter):
        await p.stop()


@pytest.mark.anyio
async def test_an_entry_past_the_size_limit_is_not_shared_and_is_counted(shared):
    a = process(*shared, max_entry_bytes=1024)
    key = key_for("key-1")
    _, token = await a.fetch(key, 5)
    a.put(key, entry("x" * 2048), token)
    await stored(a)
    assert a.counts["too_large"] == 1
    assert not await a.client.exists(a.entry_key(key))
    assert not await a.client.exists(a.lock_key(key))  # released, so waiters elsewhere go on
    await a.stop()


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.anyio
async def test_redis_unreachable_is_a_miss_never_an_error():
    cache = SharedCache(aredis.from_url(f"redis://127.0.0.1:{closed_port()}/0"), "t:", timeout=0.5)
    cache.start()
    assert await cache.fetch("k", 5) == (None, None)
    assert cache.counts["error"] == 1 and not cache.healthy
    assert await cache.fetch("k", 5) == (None, None)  # skipped at once: no round trip while it is away
    assert cache.counts["skipped"] == 1
    cache.put("k", entry(), None)  # a leader's store: dropped quietly, never raised
    await stored(cache)
    await cache.stop()


@pytest.mark.anyio
async def test_redis_too_slow_is_a_miss():
    # A server that accepts and never answers: the round trip's bound, not the call, gives way.
    held = []  # its connections, kept open (and never written to)
    server = await asyncio.start_server(lambda r, w: held.append(w), "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    cache = SharedCache(aredis.from_url(f"redis://127.0.0.1:{port}/0"), "t:", timeout=0.1)
    assert await cache.fetch("k", 5) == (None, None)
    assert cache.counts["error"] == 1
    assert await cache.fetch("k", 5) == (None, None)  # one slow answer does not mark Redis away
    assert (cache.counts["error"], cache.counts["skipped"]) == (2, 0)
    server.close()
    await cache.stop()


@pytest.mark.anyio
async def test_a_lock_taken_by_a_lookup_that_timed_out_is_given_back(shared):
    a = process(*shared, timeout=0.2)
    real = a._acquire

    async def answered_too_late(**kw):
        result = await real(**kw)  # Redis took the lock...
        await asyncio.sleep(5)  # ...and its answer comes after the bound
        return result

    a._acquire = answered_too_late
    key = key_for("key-1")
    assert await a.fetch(key, 5) == (None, None)  # a miss: this call goes upstream on its own
    await stored(a)
    assert not await a.client.exists(a.lock_key(key))  # no other process waits on an orphan lock
    await a.stop()


def test_metrics_show_the_shared_caches_outcomes_and_backlog():
    from core.metrics import Metrics, shared_cache_gauges

    class Caching:
        shared = None

    caching, metrics = Caching(), Metrics()
    metrics.gauges.append(shared_cache_gauges(caching))
    assert b"tapgate_cache_redis" not in metrics.exposition()  # not shared: nothing to show
    caching.shared = SharedCache(aredis.Redis(), "t:")
    caching.shared.counts.update({"hit": 3, "error": 2})
    text = metrics.exposition().decode()
    assert 'tapgate_cache_redis_total{outcome="hit"} 3.0' in text
    assert 'tapgate_cache_redis_total{outcome="error"} 2.0' in text
    assert "tapgate_cache_redis_pending 0.0" in text


@pytest.mark.anyio
async def test_a_lookup_cancelled_mid_round_trip_gives_its_lock_back(shared):
    a = process(*shared)
    real, took = a._acquire, asyncio.Event()

    async def then_the_client_leaves(**kw):
        result = await real(**kw)
        took.set()
        await asyncio.sleep(5)
        return result

    a._acquire = then_the_client_leaves
    key = key_for("key-1")
    task = asyncio.create_task(a.fetch(key, 5))
    await took.wait()
    assert await a.client.exists(a.lock_key(key))
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    await stored(a)
    assert not await a.client.exists(a.lock_key(key))
    await a.stop()


@pytest.mark.anyio
async def test_a_running_leader_keeps_its_lock_past_the_lock_period(shared):
    url, prefix = shared
    holder = process(url, prefix, lock_seconds=0.6)  # renewed every 0.2 s while its call runs
    waiter = process(url, prefix, poll=0.05)
    key = key_for("key-1")
    _, token = await holder.fetch(key, 5)
    assert await waiter.fetch(key, 1.8) == (None, None)  # three lock periods: never expired, never taken
    assert (waiter.counts["gave_up"], waiter.counts["took_over"]) == (1, 0)
    assert await holder.client.get(holder.lock_key(key)) == token.encode()
    holder.release(key, token)
    await stored(holder)
    assert holder.held == {}
    for p in (holder, waiter):
        await p.stop()
