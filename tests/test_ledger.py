"""The ledger and rate-limit windows: caps hold under any interleaving, periods are calendar ones."""

import random
from datetime import datetime
from zoneinfo import ZoneInfo

import pytest

from core.config import Budget
from core.ledger import Amount, Ledger, OverCap, Reservation, period_bounds
from core.ratelimit import Window

KEY = ("key", "key_1")


def test_calendar_periods():
    now = datetime(2026, 11, 22, 15, 30, tzinfo=ZoneInfo("UTC"))  # a Sunday
    assert [b.isoformat() for b in period_bounds("day", now)] == ["2026-11-22T00:00:00+00:00", "2026-11-23T00:00:00+00:00"]
    assert period_bounds("week", now)[0].isoformat() == "2026-11-16T00:00:00+00:00"  # Monday
    assert [b.isoformat() for b in period_bounds("month", now)] == ["2026-11-01T00:00:00+00:00", "2026-12-01T00:00:00+00:00"]
    assert period_bounds("month", now.replace(month=12))[1].isoformat() == "2027-01-01T00:00:00+00:00"
    assert period_bounds("year", now)[1].isoformat() == "2027-01-01T00:00:00+00:00"
    assert period_bounds("lifetime", now) == (None, None)
    tokyo = datetime(2026, 11, 22, 1, 0, tzinfo=ZoneInfo("Asia/Tokyo"))
    assert period_bounds("day", tokyo)[0].isoformat() == "2026-11-22T00:00:00+09:00"


def test_reservations_hold_the_cap_whatever_the_order_of_settlements():
    ledger = Ledger()
    budget = Budget(unit="usd", period="day", cap=1.0)
    worst, rng = Amount(usd=0.3, tokens=100, requests=1), random.Random(7)
    held: list[Reservation] = []
    refused = 0
    for _ in range(200):  # calls arrive while earlier ones are still in flight
        result = ledger.reserve([(KEY, budget)], worst)
        if isinstance(result, OverCap):
            refused += 1
        else:
            held.append(result)
        if held and rng.random() < 0.3:
            ledger.settle(held.pop(rng.randrange(len(held))), Amount(usd=rng.uniform(0, 0.3), tokens=50, requests=1))
        spent, reserved, _ = ledger.standing(KEY, budget)
        assert spent + reserved <= 1.0 + 1e-9
    for r in held:
        ledger.settle(r, Amount(usd=0.3, tokens=50, requests=1))
    assert ledger.standing(KEY, budget)[0] <= 1.0 + 1e-9 and refused > 100


def test_refusal_says_spent_cap_and_reset():
    ledger = Ledger()
    budget = Budget(unit="requests", period="month", cap=2)
    for _ in range(2):
        ledger.settle(ledger.reserve([(("customer", "acme"), budget)], Amount(requests=1)), Amount(requests=1))
    refusal = ledger.reserve([(("customer", "acme"), budget)], Amount(requests=1))
    assert isinstance(refusal, OverCap)
    assert "customer acme" in refusal.message() and "2 requests of 2 requests per month" in refusal.message()
    assert "resets at" in refusal.message()


def test_settling_twice_counts_once_and_soft_thresholds_cross_once():
    ledger = Ledger()
    budget = Budget(unit="usd", period="month", cap=10, soft=[5, 8])
    crossings = []
    for _ in range(12):
        r = ledger.reserve([(("global", ""), budget)], Amount(usd=1))
        if isinstance(r, OverCap):
            break
        crossings += ledger.settle(r, Amount(usd=1))
        assert ledger.settle(r, Amount(usd=1)) == []  # a second settlement of the same call is ignored
    assert [c.threshold for c in crossings] == [5, 8, 10]
    assert ledger.standing(("global", ""), budget)[:2] == (10.0, 0.0)


def test_restored_totals_count_against_caps():
    ledger = Ledger()
    budget = Budget(unit="usd", period="day", cap=1)
    start = period_bounds("day", ledger.now())[0].isoformat()
    ledger.load({(KEY, "day", start): Amount(usd=0.95, tokens=10, requests=3)})
    assert isinstance(ledger.reserve([(KEY, budget)], Amount(usd=0.1)), OverCap)
    assert not isinstance(ledger.reserve([(KEY, budget)], Amount(usd=0.05)), OverCap)


@pytest.mark.parametrize("rpm,tpm", [(3, None), (None, 100)])
def test_rate_limit_window(rpm, tpm):
    w = Window()
    now = 1000.0
    for i in range(3):
        assert w.check(rpm, tpm, now + i) is None
        w.add_request(now + i)
        w.add_tokens(40, now + i)
    which, retry = w.check(rpm, tpm, now + 3)
    assert which == ("requests" if rpm else "tokens")
    assert retry == 57  # when the oldest call (1000 s) leaves the window
    assert w.check(rpm, tpm, now + 62) is None  # the window has moved on


def test_restored_spend_is_one_line():
    from core.admission import restored_summary

    assert restored_summary({}) is None
    spent = {}
    for scope in (("global", ""), ("key", "key_1"), ("key", "key_2"), ("customer", "acme")):
        for period, start, amount in (("day", "2025-06-01", Amount(0.25, 100, 1)),
                                      ("month", "2025-06-01", Amount(1.5, 900, 12)),
                                      ("lifetime", "lifetime", Amount(10.0, 9000, 1200))):
            spent[scope, period, start] = amount
    assert restored_summary(spent) == (
        "tapgate: restored spend from the store: today $0.250000 in 1 call, this month $1.500000 in 12 calls, "
        "in all $10.000000 in 1,200 calls; 2 keys and 1 customer with spend")
