"""Reading the store: where it is by default, a read-only connection, its timestamp format, and the
reads the gateway makes at start. Plain sqlite3, so `tapgate logs` starts without sqlite-utils or
mitmproxy; the schema and writing are in core/schema.py."""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime
from pathlib import Path

DEFAULT_DB = "~/.tapgate/tapgate.db"


class StoreError(Exception):
    """A store that cannot be read, or a question it cannot answer; the message is for the user."""


def connect(path: str | Path) -> sqlite3.Connection:
    """Read-only (mode=ro) and in autocommit: a reader never takes the write lock, and in WAL mode
    the gateway's writer never waits for it."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise StoreError(f"no store at {path} (start the gateway, or pass --db)")
    conn = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True, timeout=5, isolation_level=None)
    conn.row_factory = sqlite3.Row
    return conn


def iso(when: datetime) -> str:
    """The store's timestamp format (UTC, milliseconds, Z), so bounds compare as text."""
    return when.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def spend_by_scope(conn: sqlite3.Connection, since: str) -> list[sqlite3.Row]:
    """Settled spend since a time by key and customer, for the ledger to start from. Calls the
    gateway refused never went upstream and count for nothing."""
    return conn.execute(
        "SELECT key_id, customer_identifier, sum(cost_usd) AS usd,"
        " sum(coalesce(input_tokens, 0) + coalesce(output_tokens, 0)) AS tokens, count(*) AS requests"
        " FROM requests WHERE started_at >= ? AND status IS NOT 'refused'"
        " GROUP BY key_id, customer_identifier",
        (since,),
    ).fetchall()


def has_table(conn: sqlite3.Connection, table: str) -> bool:
    sql = "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?"
    return conn.execute(sql, (table,)).fetchone() is not None


def budget_ids(conn: sqlite3.Connection) -> list[str]:
    """Every row of the budgets table an earlier run wrote, capped or not, so the first snapshot
    retires those no longer in force."""
    if not has_table(conn, "budgets"):
        return []
    return [row[0] for row in conn.execute("SELECT id FROM budgets")]
