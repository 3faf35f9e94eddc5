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
FLUSH_SECONDS = 0.25  # how long a batch gathers; commits stay well inside "at least every second"

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
    """Takes (table, row) records from a queue and writes them in batches, one transaction each.

    It sleeps FLUSH_SECONDS after the first record of a batch so that one wake-up and one commit
    serve many calls: the proxy's event loop shares the GIL with this thread, and every wake-up
    costs it. Rows go in with one prepared INSERT per table (sqlite-utils' insert_all inspects
    the table on every call, which cost more than the insert itself at a few hundred calls a second).
    """

    def __init__(self, path: Path) -> None:
        super().__init__(name="tapgate-store-writer", daemon=True)
        self.path = path
        self.queue: queue.SimpleQueue[tuple[str, dict[str, Any]] | None] = queue.SimpleQueue()
        self.stopping = threading.Event()
        self.written = 0

    def run(self) -> None:
        db = open_db(self.path)
        db.execute("PRAGMA synchronous = NORMAL")  # with WAL: durable across crashes of this process
        inserts: dict[str, tuple[list[str], str]] = {}  # table -> (columns, INSERT), prepared on first use
        try:
            while True:
                first = self.queue.get()  # blocks until there is work: no idle polling
                if first is not None:
                    self.stopping.wait(FLUSH_SECONDS)  # gather a batch; a shutdown cuts this short
                batch, stop = self._drain(first)
                if batch:
                    self._write(db, inserts, batch)
                if stop:
                    return
        finally:
            db.close()

    def _drain(self, first) -> tuple[dict[str, list[dict[str, Any]]], bool]:
        batch: dict[str, list[dict[str, Any]]] = {}
        item, stop = first, first is None
        while True:
            if item is None:
                stop = True
            else:
                batch.setdefault(item[0], []).append(item[1])
            try:
                item = self.queue.get_nowait()
            except queue.Empty:
                return batch, stop

    def _write(self, db: Database, inserts, batch: dict[str, list[dict[str, Any]]]) -> None:
        count = sum(map(len, batch.values()))
        try:
            with db.conn:
                for table, rows in batch.items():
                    if table not in inserts:
                        columns = list(db[table].columns_dict)
                        inserts[table] = (columns, _insert_sql(table, columns))
                    columns, sql = inserts[table]
                    db.conn.executemany(sql, [tuple(row.get(c) for c in columns) for row in rows])
            self.written += count
        except Exception:  # a bad batch must not kill the writer; say so and go on
            log.exception("tapgate: could not write %d records to %s", count, self.path)


def _insert_sql(table: str, columns: list[str]) -> str:
    names = ", ".join(f"[{c}]" for c in columns)
    return f"INSERT OR REPLACE INTO [{table}] ({names}) VALUES ({', '.join('?' * len(columns))})"


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
            self.writer.stopping.set()
            self.writer.queue.put(None)
            self.writer.join()
            self.writer = None


# Spend per UTC day, key, customer, provider and model: `where date = '2025-06-01' order by cost_usd desc`.
SPEND_BY_DAY_KEY = """
SELECT substr(started_at, 1, 10) AS date, key_id, customer_identifier AS customer, provider, model,
       count(*) AS requests, sum(input_tokens) AS input_tokens, sum(output_tokens) AS output_tokens,
       sum(coalesce(input_tokens, 0) + coalesce(output_tokens, 0)) AS tokens, sum(cost_usd) AS cost_usd
FROM requests
GROUP BY 1, 2, 3, 4, 5
"""

# Latency percentiles of successful calls per UTC day, provider and model, by nearest rank: the
# value at rank ceil(p * n) (window functions, SQLite 3.25+). TTFT is ranked over streams only.
LATENCY_BY_MODEL = """
WITH ranked AS (
  SELECT substr(started_at, 1, 10) AS date, provider, model, duration_ms, ttft_ms,
         row_number() OVER (PARTITION BY substr(started_at, 1, 10), provider, model ORDER BY duration_ms) AS rd,
         count(*) OVER (PARTITION BY substr(started_at, 1, 10), provider, model) AS n,
         row_number() OVER (PARTITION BY substr(started_at, 1, 10), provider, model, ttft_ms IS NULL
                            ORDER BY ttft_ms) AS rt,
         count(ttft_ms) OVER (PARTITION BY substr(started_at, 1, 10), provider, model) AS nt
  FROM requests
  WHERE status = 'ok' AND duration_ms IS NOT NULL
)
SELECT date, provider, model, n AS requests,
       min(CASE WHEN rd >= 0.50 * n THEN duration_ms END) AS p50_ms,
       min(CASE WHEN rd >= 0.95 * n THEN duration_ms END) AS p95_ms,
       min(CASE WHEN rd >= 0.99 * n THEN duration_ms END) AS p99_ms,
       nt AS streams,
       min(CASE WHEN ttft_ms IS NOT NULL AND rt >= 0.50 * nt THEN ttft_ms END) AS ttft_p50_ms,
       min(CASE WHEN ttft_ms IS NOT NULL AND rt >= 0.95 * nt THEN ttft_ms END) AS ttft_p95_ms
FROM ranked
GROUP BY date, provider, model
"""


@migrations()
def m003_dashboard_indexes_and_views(db: Database) -> None:
    # The questions the dashboard and `tapgate logs`/`spend` ask every day: by provider, model, key or
    # status over a time range; spans by request (trace, export, the dashboard's retries).
    for columns in (["provider", "started_at"], ["model", "started_at"], ["key_id", "started_at"],
                    ["status", "started_at"]):
        db["requests"].create_index(columns, if_not_exists=True)
    db["spans"].create_index(["request_id"], if_not_exists=True)
    db.create_view("spend_by_day_key", SPEND_BY_DAY_KEY.strip(), ignore=True)
    db.create_view("latency_by_model", LATENCY_BY_MODEL.strip(), ignore=True)



@migrations()
def m004_keys_budgets_alerts(db: Database) -> None:
    # Gateway keys: only a hash of the secret is kept; `prefix` is enough to recognise it in a list.
    db["keys"].create(
        {
            "id": str,
            "name": str,
            "hash": str,
            "prefix": str,
            "created_at": str,
            "expires_at": str,
            "revoked_at": str,
            "rotated_at": str,
            "models": str,  # JSON list of globs; empty: every model
            "budgets": str,  # JSON list of Budget
            "rate_limit": str,  # JSON RateLimit
            "alerts": str,  # JSON Alerts for this key's budgets, beside the global ones
            "metadata": str,
        },
        pk="id",
    )
    db["keys"].create_index(["hash"], unique=True)
    # Where each budget stands, rewritten by the gateway every few seconds, for `top` and Datasette.
    db["budgets"].create(
        {
            "id": str,  # scope:scope_id:budget label
            "name": str,
            "scope": str,  # key, customer or global
            "scope_id": str,
            "unit": str,
            "period": str,
            "period_start": str,
            "resets_at": str,
            "spent": float,
            "reserved": float,
            "cap": float,
            "updated_at": str,
        },
        pk="id",
    )
    # One row per threshold crossed per period: the primary key is what makes an alert happen once,
    # across restarts; sent_at stays NULL until a delivery succeeded.
    db["alerts"].create(
        {
            "id": str,  # scope:scope_id:budget:threshold:period_start
            "created_at": str,
            "scope": str,
            "scope_id": str,
            "budget": str,
            "unit": str,
            "threshold": float,
            "cap": float,
            "spent": float,
            "period_start": str,
            "resets_at": str,
            "message": str,
            "channels": str,  # JSON list of channel names still to deliver to
            "sent_at": str,
            "attempts": int,
            "last_error": str,
        },
        pk="id",
    )


@migrations()
def m005_router_columns(db: Database) -> None:
    # Router calls (mode "router"): the deployment that answered ("anthropic/claude-sonnet-4-5") and
    # how many attempts it took, retries and fallbacks included; NULL for passthrough calls.
    db["requests"].add_column("routed_to", str)
    db["requests"].add_column("attempts", int)


@migrations()
def m006_key_downgrade(db: Database) -> None:
    # Per key: model downgrade rules for router calls as a budget nears its end (JSON list of Downgrade).
    db["keys"].add_column("downgrade", str)


@migrations()
def m007_response_cache(db: Database) -> None:
    # A call answered from the response cache: cost_usd 0 and what it would have cost in cost_saved_usd.
    db["requests"].add_column("cache_hit", int)  # NULL: the cache was not consulted; 0 a miss; 1 a hit
    db["requests"].add_column("cost_saved_usd", float)
    # Cache entries kept across restarts (cache.persist); the gateway loads the unexpired ones at start.
    db["cache_entries"].create(
        {"key": str, "expires_at": float, "stream": int, "content_type": str, "body": bytes, "meta": str},
        pk="key",
    )


def read_cache_entries(path: str | Path, now: float) -> list[dict[str, Any]]:
    """Unexpired cache entries kept by an earlier run (read once at start, never on the hot path)."""
    db = open_db(Path(path).expanduser())
    try:
        db.execute("DELETE FROM cache_entries WHERE expires_at <= ?", [now])
        db.conn.commit()
        return list(db["cache_entries"].rows_where("expires_at > ?", [now]))
    finally:
        db.close()
