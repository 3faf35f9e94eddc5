"""Reading the store: where it is by default, a read-only connection, its timestamp format, and the
reads the gateway makes at start. Plain sqlite3, so `tapgate logs` starts without sqlite-utils or
mitmproxy; the schema and writing are in core/schema.py. A `postgresql://` URL instead of a path reads
PostgreSQL through core/pg/reading.py, which takes the same SQL: every reader has one code path."""

from __future__ import annotations

import os
import sqlite3
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

DEFAULT_DB = "~/.tapgate/tapgate.db"
ENV_DB = "TAPGATE_DB"  # the `tapgate` commands' store when --db is not given: a path or a postgresql:// URL


class StoreError(Exception):
    """A store that cannot be read, or a question it cannot answer; the message is for the user."""


def default_db() -> str:
    return os.environ.get(ENV_DB) or DEFAULT_DB


def is_postgres(location: object) -> bool:
    return isinstance(location, str) and location.startswith(("postgresql://", "postgres://"))


def location(db: str, postgres: str = "") -> str | Path:
    """The store a gateway reads: PostgreSQL when `tapgate_postgres` names one, else the SQLite file."""
    return postgres if postgres else Path(db).expanduser()


def shown(location: str | Path) -> str:
    """A store's location for messages and logs: a URL without its password."""
    if isinstance(location, str) and "://" in location:
        from core.secrets import redact_password

        return redact_password(location)
    return str(location)


def connect(path: str | Path) -> Any:
    """Read-only (mode=ro) and in autocommit: a reader never takes the write lock, and in WAL mode
    the gateway's writer never waits for it. A postgresql:// URL: core/pg/reading.py's connection,
    which answers the same SQL (StoreError naming host and port when PostgreSQL is unreachable)."""
    if is_postgres(path):
        from core.pg.reading import StoreUnreachable
        from core.pg.reading import connect as pg_connect

        try:
            return pg_connect(str(path))
        except StoreUnreachable as e:
            raise StoreError(str(e)) from None
    path = Path(path).expanduser()
    if not path.is_file():
        raise StoreError(f"no store at {path} (start the gateway, or pass --db)")
    conn = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True, timeout=5, isolation_level=None)
    conn.row_factory = sqlite3.Row
    return conn


def open_for_edit(location: str | Path) -> Any:
    """The store for the CLI's edits (keys, prompts, datasets, scores), created and migrated if need
    be: a sqlite-utils Database, or core/pg/editing.py's look-alike for a postgresql:// URL."""
    if is_postgres(location):
        from core.pg.editing import open_db as open_pg
        from core.pg.reading import StoreUnreachable

        try:
            return open_pg(str(location))
        except StoreUnreachable as e:
            raise StoreError(str(e)) from None
    from core.schema import open_db

    return open_db(Path(location).expanduser())


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


def has_table(conn: Any, table: str) -> bool:
    if getattr(conn, "postgres", False):
        return conn.has_table(table)
    sql = "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?"
    return conn.execute(sql, (table,)).fetchone() is not None


def columns(conn: Any, table: str) -> list[str]:
    """A table's column names (none when it does not exist)."""
    if getattr(conn, "postgres", False):
        return conn.columns(table)
    return [r[1] for r in conn.execute(f"PRAGMA table_info({table})")]


def read_errors() -> tuple[type[Exception], ...]:
    """What a read of either store raises when the table or server is not there (yet)."""
    try:
        import psycopg
    except ImportError:
        return (sqlite3.Error, StoreError)
    return (sqlite3.Error, StoreError, psycopg.Error)


def budget_ids(conn: sqlite3.Connection) -> list[str]:
    """Every row of the budgets table an earlier run wrote, capped or not, so the first snapshot
    retires those no longer in force."""
    if not has_table(conn, "budgets"):
        return []
    return [row[0] for row in conn.execute("SELECT id FROM budgets")]
