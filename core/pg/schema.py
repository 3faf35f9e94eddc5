"""The PostgreSQL store's schema (`tapgate_postgres`): the SQLite store's tables, columns and indexes
(core/schema.py), so every reader asks both stores the same questions and gets the same answers.

It is derived from the SQLite migrations instead of being written a second time: each SQLite
migration that PostgreSQL has not seen yet is applied by creating what is missing (tables, columns,
indexes, views), then recorded in `tapgate_migrations`. The migrations only ever add, so this is
exact. The calls table (`requests`) is partitioned by the UTC day of `started_at` (text in the
store's format, so a day's bounds compare as text), and retention drops whole partitions."""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import date, timedelta
from functools import cache

from sqlite_utils import Database

TYPES = {"TEXT": "text", "REAL": "double precision", "FLOAT": "double precision", "INTEGER": "bigint",
         "BLOB": "bytea"}
PARTITIONED = {"requests": "started_at"}  # table -> the column its daily partitions range over
LOCK = 0x7461_7067  # pg_advisory_xact_lock key: one process at a time changes the schema or partitions
PARTITION = re.compile(r"^requests_p(\d{8})$")


@dataclass
class Table:
    name: str
    columns: list[tuple[str, str, bool, str | None]]  # name, PostgreSQL type, not null, default
    pk: list[str]
    indexes: list[tuple[str, list[str], bool]] = field(default_factory=list)  # name, columns, unique


@dataclass
class Shape:
    migrations: list[str]
    tables: list[Table]
    views: list[tuple[str, str]]  # name, SELECT


@cache
def sqlite_shape() -> Shape:
    """The SQLite store's tables as its migrations leave them, read from an in-memory store."""
    from core.schema import migrations

    db = Database(memory=True)
    migrations.apply(db)
    names = [r[0] for r in db.execute("SELECT name FROM _sqlite_migrations ORDER BY id")]
    tables = []
    for t in db.tables:
        if t.name.startswith("_"):
            continue
        columns = [(c.name, TYPES.get(c.type.upper(), "text"), bool(c.notnull), c.default_value) for c in t.columns]
        pk = list(t.pks) + [PARTITIONED[t.name]] if t.name in PARTITIONED else list(t.pks)
        indexes = [(i.name, list(i.columns), bool(i.unique)) for i in t.indexes
                   if not i.name.startswith("sqlite_autoindex")]
        tables.append(Table(t.name, columns, pk, indexes))
    views = [(v.name, db.execute("SELECT sql FROM sqlite_master WHERE name = ?", [v.name]).fetchone()[0])
             for v in db.views]
    views = [(name, sql.split(" AS ", 1)[1].strip()) for name, sql in views]
    db.close()
    return Shape(names, tables, views)


def _column(name: str, kind: str, notnull: bool, default: str | None) -> str:
    sql = f'"{name}" {kind}'
    if default is not None:
        sql += f" DEFAULT {default}"
    return sql + (" NOT NULL" if notnull else "")


def _create(conn, table: Table) -> None:
    columns = ", ".join(_column(*c) for c in table.columns)
    pk = ", ".join(f'"{c}"' for c in table.pk)
    if table.name in PARTITIONED:
        conn.execute(f'CREATE TABLE IF NOT EXISTS "{table.name}" ({columns}, PRIMARY KEY ({pk})) '
                     f'PARTITION BY RANGE ("{PARTITIONED[table.name]}")')
        # Rows whose day has no partition yet (the writer makes one before it writes a day's rows).
        conn.execute(f'CREATE TABLE IF NOT EXISTS "{table.name}_default" PARTITION OF "{table.name}" DEFAULT')
    else:
        conn.execute(f'CREATE TABLE IF NOT EXISTS "{table.name}" ({columns}, PRIMARY KEY ({pk}))')
    for column in table.columns:
        conn.execute(f'ALTER TABLE "{table.name}" ADD COLUMN IF NOT EXISTS {_column(*column)}')
    for name, columns, unique in table.indexes:
        cols = ", ".join(f'"{c}"' for c in columns)
        conn.execute(f'CREATE {"UNIQUE " if unique else ""}INDEX IF NOT EXISTS "{name}" ON "{table.name}" ({cols})')


def install(conn) -> list[str]:
    """Bring a PostgreSQL database to the SQLite store's shape (psycopg 3 connection); returns the
    migrations it applied. Safe for several processes starting at once (an advisory lock)."""
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(%s)", (LOCK,))
        conn.execute("CREATE TABLE IF NOT EXISTS tapgate_migrations "
                     "(name text PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now())")
        applied = {r[0] for r in conn.execute("SELECT name FROM tapgate_migrations")}
        shape = sqlite_shape()
        pending = [m for m in shape.migrations if m not in applied]
        if not pending:
            return []
        for table in shape.tables:
            _create(conn, table)
        for name, select in shape.views:
            conn.execute(f'CREATE OR REPLACE VIEW "{name}" AS {select}')
        with conn.cursor() as cur:
            cur.executemany("INSERT INTO tapgate_migrations (name) VALUES (%s) ON CONFLICT DO NOTHING",
                            [(m,) for m in pending])
    return pending


def partition_name(day: date) -> str:
    return f"requests_p{day:%Y%m%d}"


def ensure_partitions(conn, days: Iterable[date]) -> list[str]:
    """A partition of `requests` for each day (in the caller's transaction); returns those created.
    Rows of that day already in the default partition are moved into it."""
    have = set(partitions(conn))
    created = []
    for day in sorted(set(days)):
        name = partition_name(day)
        if name in have:
            continue
        conn.execute("SELECT pg_advisory_xact_lock(%s)", (LOCK,))
        if name in set(partitions(conn)):  # another process made it while this one waited
            continue
        low, high = day.isoformat(), (day + timedelta(days=1)).isoformat()
        # A default partition holding rows of the new range would refuse it: move them across.
        conn.execute("CREATE TEMP TABLE IF NOT EXISTS tapgate_moving (LIKE requests) ON COMMIT DROP")
        conn.execute("WITH moved AS (DELETE FROM requests_default WHERE started_at >= %s AND started_at < %s "
                     "RETURNING *) INSERT INTO tapgate_moving SELECT * FROM moved", (low, high))
        # DDL takes no parameters; both bounds are dates this function formatted.
        conn.execute(f"CREATE TABLE \"{name}\" PARTITION OF requests FOR VALUES FROM ('{low}') TO ('{high}')")
        conn.execute("INSERT INTO requests SELECT * FROM tapgate_moving")
        conn.execute("DELETE FROM tapgate_moving")
        created.append(name)
    return created


def partitions(conn) -> list[str]:
    """The day partitions of `requests`, oldest first."""
    rows = conn.execute("SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
                        "JOIN pg_class p ON p.oid = i.inhparent WHERE p.relname = 'requests'").fetchall()
    return sorted(r[0] for r in rows if PARTITION.match(r[0]))


def partitions_before(conn, day: date) -> list[str]:
    """The day partitions of calls older than `day` (whole days), oldest first."""
    return [name for name in partitions(conn) if PARTITION.match(name).group(1) < f"{day:%Y%m%d}"]


def drop_partitions_before(conn, day: date) -> list[str]:
    """Retention: drop the day partitions of calls older than `day` (whole days); returns their names."""
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(%s)", (LOCK,))
        dropped = partitions_before(conn, day)
        for name in dropped:
            conn.execute(f'DROP TABLE "{name}"')
    return dropped
