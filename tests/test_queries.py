"""The store's read side: migration m003 (indexes, views), read-only connections that never block
the writer, time bounds, and the query plans that keep the dashboard cheap on a big store."""

import sqlite3
from datetime import UTC, datetime

import pytest
from known_store import build, request
from sqlite_utils import Database
from sqlite_utils.migrations import Migrations

from cli import queries
from cli.snapshot import percentiles
from core import database
from core import schema as store_module
from core.schema import migrations, open_db


def test_m003_adds_the_indexes_and_views(tmp_path):
    db = open_db(tmp_path / "t.db")
    indexes = {tuple(i.columns) for i in db["requests"].indexes}
    for columns in [("provider", "started_at"), ("model", "started_at"), ("key_id", "started_at"),
                    ("status", "started_at")]:
        assert columns in indexes
    assert ("request_id",) in {tuple(i.columns) for i in db["spans"].indexes}
    assert {"spend_by_day_key", "latency_by_model"} <= set(db.view_names())


def test_a_store_from_before_m003_migrates_forward(tmp_path):
    path = tmp_path / "old.db"
    older = Migrations("tapgate")
    older()(store_module.m001_requests_and_spans)
    older()(store_module.m002_usage_estimated_and_indexes)
    old = Database(path)
    older.apply(old)
    old["requests"].insert(request(id="r" * 32, started_at="2025-06-01T10:00:00.000Z"))
    old.close()
    db = open_db(path)
    assert [m.name for m in migrations.pending(db)] == []
    assert db.execute("SELECT date, requests, cost_usd FROM spend_by_day_key").fetchall() == [("2025-06-01", 1, 0.01)]


def test_spend_by_day_key_sums_the_rows(tmp_path):
    now = datetime.now(UTC)
    calls = build(tmp_path / "t.db", now)
    db = Database(tmp_path / "t.db")
    today = [c for c in calls if c["started_at"].startswith(now.date().isoformat())]
    rows = db.execute("SELECT sum(requests), sum(tokens), sum(cost_usd) FROM spend_by_day_key WHERE date = ?",
                      (now.date().isoformat(),)).fetchone()
    assert rows[0] == len(today)
    assert rows[1] == sum((c["input_tokens"] or 0) + (c["output_tokens"] or 0) for c in today)
    assert rows[2] == pytest.approx(sum(c["cost_usd"] or 0 for c in today))
    acme = db.execute("SELECT requests, cost_usd FROM spend_by_day_key WHERE date = ? AND customer = 'acme'"
                      " AND key_id = 'fp_bbbbbbbbbbbb'", (now.date().isoformat(),)).fetchall()
    assert acme == [(1, 0.02)]


def test_latency_by_model_agrees_with_the_dashboards_percentiles(tmp_path):
    db = open_db(tmp_path / "t.db")
    durations = [float(d) for d in (7, 3, 100, 12, 5, 9, 40, 1, 2, 60, 8, 30, 4, 6, 11, 10, 20, 50, 70, 90, 13)]
    db["requests"].insert_all(
        request(id=f"{i:032x}", started_at=f"2025-06-01T10:00:{i:02d}.000Z", duration_ms=d,
                ttft_ms=d / 2 if i % 2 else None, stream=i % 2)
        for i, d in enumerate(durations))
    db["requests"].insert(request(id="f" * 32, started_at="2025-06-01T11:00:00.000Z", duration_ms=9999.0,
                                  status="error", status_code=500))  # errors are left out
    (row,) = db.execute("SELECT requests, p50_ms, p95_ms, p99_ms, streams, ttft_p50_ms, ttft_p95_ms"
                        " FROM latency_by_model WHERE date = '2025-06-01'").fetchall()
    p = percentiles(durations)
    t = percentiles([d / 2 for i, d in enumerate(durations) if i % 2])
    assert row == (len(durations), p.p50, p.p95, p.p99, 10, t.p50, t.p95)
    assert (p.p50, p.p95, p.p99) == (11.0, 90.0, 100.0)  # nearest rank over 21 values


def test_a_reader_is_read_only_and_never_blocks_the_writer(tmp_path):
    path = tmp_path / "t.db"
    build(path)
    reader = queries.connect(path)
    reader.execute("BEGIN")
    assert reader.execute("SELECT count(*) FROM requests").fetchone()[0] == 5  # a read transaction is open
    with pytest.raises(sqlite3.OperationalError, match="readonly"):
        reader.execute("DELETE FROM requests")
    writer = open_db(path)
    writer.execute("PRAGMA busy_timeout = 0")  # would fail at once if the reader held a lock
    with writer.conn:
        writer["requests"].insert(request(id="f" * 32, started_at="2025-06-01T10:00:00.000Z"))
    assert reader.execute("SELECT count(*) FROM requests").fetchone()[0] == 5  # its snapshot is stable
    reader.execute("COMMIT")
    assert reader.execute("SELECT count(*) FROM requests").fetchone()[0] == 6


@pytest.mark.parametrize("text, expected", [
    ("90s", "2025-06-01T11:58:30.000Z"),
    ("30m", "2025-06-01T11:30:00.000Z"),
    ("1.5h", "2025-06-01T10:30:00.000Z"),
    ("2d", "2025-05-30T12:00:00.000Z"),
    ("1w", "2025-05-25T12:00:00.000Z"),
    ("2025-05-01", "2025-05-01T00:00:00.000Z"),
    ("2025-05-01T08:15", "2025-05-01T08:15:00.000Z"),
    ("2025-05-01T08:15:00+02:00", "2025-05-01T06:15:00.000Z"),
])
def test_time_bounds(text, expected):
    assert queries.parse_when(text, now=datetime(2025, 6, 1, 12, tzinfo=UTC)) == expected


def test_a_bad_time_is_a_readable_error():
    with pytest.raises(queries.StoreError, match="not a time: '3 days'"):
        queries.parse_when("3 days")


def test_a_trace_prefix_must_be_unique(tmp_path):
    path = tmp_path / "t.db"
    db = open_db(path)
    db["requests"].insert_all([request(id="abcdef01" + "0" * 24, started_at="2025-06-01T10:00:00.000Z"),
                               request(id="abcdef02" + "0" * 24, started_at="2025-06-01T10:00:01.000Z")])
    conn = queries.connect(path)
    assert queries.resolve_trace(conn, "abcdef01") == ("abcdef01" + "0" * 24) * 2
    with pytest.raises(queries.StoreError, match="more than one trace"):
        queries.resolve_trace(conn, "abcdef")
    with pytest.raises(queries.StoreError, match="no trace"):
        queries.resolve_trace(conn, "abc")  # too short to be a prefix


def plan(conn, sql: str, params: tuple) -> str:
    return " ".join(r[-1] for r in conn.execute("EXPLAIN QUERY PLAN " + sql, params))


def test_period_queries_walk_the_time_range_not_a_whole_index(tmp_path):
    """Without `+column` the planner walks a whole (column, started_at) index, every call ever
    recorded, to save a sort: `spend --by provider --since 10m` on a store of 100k calls took 11 ms
    instead of 1.2 ms, and the cost grows with the store, not the period."""
    path = tmp_path / "t.db"
    build(path)
    conn = queries.connect(path)
    traced = []
    conn.set_trace_callback(traced.append)
    queries.spend_since(conn, "2025-06-01T00:00:00.000Z")
    queries.spend(conn, "provider", "2025-06-01T00:00:00.000Z", None)
    conn.set_trace_callback(None)
    for sql in (s for s in traced if s.startswith("SELECT")):  # not the PRAGMA that checks for a column
        assert "USING INDEX idx_requests_started_at" in plan(conn, sql.replace("'2025-06-01T00:00:00.000Z'", "?"),
                                                              ("2025-06-01T00:00:00.000Z",)), sql


def test_budget_ids_are_every_budget_row_capped_or_not(tmp_path):
    """What Spend reads at start to retire budgets no longer in force (it read `id` from budgets(),
    which selects no id, and a restart over a store with budget rows stopped the gateway)."""
    db = open_db(tmp_path / "t.db")
    db["budgets"].insert_all([{"id": "global::a", "cap": 1.0, "spent": 0.5, "name": "a", "unit": "usd"},
                              {"id": "key:k:b", "cap": None, "spent": 2.0, "name": "b", "unit": "usd"}])
    db.close()
    conn = queries.connect(tmp_path / "t.db")
    assert sorted(database.budget_ids(conn)) == ["global::a", "key:k:b"]
    assert database.budget_ids(sqlite3.connect(":memory:")) == []
