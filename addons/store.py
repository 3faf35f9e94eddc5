"""The SQLite store: schema and migrations, and one writer thread so hooks never wait on SQLite."""

from __future__ import annotations

import logging
import queue
import secrets
import threading
from pathlib import Path
from typing import Any

from mitmproxy import ctx, exceptions
from sqlite_utils import Database
from sqlite_utils.migrations import Migrations

log = logging.getLogger(__name__)

DEFAULT_DB = "~/.tapgate/tapgate.db"
BATCH_MAX = 1000

migrations = Migrations("tapgate")


@migrations()
def m001_requests_and_spans(db: Database) -> None:
    db["requests"].create(
        {
            "id": str,
            "trace_id": str,
            "span_id": str,
            "started_at": str,
            "duration_ms": float,
            "ttft_ms": float,
            "mode": str,
            "provider": str,
            "endpoint": str,
            "host": str,
            "path": str,
            "model": str,
            "response_model": str,
            "stream": int,
            "status_code": int,
            "status": str,
            "error": str,
            "input_tokens": int,
            "output_tokens": int,
            "cache_read_tokens": int,
            "cache_write_tokens": int,
            "reasoning_tokens": int,
            "cost_usd": float,
            "customer_identifier": str,
            "thread_identifier": str,
            "metadata": str,
            "key_id": str,
            "request_body": str,
            "response_body": str,
        },
        pk="id",
    )
    db["spans"].create(
        {
            "span_id": str,
            "trace_id": str,
            "parent_span_id": str,
            "request_id": str,
            "name": str,
            "started_at": str,
            "duration_ms": float,
            "status": str,
            "attributes": str,
        },
        pk="span_id",
    )
    db["meta"].create({"key": str, "value": str}, pk="key")


@migrations()
def m002_usage_estimated_and_indexes(db: Database) -> None:
    # Rows whose usage the provider never reported (a cut stream) carry an estimate, and say so.
    db["requests"].add_column("usage_estimated", int, not_null_default=0)
    db["requests"].create_index(["started_at"], if_not_exists=True)
    db["requests"].create_index(["trace_id"], if_not_exists=True)
    db["requests"].create_index(["customer_identifier", "started_at"], if_not_exists=True)
    db["requests"].create_index(["thread_identifier", "started_at"], if_not_exists=True)
    db["spans"].create_index(["trace_id"], if_not_exists=True)


def open_db(path: str | Path) -> Database:
    """Open (creating if needed) and migrate the store; WAL so readers never block the writer."""
    path = Path(path).expanduser()
    path.parent.mkdir(parents=True, exist_ok=True)
    db = Database(path)
    db.enable_wal()
    db.execute("PRAGMA busy_timeout = 5000")
    migrations.apply(db)
    return db


def install_salt(db: Database) -> str:
    """The per-store secret that salts key fingerprints, created on first use."""
    row = db.execute("SELECT value FROM meta WHERE key = 'key_salt'").fetchone()
    if row:
        return row[0]
    salt = secrets.token_hex(16)
    db["meta"].insert({"key": "key_salt", "value": salt}, replace=True)
    return salt


class Writer(threading.Thread):
    """Takes (table, row) records from a queue and writes them in batches, one transaction each."""

    def __init__(self, path: Path) -> None:
        super().__init__(name="tapgate-store-writer", daemon=True)
        self.path = path
        self.queue: queue.SimpleQueue[tuple[str, dict[str, Any]] | None] = queue.SimpleQueue()
        self.written = 0

    def run(self) -> None:
        db = open_db(self.path)
        try:
            stop = False
            while not stop:
                item = self.queue.get()  # blocks until there is work: no idle polling
                batch: dict[str, list[dict[str, Any]]] = {}
                while item is not None:
                    batch.setdefault(item[0], []).append(item[1])
                    if sum(map(len, batch.values())) >= BATCH_MAX:
                        break
                    try:
                        item = self.queue.get_nowait()
                    except queue.Empty:
                        break
                stop = item is None
                if batch:
                    self._write(db, batch)
        finally:
            db.close()

    def _write(self, db: Database, batch: dict[str, list[dict[str, Any]]]) -> None:
        try:
            with db.conn:
                for table, rows in batch.items():
                    db[table].insert_all(rows, alter=True, replace=True, batch_size=200)
            self.written += sum(map(len, batch.values()))
        except Exception:  # a bad batch must not kill the writer; say so and go on
            log.exception("tapgate: could not write %d records to %s", sum(map(len, batch.values())), self.path)


class Store:
    """Owns the database file named by `tapgate_db` and its writer thread; `done()` drains it."""

    def __init__(self) -> None:
        self.writer: Writer | None = None
        self.salt = ""

    def load(self, loader) -> None:
        loader.add_option(
            "tapgate_db", str, DEFAULT_DB, "SQLite file that tapgate records requests and spans in."
        )

    def configure(self, updated: set[str]) -> None:
        if "tapgate_db" in updated:
            path = Path(ctx.options.tapgate_db).expanduser()
            try:
                db = open_db(path)
                self.salt = install_salt(db)
                db.close()
            except Exception as e:
                raise exceptions.OptionsError(f"tapgate_db: cannot open {path}: {e}") from None
            self._stop()
            self.writer = Writer(path)
            self.writer.start()

    def running(self) -> None:
        # Store is the last addon, so this is the last start-up hook: the proxy is ready.
        log.info("tapgate ready: recording LLM calls to %s", ctx.options.tapgate_db)

    def add(self, table: str, row: dict[str, Any]) -> None:
        """Queue a row; never blocks."""
        if self.writer is not None:
            self.writer.queue.put((table, row))

    def done(self) -> None:
        self._stop()

    def _stop(self) -> None:
        if self.writer is not None:
            self.writer.queue.put(None)
            self.writer.join()
            self.writer = None
