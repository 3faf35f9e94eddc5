"""Journal lines into PostgreSQL: per table in a batch, ONE statement over the whole batch, as the
SQLite writer does (core/writer.py). The batch travels as one JSON array; PostgreSQL splits it
(jsonb_array_elements), so the writer thread's Python work stays a few C calls per batch.

Idempotent: `ON CONFLICT (primary key) DO UPDATE`, the last line for a key winning (what SQLite's
INSERT OR REPLACE does), so a journal segment replayed after a crash never duplicates a row."""

from __future__ import annotations

import json
from typing import Any

import psycopg

from core.pg.schema import Table, sqlite_shape
from core.writer import lines_by_table

# Errors of a batch's data (not of the connection): the batch is then written line by line.
DATA_ERRORS = (psycopg.DataError, psycopg.IntegrityError, psycopg.ProgrammingError, psycopg.InternalError,
               UnicodeDecodeError, ValueError)


def _value(column: str, kind: str) -> str:
    """The SQL that reads one column of a journal row (`v`) as its PostgreSQL type. Booleans are
    numbers, as SQLite stores them; bytes travel hex-encoded (core/store.py)."""
    field = f"v->'{column}'"
    text = f"(v->>'{column}')"
    if kind == "bytea":
        return f"decode({text}, 'hex')"
    if kind in ("bigint", "double precision"):
        number = f"round({text}::numeric)::bigint" if kind == "bigint" else f"{text}::double precision"
        return (f"CASE jsonb_typeof({field}) WHEN 'boolean' THEN ({text}::boolean)::int::{kind} "
                f"WHEN 'null' THEN NULL ELSE {number} END")
    return text


def statement(table: Table) -> str:
    """INSERT ... SELECT over the batch's lines naming `table` (parameters: the batch, the table's name)."""
    names = [c[0] for c in table.columns]
    values = []
    for name, kind, notnull, default in table.columns:
        value = _value(name, kind)
        if notnull and default is not None:  # SQLite's REPLACE puts the default where NULL came
            value = f"coalesce({value}, {default})"
        values.append(f'{value} AS "{name}"')
    quoted = ", ".join(f'"{n}"' for n in names)
    pk = ", ".join(f'"{c}"' for c in table.pk)
    rest = [n for n in names if n not in table.pk]
    update = ("DO UPDATE SET " + ", ".join(f'"{n}" = EXCLUDED."{n}"' for n in rest)) if rest else "DO NOTHING"
    return (f'INSERT INTO "{table.name}" ({quoted}) '
            f"SELECT DISTINCT ON ({pk}) {quoted} FROM ("
            f"SELECT {', '.join(values)}, n FROM jsonb_array_elements(%s::jsonb) WITH ORDINALITY AS b(e, n), "
            f"LATERAL (SELECT e->1 AS v) r WHERE e->>0 = %s) rows "
            f"ORDER BY {pk}, n DESC "  # the last line for a key wins, as in the journal's order
            f"ON CONFLICT ({pk}) {update}")


def _strip_nul(value: Any) -> Any:
    """PostgreSQL's text and jsonb cannot hold U+0000 (a prompt may): dropped from one record's strings."""
    if isinstance(value, str):
        return value.replace("\x00", "")
    if isinstance(value, list):
        return [_strip_nul(v) for v in value]
    if isinstance(value, dict):
        return {k: _strip_nul(v) for k, v in value.items()}
    return value


class Batches:
    """Whole journal lines into the PostgreSQL tables, in the caller's connection."""

    def __init__(self) -> None:
        self.tables = {t.name: t for t in sqlite_shape().tables}
        self.sql = {name: statement(t) for name, t in self.tables.items()}

    def insert(self, conn: psycopg.Connection, data: bytes) -> int:
        """Whole lines in one transaction; raises what PostgreSQL raised, having written nothing.
        Returns the records written."""
        by_table = lines_by_table(data, self.tables)  # PostgreSQL parses each line once, not once per table
        with conn.transaction():
            for table, rows in by_table.items():
                doc = (b"[" + b",".join(rows) + b"]").decode()
                # Not prepared: a pooler in transaction mode (PgBouncer) would lose named statements.
                conn.execute(self.sql[table], (doc, table), prepare=False)
        return sum(len(rows) for rows in by_table.values())

    def insert_each(self, conn: psycopg.Connection, data: bytes) -> list[tuple[bytes, Exception]]:
        """A batch that failed as a whole, one line at a time (U+0000 dropped from a line that needs it):
        the lines that still fail, with why. Connection errors are raised."""
        bad = []
        for line in data.splitlines(keepends=True):
            try:
                self.insert(conn, line)
            except DATA_ERRORS as e:
                try:
                    table, row = json.loads(line)
                    fixed = json.dumps([table, _strip_nul(row)], separators=(",", ":")).encode() + b"\n"
                    if fixed == line:
                        raise e
                    self.insert(conn, fixed)
                except DATA_ERRORS as why:
                    bad.append((line, why))
        return bad
