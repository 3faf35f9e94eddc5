"""The PostgreSQL writer (core/pg/writer.py, batches.py, upkeep.py) against a real PostgreSQL: batches
land, a replayed journal never duplicates a row, values round-trip, partitions are made ahead and
retention drops them, and PostgreSQL down loses nothing."""

from __future__ import annotations

import logging
import socket
from datetime import date, timedelta
from pathlib import Path

import psycopg
import pytest
from services import as_url, fresh_database, own_postgres
from support import until

from core.journal import journal_dir
from core.pg.batches import Batches
from core.pg.schema import ensure_partitions, install, partitions
from core.pg.upkeep import DAYS_AHEAD, upkeep
from core.pg.url import check, redact
from core.store import Storage, journal_line


@pytest.fixture
def pg():
    with fresh_database() as conninfo:
        url = as_url(conninfo)
        with psycopg.connect(url, autocommit=True) as conn:
            install(conn)
        yield url


def rows(url: str, sql: str, params: tuple = ()) -> list[tuple]:
    with psycopg.connect(url) as conn:
        return conn.execute(sql, params).fetchall()


def call(i: int, day: str = "2026-12-03", **more) -> tuple[str, dict]:
    return "requests", {"id": f"call-{i}", "started_at": f"{day}T05:00:{i % 60:02d}.000Z", "model": "gpt-4.1-mini",
                        "input_tokens": i, "output_tokens": 2 * i, "cost_usd": i / 1000, **more}


def lines(records) -> bytes:
    return b"".join(journal_line(t, r) for t, r in records)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_a_batch_lands_in_every_table_with_its_types(pg):
    batch = lines([
        call(1, stream=True, metadata='{"team": "a"}', usage_estimated=None),
        ("spans", {"span_id": "s1", "request_id": "call-1", "name": "tool call", "duration_ms": 1.5,
                   "attributes": '{"k": [1, 2]}'}),
        ("cache_entries", {"key": "k1", "expires_at": 1.75e9, "stream": 0, "content_type": "application/json",
                           "body": b"\x00\xffbody", "meta": "{}"}),
        ("budgets", {"id": "key:k:daily", "spent": 0.25, "cap": 1.0}),
        ("scores", {"id": "call-1:judge", "call_id": "call-1", "value": True}),
    ])
    with psycopg.connect(pg, autocommit=True) as conn:
        assert Batches().insert(conn, batch) == 5
    assert rows(pg, "SELECT id, model, stream, input_tokens, output_tokens, cost_usd, metadata, usage_estimated "
                    "FROM requests") == [("call-1", "gpt-4.1-mini", 1, 1, 2, 0.001, '{"team": "a"}', 0)]
    assert rows(pg, "SELECT name, duration_ms, attributes FROM spans") == [("tool call", 1.5, '{"k": [1, 2]}')]
    assert rows(pg, "SELECT body, expires_at FROM cache_entries") == [(b"\x00\xffbody", 1.75e9)]
    assert rows(pg, "SELECT spent, cap FROM budgets") == [(0.25, 1.0)]
    assert rows(pg, "SELECT value FROM scores") == [(1.0,)]


def test_a_replayed_batch_never_duplicates_and_the_last_line_wins(pg):
    first = lines([call(i) for i in range(50)] + [("budgets", {"id": "b", "spent": 1.0})])
    again = lines([call(i) for i in range(40, 60)] + [("budgets", {"id": "b", "spent": 2.0}),
                                                      ("budgets", {"id": "b", "spent": 3.0})])
    batches = Batches()
    with psycopg.connect(pg, autocommit=True) as conn:
        batches.insert(conn, first)
        batches.insert(conn, first)  # a segment replayed after a crash
        batches.insert(conn, again)  # the same key twice in one batch: the later line wins
    assert rows(pg, "SELECT count(*), count(DISTINCT id) FROM requests") == [(60, 60)]
    assert rows(pg, "SELECT spent FROM budgets") == [(3.0,)]


def test_a_bad_record_is_lost_alone_and_nul_characters_are_dropped(pg):
    batch = lines([call(1), call(2, input_tokens="many"), ("no_such_table", {"id": "x"}), call(3, error="a\x00b")])
    with psycopg.connect(pg, autocommit=True) as conn:
        batches = Batches()
        with pytest.raises(ValueError):
            batches.insert(conn, batch)
        bad = batches.insert_each(conn, batch)
    assert len(bad) == 2
    assert rows(pg, "SELECT id, error FROM requests ORDER BY id") == [("call-1", None), ("call-3", "ab")]


def test_storage_writes_through_the_journal_and_redacts_the_url(pg, tmp_path: Path):
    storage = Storage()
    storage.open(tmp_path / "t.db", pg)
    storage.add_all([call(i) for i in range(200)])
    until(lambda: storage.writer.pending() == (0, 0), 10)
    status = storage.writer.status()
    assert status["store"] == "postgresql" and status["connected"] and status["committed"] == 200
    storage.close()
    assert rows(pg, "SELECT count(*) FROM requests") == [(200,)]
    assert not list(journal_dir(tmp_path / "t.db").glob("*.jsonl"))  # all committed: the journal is gone
    assert rows(pg, "SELECT value FROM meta WHERE key = 'key_salt'") == [(storage.salt,)]


def test_the_url_is_checked_and_its_password_never_printed():
    assert redact("postgresql://tapgate:hunter22@127.0.0.1:5432/calls") == "postgresql://tapgate:***@127.0.0.1:5432/calls"
    assert "hunter22" not in redact("password authentication failed: hunter22",
                                    "postgresql://u:hunter22@127.0.0.1/x")
    with pytest.raises(ValueError, match=r"\*\*\*") as e:
        check("mysql://u:hunter22@127.0.0.1/x")
    assert "hunter22" not in str(e.value)


def test_partitions_are_made_ahead_and_retention_drops_old_days(pg, monkeypatch):
    monkeypatch.setattr("core.pg.upkeep.CHUNK", 1)  # spans deleted a call at a time: every chunk boundary
    today = date(2026, 12, 3)
    with psycopg.connect(pg, autocommit=True) as conn:
        with conn.transaction():
            ensure_partitions(conn, [today - timedelta(days=d) for d in (10, 9, 8)])
        Batches().insert(conn, lines([call(1, "2026-11-23"), call(2, "2026-11-25"), call(3, "2026-12-02"),
                                      call(4, "2026-10-01"), call(5, "2026-11-23")]))  # 4: the default partition
        for i in (1, 2, 3, 4, 5):  # two spans a call, as the gateway writes them
            conn.execute("INSERT INTO spans (span_id, trace_id, request_id, name) VALUES (%s, 't', %s, 'call'), "
                         "(%s, 't', %s, 'upstream')", (f"s{i}a", f"call-{i}", f"s{i}b", f"call-{i}"))
        created, dropped = upkeep(conn, today, retention_days=9)
        assert created == [f"requests_p{today + timedelta(days=d):%Y%m%d}" for d in range(-1, DAYS_AHEAD + 1)]
        assert dropped == ["requests_p20261123"]
        assert partitions(conn)[0] == "requests_p20261124"
        assert upkeep(conn, today, retention_days=9) == ([], [])  # hourly: nothing more to do
    assert rows(pg, "SELECT id FROM requests ORDER BY id") == [("call-2",), ("call-3",)]
    # the dropped calls' spans went with them (from a day partition and from the default one)
    assert rows(pg, "SELECT request_id, count(*) FROM spans GROUP BY 1 ORDER BY 1") == [("call-2", 2), ("call-3", 2)]


def test_a_full_journal_drops_and_counts_loudly(tmp_path: Path, caplog):
    storage = Storage()
    storage.open(tmp_path / "t.db", f"postgresql://postgres@127.0.0.1:{free_port()}/none")  # nobody listens
    storage.max_journal_bytes = 4096
    with caplog.at_level(logging.ERROR):
        for i in range(100):
            storage.add(*call(i))
    writer = storage.writer
    assert writer.dropped > 0 and writer.lost == writer.dropped
    assert writer.pending()[1] <= 4096
    assert writer.pending()[0] + writer.dropped == 100
    assert sum("journal" in r.message and "full" in r.message for r in caplog.records) == 1
    assert writer.status()["connected"] is False
    storage.close()


def test_postgres_down_at_start_and_at_shutdown_loses_nothing(tmp_path: Path):
    """Rows journalled while the server is down stay in the journal across a restart of the gateway
    and land once it is back."""
    with own_postgres() as server:
        server.stop()
        first = Storage()
        first.open(tmp_path / "t.db", server.url)  # starts anyway, with a salt of its own
        first.add_all([call(i) for i in range(30)])
        first.close()  # gives up after a few tries: the journal stays for the next start
        assert list(journal_dir(tmp_path / "t.db").glob("*.jsonl"))
        server.start()
        second = Storage()
        second.open(tmp_path / "t.db", server.url)
        second.add_all([call(i) for i in range(30, 40)])
        until(lambda: second.writer.pending() == (0, 0), 20)
        assert second.writer.replayed == 30
        second.close()
        assert rows(server.url, "SELECT count(*), count(DISTINCT id) FROM requests") == [(40, 40)]
        assert rows(server.url, "SELECT value FROM meta WHERE key = 'key_salt'") == [(first.salt,)]
        assert second.salt == first.salt  # cached beside the journal while the server was down


def test_a_server_stopped_mid_write_drains_when_it_returns(tmp_path: Path):
    with own_postgres() as server:
        storage = Storage()
        storage.open(tmp_path / "t.db", server.url)
        storage.add_all([call(i) for i in range(10)])
        until(lambda: storage.writer.pending() == (0, 0), 10)
        server.stop()
        for i in range(10, 60):
            storage.add(*call(i))
        until(lambda: storage.writer.stalled_since is not None, 10)
        assert storage.writer.status()["connected"] is False and storage.writer.pending()[0] == 50
        server.start()
        until(lambda: storage.writer.pending() == (0, 0), 20)
        assert storage.writer.status()["connected"] is True and storage.writer.lost == 0
        storage.close()
        assert rows(server.url, "SELECT count(*), count(DISTINCT id) FROM requests") == [(60, 60)]


def test_metrics_and_the_dashboard_line_show_the_queue_and_the_connection(pg, tmp_path: Path):
    from cli.views import writer_line
    from core.health import store_check
    from core.metrics import Metrics, writer_gauges

    storage = Storage()
    storage.open(tmp_path / "t.db", f"postgresql://postgres@127.0.0.1:{free_port()}/none")
    storage.add_all([call(i) for i in range(5)])
    metrics = Metrics()
    metrics.gauges.append(writer_gauges(storage))
    text = metrics.exposition().decode()
    assert "tapgate_writer_queue_depth 5.0" in text and 'tapgate_writer_connected{store="postgresql"} 0.0' in text
    size = storage.writer.pending()[1]
    assert size > 0 and f"tapgate_writer_queue_bytes {float(size)}" in text
    line = writer_line(storage.writer.status()).plain
    assert "PostgreSQL DISCONNECTED" in line and "5 records pending" in line
    until(lambda: storage.writer.stalled_since is not None, 10, "the writer to see PostgreSQL away")
    check = store_check(storage)  # calls still land on disk: the gateway stays ready, and says why
    assert check.ok and "PostgreSQL unreachable, 5 records wait in the journal" in check.reason
    storage.max_journal_bytes = 1
    storage.add(*call(6))
    assert not store_check(storage).ok and "journal is full" in store_check(storage).reason
    storage.close()


def test_alerts_reach_postgres_through_the_journal(pg, tmp_path: Path):
    """The alert sender keeps its outbox in the SQLite file; with PostgreSQL each row it records or
    updates is journalled too (Alerts.running sets the mirror when tapgate_postgres is set)."""
    from datetime import UTC, datetime

    from addons.settings import Settings
    from core.alerting import Alerting
    from core.config import Budget
    from core.ledger import Crossing

    storage = Storage()
    storage.open(tmp_path / "t.db", pg)
    alerting = Alerting(Settings())
    alerting.mirror = lambda row: storage.add("alerts", row)
    alerting.start(tmp_path / "t.db")
    budget = Budget(unit="usd", period="month", cap=10)
    alerting.fire(Crossing(("customer", "acme"), budget, 10.0, 10.5, "2026-12-01T00:00:00+00:00",
                           datetime(2027, 1, 1, tzinfo=UTC)), None)
    alerting.stop()  # records what is queued before it returns
    storage.close()
    ((alert_id, spent, error),) = rows(pg, "SELECT id, spent, last_error FROM alerts")
    assert alert_id.startswith("customer:acme:usd/month:10") and spent == 10.5 and error == "no alert channel configured"


def test_the_store_addon_takes_the_options_and_refuses_bad_ones(pg, tmp_path: Path):
    from mitmproxy import exceptions
    from mitmproxy.test import taddons

    from addons.store import Store
    from core.pg.writer import PgWriter

    store = Store()
    with taddons.context(store) as tctx:
        tctx.configure(store, tapgate_db=str(tmp_path / "t.db"))
        assert not isinstance(store.writer, PgWriter)  # the default: SQLite
        for bad, why in ((dict(tapgate_postgres="mysql://u:hunter22@127.0.0.1/x"), "not a postgresql:// URL"),
                         (dict(tapgate_retention_days=-1), "retention_days"),
                         (dict(tapgate_journal_max_mb=-5), "journal_max_mb")):
            with pytest.raises(exceptions.OptionsError, match=why) as e:
                tctx.configure(store, **bad)
            assert "hunter22" not in str(e.value)
        tctx.configure(store, tapgate_postgres=pg, tapgate_journal_max_mb=2)
        writer = store.writer
        assert isinstance(writer, PgWriter) and store.max_journal_bytes == 2 * 2**20
        tctx.configure(store, tapgate_retention_days=7)  # applied by the running writer, not a reopen
        assert store.writer is writer and writer.retention_days == 7
        store.add(*call(1))
        store.done()
    assert rows(pg, "SELECT id FROM requests") == [("call-1",)]
