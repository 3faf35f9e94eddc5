"""The shared ledger against a real Redis: reserve-then-settle across clients, expiring holds, rate
windows, thresholds crossed once, and the rebuild marker."""

from __future__ import annotations

import asyncio

import pytest
import redis.asyncio as aredis
from services import clear_prefix, redis_server, unique_prefix

from core.config import Budget, RateLimit
from core.ledger import Amount, OverCap
from core.shared.ledger import Held, NotLoaded, RateLimited, SharedLedger

CAP10 = Budget(unit="requests", period="day", cap=10)
USD = Budget(unit="usd", period="month", cap=1.0, soft=[0.5])
SCOPE = ("customer", "acme")


@pytest.fixture
def shared():
    url, prefix = redis_server(), unique_prefix()
    yield url, prefix
    clear_prefix(url, prefix)


def ledger(url, prefix, seconds=60.0):
    return SharedLedger(aredis.from_url(url), prefix, reservation_seconds=seconds)


async def loaded(url, prefix, seconds=60.0):
    led = ledger(url, prefix, seconds)
    assert await led.load({}) is True
    return led


@pytest.mark.anyio
async def test_admission_before_load_asks_for_a_rebuild(shared):
    led = ledger(*shared)
    with pytest.raises(NotLoaded):
        await led.admit([(SCOPE, CAP10)], [], Amount(0, 0, 1))
    assert await led.load({}) is True
    assert await led.load({}) is False  # a second process finds it loaded
    await led.client.aclose()


@pytest.mark.anyio
async def test_many_clients_at_once_never_pass_the_cap(shared):
    leds = [await loaded(*shared)] + [ledger(*shared) for _ in range(2)]
    results = await asyncio.gather(*(leds[i % 3].admit([(SCOPE, CAP10)], [], Amount(0, 0, 1)) for i in range(60)))
    held = [r for r in results if isinstance(r, Held)]
    assert len(held) == 10
    assert all(isinstance(r, OverCap) for r in results if not isinstance(r, Held))
    counter = held[0].counters[0]
    spent, reserved = await leds[0].standing(counter)
    assert (spent.requests, reserved.requests) == (0, 10)
    await asyncio.gather(*(leds[0].settle(h, Amount(0.001, 5, 1)) for h in held))
    spent, reserved = await leds[0].standing(counter)
    assert (spent.requests, reserved.requests, spent.tokens) == (10, 0, 50)
    for led in leds:
        await led.client.aclose()


@pytest.mark.anyio
async def test_a_dead_processes_hold_expires_and_a_late_settle_counts_once(shared):
    led = await loaded(*shared, seconds=0.2)
    first = await led.admit([(SCOPE, Budget(unit="requests", period="day", cap=1))], [], Amount(0, 0, 1))
    assert isinstance(first, Held)
    assert isinstance(await led.admit([(SCOPE, Budget(unit="requests", period="day", cap=1))], [], Amount(0, 0, 1)),
                      OverCap)
    await asyncio.sleep(0.3)  # the hold's own expiry, in Redis's clock: nothing to await but time itself
    again = await led.admit([(SCOPE, Budget(unit="requests", period="day", cap=2))], [], Amount(0, 0, 1))
    assert isinstance(again, Held)
    _, reserved = await led.standing(first.counters[0])
    assert reserved.requests == 1  # the expired hold was released, the new one booked
    await led.settle(first, Amount(0, 3, 1))  # the first call did finish after all: its spend counts
    spent, reserved = await led.standing(first.counters[0])
    assert (spent.requests, reserved.requests) == (1, 1)  # and the new hold was not released by it
    await led.client.aclose()


@pytest.mark.anyio
async def test_renewed_holds_outlive_their_first_expiry(shared):
    led = await loaded(*shared, seconds=0.3)
    held = await led.admit([(SCOPE, CAP10)], [], Amount(0, 0, 1))
    for _ in range(3):
        await asyncio.sleep(0.15)
        await led.renew([held])
    _, reserved = await led.standing(held.counters[0])
    await led.admit([(SCOPE, CAP10)], [], Amount(0, 0, 1))  # purges expired holds first
    _, reserved = await led.standing(held.counters[0])
    assert reserved.requests == 2
    await led.client.aclose()


@pytest.mark.anyio
async def test_rpm_is_exact_across_clients(shared):
    leds = [await loaded(*shared), ledger(*shared)]
    limit = [(SCOPE, RateLimit(rpm=7))]
    results = await asyncio.gather(*(leds[i % 2].admit([], limit, Amount(0, 0, 1)) for i in range(20)))
    assert sum(isinstance(r, Held) for r in results) == 7
    refused = [r for r in results if isinstance(r, RateLimited)]
    assert len(refused) == 13 and all(r.which == "requests" and 1 <= r.retry_after <= 60 for r in refused)
    for led in leds:
        await led.client.aclose()


@pytest.mark.anyio
async def test_tpm_counts_settled_tokens(shared):
    led = await loaded(*shared)
    limit = [(SCOPE, RateLimit(tpm=100))]
    held = await led.admit([], limit, Amount(0, 0, 1))
    await led.settle(held, Amount(0, 120, 1))
    over = await led.admit([], limit, Amount(0, 0, 1))
    assert isinstance(over, RateLimited) and over.which == "tokens"
    await led.client.aclose()


@pytest.mark.anyio
async def test_a_soft_threshold_is_crossed_by_exactly_one_settlement(shared):
    leds = [await loaded(*shared), ledger(*shared)]
    holds = [await leds[i % 2].admit([(SCOPE, USD)], [], Amount(0.01, 10, 1)) for i in range(8)]
    crossings = await asyncio.gather(*(leds[i % 2].settle(h, Amount(0.1, 10, 1)) for i, h in enumerate(holds)))
    flat = [c for cs in crossings for c in cs]
    assert [c.threshold for c in flat] == [0.5]
    for led in leds:
        await led.client.aclose()


@pytest.mark.anyio
async def test_load_restores_settled_spend_against_the_cap(shared):
    led = ledger(*shared)
    counter = led.counter(SCOPE, "day", led.now())
    assert await led.load({counter: Amount(0.5, 100, 9)})
    assert isinstance(await led.admit([(SCOPE, CAP10)], [], Amount(0, 0, 1)), Held)
    assert isinstance(await led.admit([(SCOPE, CAP10)], [], Amount(0, 0, 1)), OverCap)
    await led.client.aclose()


@pytest.mark.anyio
async def test_the_sweep_releases_expired_holds_with_no_caller(shared):
    led = await loaded(*shared, seconds=0.1)
    held = await led.admit([(SCOPE, CAP10)], [], Amount(0.5, 7, 1))
    assert await led.sweep() == 0
    await asyncio.sleep(0.2)  # the hold's own expiry, in Redis's clock
    assert await led.sweep() == 1
    spent, reserved = await led.standing(held.counters[0])
    assert (reserved.requests, reserved.tokens, spent.requests) == (0, 0, 0)
    assert await led.client.exists(led.held_index) == 0
    await led.client.aclose()


@pytest.mark.anyio
async def test_settlements_queued_together_go_in_one_round_trip_and_count_once_each(shared):
    led = await loaded(*shared)
    holds = [await led.admit([(SCOPE, USD)], [], Amount(0.02, 10, 1)) for _ in range(8)]
    crossed = await led.settle_many([(h, Amount(0.1, 3, 1)) for h in holds])
    assert [c.threshold for cs in crossed for c in cs] == [0.5]  # the fifth settlement crosses $0.50
    assert [bool(cs) for cs in crossed].index(True) == 4
    spent, reserved = await led.standing(holds[0].counters[0])
    assert (spent.requests, spent.tokens, reserved.requests) == (8, 24, 0)
    assert spent.usd == pytest.approx(0.8) and reserved.usd == pytest.approx(0.0)
    await led.client.aclose()
