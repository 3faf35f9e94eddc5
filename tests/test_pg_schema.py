"""The PostgreSQL store's schema mirrors the SQLite store's, is installed once by processes racing
at start, and keeps calls in day partitions that retention drops whole. Real PostgreSQL."""

from __future__ import annotations

import sqlite3
import threading
from datetime import date

import psycopg
import pytest
from services import fresh_database

from core.pg import schema
from core.schema import open_db


@pytest.fixture
def pg():
    with fresh_database() as url:
        with psycopg.connect(url, autocommit=True) as conn:
            yield conn


def columns(conn, table: str) -> list[str]:
    sql = "SELECT column_name FROM information_schema.columns WHERE table_name = %s ORDER BY ordinal_position"
    return [r[0] for r in conn.execute(sql, (table,))]


def test_every_sqlite_table_and_column_is_in_postgres(pg, tmp_path):
    assert schema.install(pg)  # the first install applies every migration
    db = open_db(tmp_path / "t.db")
    for table in (t for t in db.table_names() if not t.startswith("_")):
        assert columns(pg, table) == [c.name for c in db[table].columns], table
    assert schema.install(pg) == []  # and the second finds nothing to do


def test_a_new_sqlite_migration_adds_its_column(pg, monkeypatch):
    schema.install(pg)
    shape = schema.sqlite_shape()
    requests = next(t for t in shape.tables if t.name == "requests")
    grown = schema.Shape(shape.migrations + ["m999_test"], [schema.Table(
        "requests", requests.columns + [("extra", "text", False, None)], requests.pk)], [])
    monkeypatch.setattr(schema, "sqlite_shape", lambda: grown)
    assert schema.install(pg) == ["m999_test"]
    assert columns(pg, "requests")[-1] == "extra"


def test_processes_installing_at_once_do_not_collide():
    with fresh_database() as url:
        errors = []

        def one():
            try:
                with psycopg.connect(url, autocommit=True) as conn:
                    schema.install(conn)
            except Exception as e:  # noqa: BLE001 - the assertion below shows it
                errors.append(e)

        threads = [threading.Thread(target=one) for _ in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert errors == []


def test_day_partitions_take_their_rows_and_retention_drops_them(pg):
    schema.install(pg)
    insert = "INSERT INTO requests (id, started_at, model) VALUES (%s, %s, 'm')"
    pg.execute(insert, ("early", "2026-11-30T23:59:59.999Z"))  # no partition yet: the default one
    with pg.transaction():
        assert schema.ensure_partitions(pg, [date(2026, 11, 30), date(2026, 12, 1)]) == [
            "requests_p20261130", "requests_p20261201"]
    pg.execute(insert, ("late", "2026-12-01T00:00:00.000Z"))
    where = {r[1]: r[0] for r in pg.execute("SELECT tableoid::regclass::text, id FROM requests")}
    assert where == {"early": "requests_p20261130", "late": "requests_p20261201"}
    assert schema.drop_partitions_before(pg, date(2026, 12, 1)) == ["requests_p20261130"]
    assert [r[0] for r in pg.execute("SELECT id FROM requests")] == ["late"]


def test_views_answer_in_postgres(pg):
    schema.install(pg)
    pg.execute("INSERT INTO requests (id, started_at, provider, model, status, duration_ms, cost_usd) "
               "VALUES ('a', '2026-12-01T10:00:00.000Z', 'openai', 'gpt', 'ok', 12.5, 0.25)")
    assert pg.execute("SELECT date, requests, cost_usd FROM spend_by_day_key").fetchall() == [
        ("2026-12-01", 1, 0.25)]
    assert pg.execute("SELECT requests, p50_ms FROM latency_by_model").fetchone() == (1, 12.5)


def test_sqlite_store_is_untouched_by_the_postgres_schema(tmp_path):
    # The derivation reads an in-memory store: no file appears, none changes.
    schema.sqlite_shape()
    assert list(tmp_path.iterdir()) == []
    assert sqlite3.sqlite_version
