"""core/pg/reading.py and functions.py: SQLite's dialect translated, SQLite's functions in
PostgreSQL giving SQLite's answers, and the gateway's own reads (spend, budget ids, the key ring, the
prompt book) the same on both stores."""

import json
import sqlite3
from contextlib import closing
from datetime import UTC, datetime
from types import SimpleNamespace

import pytest
from known_store import build, copy_to_postgres
from services import fresh_database
from support import until

from cli import keyadmin, prompts
from core import database
from core.admission import Admission
from core.config import TapgateConfig
from core.keys import KeyRing
from core.pg.reading import Row, translate
from core.prompts import PromptBook
from core.secrets import redact_password


def test_marks_and_sqlite_words_are_translated():
    assert translate("SELECT a FROM t WHERE b = ? AND c LIKE ? || '%'", ["x", "y"]) == (
        "SELECT a FROM t WHERE b = %s AND c ILIKE %s || '%%'", ["x", "y"])
    assert translate("WHERE (id >= ?1 AND id < ?2) OR (t >= ?1 AND t < ?2)", ["a", "b"]) == (
        "WHERE (id >= %s AND id < %s) OR (t >= %s AND t < %s)", ["a", "b", "a", "b"])
    assert translate("WHERE status IS NOT 'refused' AND x IS NOT NULL", [])[0] == (
        "WHERE status IS DISTINCT FROM 'refused' AND x IS NOT NULL")
    assert translate("GROUP BY +key_id, +model ORDER BY x", [])[0] == "GROUP BY key_id, model ORDER BY x"
    assert translate("SELECT '?' , \"a?\" , ?", [1]) == ("SELECT '?' , \"a?\" , %s", [1])  # quoted marks stay


def test_rows_index_by_name_and_position_and_passwords_are_redacted():
    row = Row(("a", "b"), (1, None))
    assert (row[0], row["a"], row["b"], dict(row), list(row)) == (1, 1, None, {"a": 1, "b": None}, [1, None])
    assert redact_password("postgresql://u:hunter2@h:5/db") == "postgresql://u:***@h:5/db"
    assert redact_password("postgresql://u@h/db") == "postgresql://u@h/db"
    assert database.shown("postgresql://u:p%40ss@h/db") == "postgresql://u:***@h/db"


@pytest.fixture(scope="module")
def stores(tmp_path_factory):
    path = tmp_path_factory.mktemp("store") / "t.db"
    build(path, datetime.now(UTC))
    with fresh_database() as url:
        copy_to_postgres(path, url)
        yield str(path), url


@pytest.mark.parametrize("doc, path", [
    ('{"a": "x"}', "$.a"), ('{"a": 5}', "$.a"), ('{"a": 1.5}', "$.a"), ('{"a": true}', "$.a"),
    ('{"a": false}', "$.a"), ('{"a": null}', "$.a"), ('{}', "$.a"), ('{"a": {"b": [1, "two"]}}', "$.a.b[1]"),
    ('{"a.b": "dot"}', '$."a.b"'), ('[10, 20]', "$[1]"),
])
def test_json_extract_answers_as_sqlite_does(stores, doc, path):
    sqlite, url = stores
    with closing(database.connect(sqlite)) as a, closing(database.connect(url)) as b:
        expected = a.execute("SELECT json_extract(?, ?)", (doc, path)).fetchone()[0]
        got = b.execute("SELECT json_extract(?, ?)", (doc, path)).fetchone()[0]
    assert got == (None if expected is None else str(expected))  # one type, text, where SQLite has several


def test_json_each_and_counting_booleans(stores):
    sqlite, url = stores
    sql = ("SELECT sum(value IS NULL) AS nulls, count(*) AS n, group_concat(key) AS keys"
           " FROM json_each(?)")
    for doc in ('{"a": 1, "b": null, "c": "x"}', '[1, null, 3, null]'):
        with closing(database.connect(sqlite)) as a, closing(database.connect(url)) as b:
            assert dict(a.execute(sql, (doc,)).fetchone()) == dict(b.execute(sql, (doc,)).fetchone())


def test_spend_by_scope_and_budget_ids_are_the_same_on_both_stores(stores):
    """What the ledger starts from, and what Redis budgets are rebuilt from."""
    def read(location):
        with closing(database.connect(location)) as conn:
            scopes = sorted(tuple(r) for r in database.spend_by_scope(conn, ""))
            today = sorted(tuple(r) for r in database.spend_by_scope(conn, database.iso(datetime.now(UTC))[:10]))
            return scopes, today, database.budget_ids(conn)

    sqlite, url = stores
    assert read(url) == read(sqlite)
    scopes, today, _ = read(url)
    assert len(scopes) == 3 and sum(r[4] for r in scopes) == 5 and sum(r[4] for r in today) < 5


def test_the_ledger_starts_from_the_same_totals_on_both_stores(stores):
    sqlite, url = stores
    settings = SimpleNamespace(config=TapgateConfig())
    totals = [Admission(settings, store=None)._totals_from_store(where) for where in (sqlite, url)]
    assert totals[0] == totals[1] and totals[0]


def test_the_key_ring_and_prompt_book_follow_postgresql(tmp_path):
    with fresh_database() as url:
        ring, book = KeyRing(), PromptBook()
        ring.refresh = book.refresh = 0.05
        ring.open(url)  # a new database: no tables yet, no keys
        book.open(url)
        try:
            assert len(ring) == 0
            with closing(database.open_for_edit(url)) as db:
                key, secret = keyadmin.create_key(db, "app", [], None, None, [], None, {})
                prompts.push(db, "greet", {"messages": [{"role": "user", "content": "Hi {{name}}"}], "model": "gpt-4o",
                                           "parameters": {}})
            found = until(lambda: ring.find(secret), what="the key read from PostgreSQL")
            assert found.id == key.id and found.problem() is None
            until(lambda: ("greet", 1) in book.templates, what="the prompt read from PostgreSQL")
            with closing(database.open_for_edit(url)) as db:
                keyadmin.revoke_key(db, key.id)
                prompts.label(db, "greet", 1, "production")
            until(lambda: ring.find(secret).problem(), what="the revoke read from PostgreSQL")
            until(lambda: book.labels.get(("greet", "production")) == 1, what="the label read from PostgreSQL")
        finally:
            ring.close()
            book.close()


def test_a_sqlite_file_reads_as_before(tmp_path):
    """A store without a keys table holds no keys; a file that is not there fails at open, as it did."""
    path = tmp_path / "t.db"
    sqlite3.connect(path).close()
    ring = KeyRing()
    ring.open(path)
    ring.close()
    assert len(ring) == 0
    with pytest.raises(sqlite3.OperationalError):
        KeyRing().open(tmp_path / "missing.db")


def test_top_takes_in_a_row_committed_after_a_higher_numbered_one():
    """Two gateways insert at once: the row numbered first commits last. `tapgate top` on
    PostgreSQL still counts it, and counts neither row twice."""
    import psycopg
    from known_store import request

    from cli.snapshot import Tally

    with fresh_database() as url:
        tally = Tally(600)
        with closing(database.connect(url)) as conn:
            tally.seed(conn, datetime.now(UTC).timestamp())
            now = database.iso(datetime.now(UTC))
            with psycopg.connect(url, autocommit=True) as raw:
                first, second = (raw.execute("SELECT nextval('requests_rowid_seq')").fetchone()[0] for _ in range(2))
                for rowid, ident in ((second, "f" * 32), (first, "9" * 32)):  # the higher number commits first
                    row = request(id=ident, started_at=now)
                    columns = ", ".join([*row, "rowid"])
                    raw.execute(f"INSERT INTO requests ({columns}) VALUES ({', '.join(['%s'] * (len(row) + 1))})",
                                [*row.values(), rowid])
                    assert tally.follow(conn) == 1
            assert tally.follow(conn) == 0
        assert sorted(r["id"][0] for r in tally.last) == ["9", "f"]


def test_persisted_cache_entries_are_read_back_from_postgresql():
    from core.schema import read_cache_entries

    with fresh_database() as url:
        with closing(database.open_for_edit(url)) as db:
            db["cache_entries"].insert_all([
                {"key": "fresh", "expires_at": 2000.5, "stream": 0, "content_type": "application/json",
                 "body": b'{"ok": 1}\x00', "meta": "{}"},
                {"key": "stale", "expires_at": 999.0, "stream": 1, "content_type": "text/event-stream",
                 "body": b"data: x", "meta": "{}"}])
        (entry,) = read_cache_entries(url, 1000.0)
        assert (entry["key"], entry["expires_at"], entry["body"]) == ("fresh", 2000.5, b'{"ok": 1}\x00')
        with closing(database.connect(url)) as conn:  # the stale one is gone
            assert [r[0] for r in conn.execute("SELECT key FROM cache_entries")] == ["fresh"]


def test_tapgate_postgres_must_be_a_postgresql_url_and_its_password_is_not_shown(tmp_path):
    from mitmproxy import exceptions
    from mitmproxy.test import taddons

    from addons.store import Store

    store = Store()
    with taddons.context(store) as tctx:
        tctx.configure(store, tapgate_db=str(tmp_path / "t.db"))
        with pytest.raises(exceptions.OptionsError, match="is not a postgresql:// URL") as e:
            tctx.configure(store, tapgate_postgres="mysql://app:pw-hunter2@127.0.0.1/calls")
        assert "pw-hunter2" not in str(e.value) and "app:***@" in str(e.value)
        store.done()


def test_the_key_ring_reconnects_after_postgresql_dropped_its_connection():
    import psycopg

    with fresh_database() as url:
        ring = KeyRing()
        ring.refresh = 0.05
        ring.open(url)
        try:
            dbname = url.rsplit("/", 1)[1]
            with psycopg.connect(url, autocommit=True) as admin:  # a server restart, as the ring sees it
                killed = admin.execute("SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
                                       " WHERE datname = %s AND pid <> pg_backend_pid()", (dbname,)).fetchone()[0]
            assert killed >= 1
            with closing(database.open_for_edit(url)) as db:
                _, secret = keyadmin.create_key(db, "after", [], None, None, [], None, {})
            until(lambda: ring.find(secret), what="the key read on a new connection")
        finally:
            ring.close()


def test_spend_is_restored_when_postgresql_answers_after_the_gateway_started(monkeypatch):
    """PostgreSQL away at start: the gateway serves, counts from zero, and takes in the store's spend
    when it answers, keeping the larger of each figure (the calls it counted reach the store too)."""
    import asyncio

    from core import admission
    from core.ledger import Amount

    monkeypatch.setattr(admission, "RESTORE_RETRY_SECONDS", 0.01)
    day = (("key", "key_a"), "day", "2026-01-01")
    stored = {day: Amount(2.0, 10, 2), (("key", "key_b"), "day", "2026-01-01"): Amount(1.0, 5, 1)}
    answers = iter([database.StoreError("cannot reach PostgreSQL at 127.0.0.1:9/x"),
                    database.StoreError("cannot reach PostgreSQL at 127.0.0.1:9/x"), stored])

    def totals(db):
        answer = next(answers)
        if isinstance(answer, Exception):
            raise answer
        return answer

    async def scenario():
        gate = Admission(SimpleNamespace(config=TapgateConfig()), store=None)
        monkeypatch.setattr(gate, "_totals_from_store", totals)
        gate.start("postgresql://u:pw@127.0.0.1:9/x")
        assert gate.ledger.spent == {}
        gate.ledger.spent[day] = Amount(3.0, 4, 3)  # counted here while the store was away
        while len(gate.ledger.spent) < 2:
            await asyncio.sleep(0.01)
        gate.stop()
        return gate.ledger.spent

    spent = asyncio.run(asyncio.wait_for(scenario(), 10))
    assert spent[day] == Amount(3.0, 10, 3)
    assert spent[(("key", "key_b"), "day", "2026-01-01")] == Amount(1.0, 5, 1)
    with pytest.raises(database.StoreError):  # a SQLite file that cannot be read still stops the start
        Admission(SimpleNamespace(config=TapgateConfig()), store=None).start("/nonexistent/t.db")


def test_an_experiments_scores_are_stored_on_its_calls_in_postgresql():
    """`tapgate eval run --db postgresql://...` finds the calls the gateway recorded for the run by
    their metadata and stores the scores beside them."""
    import psycopg
    from known_store import request

    from cli.experiment import Result, store_scores

    with fresh_database() as url:
        database.connect(url).close()  # the schema, as the gateway's writer makes it
        with psycopg.connect(url, autocommit=True) as raw:
            for n, candidate in enumerate(("gpt-4o", "gpt-4o-mini")):
                row = request(id=f"{n}" * 32, started_at=database.iso(datetime.now(UTC)),
                              metadata=json.dumps({"experiment": "run1", "candidate": candidate, "row": 0}))
                raw.execute(f"INSERT INTO requests ({', '.join(row)}) VALUES ({', '.join(['%s'] * len(row))})",
                            list(row.values()))
        results = [Result("gpt-4o", 0, True, scores={"similarity": 0.75}),
                   Result("gpt-4o-mini", 0, True, scores={"similarity": 0.5}), Result("o3", 0, False)]
        assert store_scores(url, "run1", results, timeout=5) == 2
        with closing(database.connect(url)) as conn:
            rows = conn.execute("SELECT call_id, evaluator, value, source FROM scores ORDER BY call_id").fetchall()
    assert [tuple(r) for r in rows] == [("0" * 32, "similarity", 0.75, "experiment"),
                                        ("1" * 32, "similarity", 0.5, "experiment")]


def test_the_gateways_dashboard_starts_from_what_postgresql_holds(tmp_path, stores):
    """tapgate_dashboard with tapgate_postgres: seeded from PostgreSQL's calls, the same as from the file's."""
    import io

    from mitmproxy.test import taddons

    from addons.dashboard import Dashboard
    from addons.store import Store
    from cli.snapshot import snapshot

    seen = []
    for postgres in ("", stores[1]):
        dashboard, store = Dashboard(file=io.StringIO()), Store()
        with taddons.context(dashboard, store) as tctx:
            tctx.configure(store, tapgate_db=stores[0], tapgate_postgres=postgres)
            tctx.configure(dashboard, tapgate_dashboard=True, tapgate_dashboard_window=5)
            dashboard.running()
            assert dashboard.drawing.wait(10)
            s = snapshot(dashboard.tally, datetime.now(UTC).timestamp())
            seen.append((s.today_calls, [c["id"] for c in s.last]))
            tctx.configure(dashboard, tapgate_dashboard=False)
            store.done()
    assert seen[0] == seen[1] and seen[0][0] >= 4
