"""The store: schema, migrations forward from an older file, batched writes, a flush on shutdown."""

import sqlite3

import pytest
from mitmproxy.test import taddons
from sqlite_utils import Database
from sqlite_utils.migrations import Migrations

from addons.store import Store
from core import schema as store_module
from core.schema import install_salt, migrations, open_db
from core.store import Storage

REQUIRED = {
    "id", "trace_id", "started_at", "duration_ms", "ttft_ms", "mode", "provider", "endpoint", "model",
    "response_model", "stream", "status_code", "error", "input_tokens", "output_tokens", "cache_read_tokens",
    "cache_write_tokens", "reasoning_tokens", "cost_usd", "customer_identifier", "thread_identifier", "metadata",
    "key_id",
}
SPAN_REQUIRED = {"span_id", "trace_id", "parent_span_id", "name", "started_at", "duration_ms", "status", "attributes"}


def test_schema_has_the_public_columns(tmp_path):
    db = open_db(tmp_path / "t.db")
    assert REQUIRED <= set(db["requests"].columns_dict)
    assert SPAN_REQUIRED <= set(db["spans"].columns_dict)
    assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_an_older_file_migrates_forward(tmp_path):
    path = tmp_path / "old.db"
    first_only = Migrations("tapgate")
    first_only()(store_module.m001_requests_and_spans)
    old = Database(path)
    first_only.apply(old)
    old["requests"].insert({"id": "r1", "provider": "openai", "input_tokens": 5})
    old.close()
    assert "usage_estimated" not in Database(path)["requests"].columns_dict

    db = open_db(path)
    assert "usage_estimated" in db["requests"].columns_dict
    assert db.execute("SELECT usage_estimated, input_tokens FROM requests WHERE id='r1'").fetchone() == (0, 5)
    assert [m.name for m in migrations.pending(db)] == []


def test_salt_is_created_once(tmp_path):
    db = open_db(tmp_path / "t.db")
    salt = install_salt(db)
    assert len(salt) == 32 and install_salt(db) == salt


def test_rows_are_written_off_thread_and_flushed_on_done(tmp_path):
    path = tmp_path / "t.db"
    store = Store()
    with taddons.context(store) as tctx:
        tctx.configure(store, tapgate_db=str(path))
        for i in range(2500):  # more than one batch
            store.add("requests", {"id": f"r{i}", "provider": "openai", "input_tokens": i})
        store.add("spans", {"span_id": "s1", "trace_id": "t1", "name": "x"})
        writer = store.writer
        store.done()
    assert not writer.is_alive() and writer.written == 2501
    conn = sqlite3.connect(path)
    assert conn.execute("SELECT count(*), sum(input_tokens) FROM requests").fetchone() == (2500, sum(range(2500)))
    assert conn.execute("SELECT name FROM spans").fetchall() == [("x",)]


def test_a_bad_path_is_a_clear_option_error(tmp_path):
    import pytest
    from mitmproxy import exceptions

    (tmp_path / "file").write_text("x")
    store = Store()
    with taddons.context(store) as tctx:
        with pytest.raises(exceptions.OptionsError, match="tapgate_db: cannot open"):
            tctx.configure(store, tapgate_db=str(tmp_path / "file" / "t.db"))


def test_rows_orjson_cannot_write_and_what_it_writes_differently_all_reach_the_store(tmp_path):
    path = tmp_path / "t.db"
    storage = Storage()
    storage.open(path)
    storage.add_all([
        ("requests", {"id": "big", "input_tokens": 2**70}),  # past 64 bits: json.dumps writes it
        ("requests", {"id": "nan", "cost_usd": float("nan")}),  # orjson: null
        ("requests", {"id": "text", "error": 'é € \u2028 "["requests",{" \n', "metadata": "\ud800"}),
    ])
    storage.add("spans", {"span_id": "s1", "trace_id": "t1", "name": "x"})
    storage.close()
    conn = sqlite3.connect(path)
    got = {r[0]: r[1:] for r in conn.execute("SELECT id, input_tokens, cost_usd, error FROM requests")}
    assert got["big"][0] == 2**70 and got["nan"][1] is None
    assert got["text"][2] == 'é € \u2028 "["requests",{" \n'
    assert conn.execute("SELECT count(*) FROM spans").fetchone() == (1,)


def test_a_batch_is_split_by_table_and_a_line_naming_no_table_refused():
    from core.writer import lines_by_table

    data = b'["requests",{"id":"a"}]\n["spans",{"span_id":"s"}]\n["requests",{"id":"b"}]\n'
    assert lines_by_table(data, {"requests", "spans"}) == {
        "requests": [b'["requests",{"id":"a"}]', b'["requests",{"id":"b"}]'], "spans": [b'["spans",{"span_id":"s"}]']}
    for bad in (b'["nope",{}]\n', b'{"id":"a"}\n', b'["requests"\n'):
        with pytest.raises(ValueError, match="names a table the store does not have"):
            lines_by_table(data + bad, {"requests", "spans"})
