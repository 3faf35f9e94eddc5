"""The dashboard's figures: a Tally fed row by row (the gateway) or from the store (`tapgate top`)
gives the same Snapshot, and every figure is the one the rows imply."""

import time
from datetime import UTC, datetime, timedelta

import pytest
from known_store import build, request

from cli import queries
from cli import snapshot as snapshot_module
from cli.snapshot import LAST_KEEP, Tally, percentiles, snapshot
from core.schema import open_db

NOW = datetime(2025, 6, 1, 12, 0, 0, tzinfo=UTC).timestamp()
# Stores written "now" are read at noon today, so no test straddles a UTC midnight.
NOON = datetime.now(UTC).replace(hour=12, minute=0, second=0, microsecond=0)


def ago(seconds: float) -> str:
    return queries.iso(datetime.fromtimestamp(NOW - seconds, UTC))


def call(n: int, seconds_ago: float, **values):
    return request(id=f"{n:032x}", started_at=ago(seconds_ago), **values)


def test_rates_errors_and_percentiles_of_the_window():
    tally = Tally(window_s=300)
    rows = [
        call(1, 5, duration_ms=100.0),
        call(2, 8, duration_ms=300.0, provider="anthropic", stream=1, ttft_ms=40.0),
        call(3, 30, duration_ms=5.0, provider="anthropic", status="error", status_code=529),
        call(4, 50, duration_ms=200.0, stream=1, ttft_ms=20.0),
        call(5, 200, duration_ms=400.0),
        call(6, 400, duration_ms=9000.0),  # before the window
    ]
    for row in rows:
        tally.add(row)
    s = snapshot(tally, NOW)
    assert (s.rps_10s, s.rps_60s) == (2 / 10, 4 / 60)
    assert (s.calls, s.errors) == (5, 1) and s.error_rate == pytest.approx(0.2)
    assert [(h.provider, h.calls, h.errors) for h in s.providers] == [("openai", 3, 0), ("anthropic", 2, 1)]
    assert s.latency == percentiles([100.0, 300.0, 200.0, 400.0])  # successful calls only
    assert (s.latency.p50, s.latency.p99) == (200.0, 400.0)
    assert (s.ttft.p50, s.ttft.p95) == (20.0, 40.0)
    assert (s.fallbacks, s.retries, s.cache_hit_rate) == (0, 0, None)  # no router, no cache yet


def test_spend_today_by_key_customer_and_model():
    tally = Tally(window_s=60)
    tally.add(call(1, 3600, cost_usd=0.5, customer_identifier="acme", key_id="k1", model="gpt-4o"))
    tally.add(call(2, 7200, cost_usd=0.25, customer_identifier="acme", key_id="k2", model="gpt-4o-mini"))
    tally.add(call(3, 60, cost_usd=1.0, customer_identifier="globex", key_id="k2", model="gpt-4o"))
    tally.add(call(4, 30, cost_usd=None, customer_identifier=None, key_id="k2", model="new-model"))  # unpriced
    tally.add(call(5, 20, cost_usd=None, input_tokens=None, status="error"))  # no usage: not unpriced
    s = snapshot(tally, NOW)
    assert (s.today_cost_usd, s.today_calls, s.today_unpriced) == (1.75, 5, 1)
    assert [(x.name, x.cost_usd, x.calls) for x in s.by_customer] == [("globex", 1.0, 1), ("acme", 0.75, 2),
                                                                     ("(none)", 0.0, 2)]
    assert [(x.name, x.cost_usd) for x in s.by_key] == [("k2", 1.25), ("k1", 0.5), ("fp_aaaaaaaaaaaa", 0.0)]
    assert s.by_model[0].name == "gpt-4o" and s.by_model[0].cost_usd == 1.5
    assert [r["id"][-1] for r in s.last] == ["5", "4", "3", "1", "2"]  # newest first
    assert "request_body" not in s.last[0]  # bodies are never kept


def test_a_new_utc_day_starts_from_zero():
    tally = Tally(window_s=60)
    tally.add(call(1, 60, cost_usd=2.0))
    assert snapshot(tally, NOW).today_cost_usd == 2.0
    tomorrow = NOW + 86400
    assert snapshot(tally, tomorrow).today_cost_usd == 0.0  # nothing yet today
    tally.add(request(id="9" * 32, started_at=queries.iso(datetime.fromtimestamp(tomorrow - 5, UTC)), cost_usd=0.5))
    tally.add(call(2, 120, cost_usd=7.0))  # started yesterday, ended late: yesterday's
    assert snapshot(tally, tomorrow).today_cost_usd == 0.5


def test_cache_hits_fallbacks_and_retries_when_the_rows_carry_them():
    tally = Tally(window_s=60)
    tally.add(call(1, 5, cache_hit=1))
    tally.add(call(2, 5, cache_hit=0))
    tally.add(call(3, 5, cache_hit=1), attempts=["attempt openai gpt-4o", "attempt openai gpt-4o"])
    tally.add(call(4, 5), attempts=["attempt openai gpt-4o", "attempt anthropic claude-sonnet-4-6"])
    s = snapshot(tally, NOW)
    assert s.cache_hit_rate == pytest.approx(2 / 3)
    assert (s.retries, s.fallbacks) == (1, 1)


def test_memory_and_redraw_cost_are_bounded(monkeypatch):
    """Percentiles over the window's most recent successful calls only; seconds that left the window
    are dropped."""
    monkeypatch.setattr(snapshot_module, "LATENCY_KEEP", 10)
    tally = Tally(window_s=60)
    for n in range(30):  # oldest first, as calls end; the ten most recent take 20..29 ms
        tally.add(call(n, 30 - n, duration_ms=float(n)))
    assert snapshot(tally, NOW).latency == percentiles([float(n) for n in range(20, 30)])
    assert snapshot(tally, NOW).calls == 30  # counts are not sampled
    for n in range(500):
        tally.add(call(1000 + n, -n))  # the clock moves on
    assert len(tally.seconds) <= 60 + 61


def test_the_last_calls_are_bounded():
    tally = Tally(window_s=60)
    for n in range(LAST_KEEP + 10):
        tally.add(call(n, 1))
    assert len(snapshot(tally, NOW).last) == LAST_KEEP


def test_seeded_from_the_store_equals_fed_row_by_row(tmp_path):
    now = NOON
    calls = build(tmp_path / "t.db", now)
    fed = Tally(window_s=300)
    for row in calls:
        fed.add(row)
    seeded = Tally(window_s=300)
    seeded.seed(queries.connect(tmp_path / "t.db"), now.timestamp())
    a, b = snapshot(fed, now.timestamp()), snapshot(seeded, now.timestamp())
    assert a == b
    assert (a.calls, a.errors, a.today_calls) == (3, 1, 4)


def test_seed_until_leaves_out_what_the_gateway_will_be_shown(tmp_path):
    now = NOON
    build(tmp_path / "t.db", now)
    tally = Tally(window_s=300)
    tally.seed(queries.connect(tmp_path / "t.db"), now.timestamp(), until=queries.iso(now - timedelta(minutes=3)))
    s = snapshot(tally, now.timestamp())
    assert s.calls == 1 and s.today_calls == 2  # c only in the window; b and c today
    assert [r["id"][0] for r in s.last] == ["c", "b", "a"]


def test_follow_takes_in_only_new_rows(tmp_path):
    path = tmp_path / "t.db"
    now = NOON
    build(path, now)
    conn = queries.connect(path)
    tally = Tally(window_s=300)
    tally.seed(conn, now.timestamp())
    assert tally.follow(conn) == 0
    db = open_db(path)
    with db.conn:
        db["requests"].insert(request(id="f" * 32, started_at=queries.iso(now), cost_usd=0.5))
        db["spans"].insert_all([{"span_id": f"a{i}", "trace_id": "t", "request_id": "f" * 32,
                                 "name": f"attempt {target}", "started_at": queries.iso(now)}
                                for i, target in enumerate(["openai gpt-4o", "anthropic claude"])])
    assert tally.follow(conn) == 1
    assert tally.follow(conn) == 0
    s = snapshot(tally, now.timestamp())
    assert s.today_calls == 5 and s.today_cost_usd == pytest.approx(0.53)
    assert s.fallbacks == 1 and s.last[0]["id"] == "f" * 32


def test_budgets_appear_once_the_store_has_them(tmp_path):
    path = tmp_path / "t.db"
    build(path)
    tally = Tally(window_s=60)
    conn = queries.connect(path)
    tally.seed(conn, time.time())
    assert snapshot(tally, time.time()).budgets is None
    db = open_db(path)
    db["budgets"].insert_all([{"id": "1", "name": "team search", "spent": 80.0, "cap": 100.0, "unit": "usd"},
                              {"id": "2", "name": "acme", "spent": 120.0, "cap": 100.0, "unit": "usd"},
                              {"id": "3", "name": "soft only", "spent": 5.0, "cap": None, "unit": "usd"}])
    tally.follow(conn)
    assert snapshot(tally, time.time()).budgets == [("acme", 120.0, 100.0, "usd"), ("team search", 80.0, 100.0, "usd")]
