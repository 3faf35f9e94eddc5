"""The journal and its writer: records survive a crash of the process (replayed at the next start,
never from a live gateway's journal), a busy store is waited out, a deleted one recreated loudly."""

import logging
import os
import shutil
import sqlite3
import stat

import pytest
from mitmproxy.test import taddons
from support import until

from addons.store import Store
from core import writer as writer_module
from core.journal import Journal, journal_dir, read_status
from core.schema import open_db


def count(path, sql="SELECT count(*) FROM requests") -> int:
    """Read-only: a reader must never create the file the writer is to recreate."""
    try:
        conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    except sqlite3.OperationalError:
        return -1
    try:
        return conn.execute(sql).fetchone()[0]
    except sqlite3.OperationalError:
        return -1
    finally:
        conn.close()


def mode(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def test_a_new_store_its_directory_and_journal_are_owner_only(tmp_path):
    path = tmp_path / "new" / "dir" / "t.db"
    store = Store()
    with taddons.context(store) as tctx:
        tctx.configure(store, tapgate_db=str(path))
        store.add("requests", {"id": "r1"})
        until(lambda: count(path) == 1)
        assert mode(path) == 0o600 and mode(path.with_name("t.db-wal")) == 0o600
        assert mode(path.parent) == 0o700 and mode(tmp_path / "new") == 0o700
        journal = journal_dir(path)
        assert mode(journal) == 0o700
        assert {mode(p) for p in journal.iterdir()} == {0o600}
        store.done()
    assert list(journal.iterdir()) == []  # all committed: nothing left to replay


def test_rows_of_bytes_and_odd_text_go_through_the_journal(tmp_path):
    path = tmp_path / "t.db"
    store = Store()
    with taddons.context(store) as tctx:
        tctx.configure(store, tapgate_db=str(path))
        store.add("cache_entries", {"key": "k", "expires_at": 1.5, "stream": 1, "body": b"\x00\xffdata\n"})
        store.add("requests", {"id": "r\t1", "error": "line\nbreak \u2028 \"q\"", "cost_usd": 0.25, "stream": True})
        store.done()
    conn = sqlite3.connect(path)
    assert conn.execute("SELECT body, expires_at FROM cache_entries").fetchone() == (b"\x00\xffdata\n", 1.5)
    assert conn.execute("SELECT id, error, cost_usd, stream FROM requests").fetchone() == (
        "r\t1", "line\nbreak \u2028 \"q\"", 0.25, 1)


def crashed_journal(path, rows) -> Journal:
    """What a killed gateway leaves: appended segments, never committed, its lock released."""
    open_db(path).close()
    journal = Journal(journal_dir(path))
    for i in range(rows):
        journal.append(b'["requests",{"id":"dead%d","cost_usd":0.5}]\n' % i, 1)
    return journal


def test_a_dead_gateways_journal_is_committed_before_the_store_is_read(tmp_path, caplog):
    path = tmp_path / "t.db"
    crashed_journal(path, 3000).close(committed=False)
    before = count(path)
    store = Store()
    with taddons.context(store) as tctx:
        tctx.configure(store, tapgate_db=str(path))
        # configure (before any addon's running hook) has committed them already
        assert before == 0 and count(path, "SELECT count(*) FROM requests WHERE id LIKE 'dead%'") == 3000
        assert "committed 3000 records a gateway that stopped" in caplog.text
        store.done()
    assert list(journal_dir(path).iterdir()) == []


def test_a_live_gateways_journal_is_never_replayed(tmp_path):
    path = tmp_path / "t.db"
    live = crashed_journal(path, 5)  # still open: its owner holds the lock
    store = Store()
    with taddons.context(store) as tctx:
        tctx.configure(store, tapgate_db=str(path))
        assert count(path) == 0
        assert all(s.path.exists() for s in live.segments)
        store.done()
    live.close(committed=False)


@pytest.fixture
def locked(tmp_path, monkeypatch):
    """A running Store, and another connection holding the store's write lock (a sqlite3 shell left in
    a transaction) past the writer's busy timeout: (store, its context, the holder, the path)."""
    monkeypatch.setattr(writer_module, "BUSY_TIMEOUT_MS", 50)
    path = tmp_path / "t.db"
    store = Store()
    with taddons.context(store) as tctx:
        tctx.configure(store, tapgate_db=str(path))
        holder = sqlite3.connect(path, isolation_level=None)
        holder.execute("BEGIN IMMEDIATE")
        yield store, tctx, holder, path


def test_a_foreign_write_lock_past_busy_timeout_loses_nothing(locked, caplog):
    store, _, holder, path = locked
    writer = store.writer
    for i in range(500):
        store.add("requests", {"id": f"r{i}"})
    until(lambda: writer.stalled_since is not None)
    status = until(lambda: (s := read_status(path)) and s["stalled"] and s)
    assert status["pending_records"] == 500 and status["stalls"] == 1 and status["lost"] == 0
    for i in range(500, 800):  # calls go on while the store is locked
        store.add("requests", {"id": f"r{i}"})
    holder.execute("ROLLBACK")
    holder.close()
    until(lambda: count(path) == 800)
    assert writer.lost == 0 and writer.stalls == 1 and writer.stalled_since is None
    store.done()
    assert "cannot write to" in caplog.text and "are retried" in caplog.text and "writing to" in caplog.text


def test_a_store_locked_at_shutdown_keeps_its_journal_for_the_next_start(locked, caplog):
    store, tctx, holder, path = locked
    for i in range(10):
        store.add("requests", {"id": f"r{i}"})
    store.done()
    holder.execute("ROLLBACK")
    holder.close()
    assert count(path) == 0 and "stay in the journal" in caplog.text
    tctx.configure(store, tapgate_db=str(path))  # the next start
    assert count(path) == 10
    store.done()


@pytest.mark.parametrize("what", ["directory", "file"])
def test_a_store_deleted_while_running_is_recreated_loudly(tmp_path, caplog, what):
    path = tmp_path / "store" / "t.db"
    store = Store()
    with taddons.context(store) as tctx:
        tctx.configure(store, tapgate_db=str(path))
        store.add("requests", {"id": "before"})
        until(lambda: count(path) == 1)
        if what == "directory":
            while path.parent.exists():  # rm -rf, again if the writer put its status file in meanwhile
                shutil.rmtree(path.parent, ignore_errors=True)
        else:
            path.unlink()
        with caplog.at_level(logging.ERROR):
            for i in range(50):
                store.add("requests", {"id": f"after{i}"})
            until(lambda: count(path) == 50)
        assert f"the store {path} was deleted while the gateway ran" in caplog.text
        assert store.writer.reopens >= 1 and mode(path) == 0o600
        store.done()
    assert count(path) == 50 and list(journal_dir(path).iterdir()) == []


def test_a_record_the_store_cannot_take_is_counted_lost_and_the_rest_committed(tmp_path, caplog):
    path = tmp_path / "t.db"
    store = Store()
    with taddons.context(store) as tctx:
        tctx.configure(store, tapgate_db=str(path))
        store.add("requests", {"id": "r1"})
        store.add("no_such_table", {"id": "x"})
        store.add("requests", {"id": "r2"})
        until(lambda: store.writer.lost == 1)  # counted once the rest of its batch is in
        assert count(path) == 2
        until(lambda: (status := read_status(path)) and status["lost"] == 1)  # shown by top and the dashboard
        store.done()
    assert "a record could not be stored and is lost" in caplog.text and "no_such_table" in caplog.text


def _open_when_released(path, barrier) -> None:
    barrier.wait()
    open_db(path).close()


def test_processes_opening_a_new_store_at_once_all_open_it(tmp_path):
    # Gateways started together (scripts/gateways.py) each migrate the new file; without the
    # opening lock one of them failed with "database is locked" or "table already exists".
    import multiprocessing

    ctx = multiprocessing.get_context("spawn")
    for attempt in range(3):
        path = tmp_path / f"s{attempt}.db"
        barrier = ctx.Barrier(4)
        procs = [ctx.Process(target=_open_when_released, args=(path, barrier)) for _ in range(4)]
        for p in procs:
            p.start()
        for p in procs:
            p.join(60)
        assert [p.exitcode for p in procs] == [0, 0, 0, 0]
