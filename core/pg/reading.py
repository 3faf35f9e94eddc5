"""Reading PostgreSQL as the store: a small adapter over psycopg that looks like the sqlite3
connection the readers already use (execute with `?` marks, rows by name and position), so each of the
store's queries is written once, in SQLite's dialect, and means the same on both stores.

What it translates (the rest is the functions of core/pg/functions.py, installed on first use):
`?` and `?N` marks, `IS NOT x` (IS DISTINCT FROM), LIKE (ASCII case-insensitive in SQLite: ILIKE),
`GROUP BY +column` (SQLite's hint not to use an index), BEGIN (one consistent snapshot, as a SQLite
read transaction gives). Values are bound client-side as quoted text literals, so PostgreSQL types
each from where it stands, as SQLite's loose typing would take it."""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from decimal import Decimal
from typing import Any

import psycopg
from psycopg import ClientCursor
from psycopg.adapt import Dumper, Loader
from psycopg.conninfo import conninfo_to_dict

from core.secrets import redact_password

SCHEMES = ("postgresql://", "postgres://")
CONNECT_TIMEOUT = 5


def is_url(location: object) -> bool:
    return isinstance(location, str) and location.startswith(SCHEMES)


def where(url: str) -> str:
    """host:port/dbname, for one-line errors (never the password)."""
    try:
        info = conninfo_to_dict(url)
    except psycopg.ProgrammingError:
        return redact_password(url)
    return f"{info.get('host') or 'localhost'}:{info.get('port') or 5432}/{info.get('dbname') or ''}"


class StoreUnreachable(Exception):
    """PostgreSQL did not answer; the message names host, port and database only."""


# -- values in and out ------------------------------------------------------------------------------


class TextDumper(Dumper):
    """A number or boolean as a quoted literal: `'5'` is typed by where it stands (a LIMIT, a bigint
    column, text returned by json_extract), as SQLite compares 5 and '5' where the column says."""

    def dump(self, obj: Any) -> bytes:
        return str(int(obj) if isinstance(obj, bool) else obj).encode()

    def quote(self, obj: Any) -> bytes:
        return b"'" + self.dump(obj) + b"'"


class NumberLoader(Loader):
    """numeric (what sum() of integers gives) as int when whole, else float: as SQLite returns it."""

    def load(self, data) -> int | float:
        value = Decimal(bytes(data).decode())
        return int(value) if value == value.to_integral_value() else float(value)


class Row:
    """A row by name or by position, like sqlite3.Row; dict(row) works the same."""

    __slots__ = ("_names", "_values")

    def __init__(self, names: tuple[str, ...], values: tuple) -> None:
        self._names, self._values = names, values

    def keys(self) -> list[str]:
        return list(self._names)

    def __getitem__(self, item: int | str) -> Any:
        if isinstance(item, str):
            return self._values[self._names.index(item)]
        return self._values[item]

    def __iter__(self) -> Iterator[Any]:
        return iter(self._values)

    def __len__(self) -> int:
        return len(self._values)

    def __eq__(self, other: object) -> bool:
        return tuple(self) == tuple(other) if isinstance(other, (Row, tuple)) else NotImplemented

    def __repr__(self) -> str:
        return f"Row({dict(zip(self._names, self._values, strict=True))!r})"


def row_factory(cursor) -> Any:
    """Rows as Row; a column named rowid is dropped, as SELECT * never shows SQLite's rowid."""
    if cursor.description is None:
        return lambda values: values
    names = tuple(c.name for c in cursor.description)
    hidden = names.index("rowid") if "rowid" in names else None
    if hidden is None:
        return lambda values: Row(names, values)
    kept = names[:hidden] + names[hidden + 1:]
    return lambda values: Row(kept, values[:hidden] + values[hidden + 1:])


# -- SQLite's dialect to PostgreSQL's ---------------------------------------------------------------

TOKENS = re.compile(r"'(?:[^']|'')*'|\"(?:[^\"]|\"\")*\"|\?(\d*)|%|[^'\"?%]+", re.S)
REWRITES = [
    (re.compile(r"\bIS NOT (?!NULL\b|DISTINCT\b|TRUE\b|FALSE\b)", re.I), "IS DISTINCT FROM "),
    (re.compile(r"\bNOT LIKE\b", re.I), "NOT ILIKE"),
    (re.compile(r"(?<!NOT )\bLIKE\b", re.I), "ILIKE"),
    (re.compile(r"(?<=\bBY )\+|(?<=, )\+(?=[A-Za-z_])"), ""),
    (re.compile(r"^\s*BEGIN\s*$", re.I), "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY"),
]


def translate(sql: str, params: Sequence[Any] | None) -> tuple[str, list[Any]]:
    """The statement with psycopg's `%s` marks and its parameters in their order (`?N` repeats one)."""
    given = list(params or ())
    out, ordered, position = [], [], 0
    for m in TOKENS.finditer(sql):
        token = m.group(0)
        if token == "%":
            out.append("%%")
        elif token.startswith("?"):
            if m.group(1):
                ordered.append(given[int(m.group(1)) - 1])
            else:
                ordered.append(given[position])
                position += 1
            out.append("%s")
        elif token[0] in "'\"":
            out.append(token.replace("%", "%%"))
        else:
            for pattern, replacement in REWRITES:
                token = pattern.sub(replacement, token)
            out.append(token)
    return "".join(out), ordered


# -- the connection --------------------------------------------------------------------------------


class Cursor:
    def __init__(self, cursor: ClientCursor) -> None:
        self._cursor = cursor

    def fetchone(self) -> Row | None:
        return self._cursor.fetchone() if self._cursor.description is not None else None

    def fetchall(self) -> list[Row]:
        return self._cursor.fetchall() if self._cursor.description is not None else []

    def fetchmany(self, size: int) -> list[Row]:
        return self._cursor.fetchmany(size) if self._cursor.description is not None else []

    def __iter__(self) -> Iterator[Row]:
        return iter(self.fetchall())

    @property
    def rowcount(self) -> int:
        return self._cursor.rowcount


class Connection:
    """sqlite3.Connection's reading surface over one psycopg connection in autocommit."""

    postgres = True

    def __init__(self, conn: psycopg.Connection, url: str) -> None:
        self.raw, self.url = conn, url

    def execute(self, sql: str, params: Sequence[Any] | None = None) -> Cursor:
        text, values = translate(sql, params)
        if text.strip().upper() == "COMMIT" and self.raw.info.transaction_status == 0:
            return Cursor(self.raw.cursor())  # nothing began (BEGIN failed, or was not asked)
        cursor = self.raw.cursor()
        cursor.execute(text, values or None)
        return Cursor(cursor)

    def has_table(self, table: str) -> bool:
        return self.raw.execute("SELECT to_regclass(%s) IS NOT NULL", (table,)).fetchone()[0]

    def columns(self, table: str) -> list[str]:
        """A table's columns in order (SQLite's rowid is none of them)."""
        rows = self.raw.execute("SELECT column_name FROM information_schema.columns WHERE table_schema = "
                                "current_schema() AND table_name = %s ORDER BY ordinal_position", (table,))
        return [r[0] for r in rows if r[0] != "rowid"]

    def close(self) -> None:
        self.raw.close()

    def __enter__(self) -> Connection:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def open_raw(url: str) -> psycopg.Connection:
    """A psycopg connection in autocommit that binds values as text and loads sums as numbers."""
    try:
        conn = psycopg.connect(url, autocommit=True, connect_timeout=CONNECT_TIMEOUT, cursor_factory=ClientCursor,
                               row_factory=row_factory)
    except psycopg.OperationalError as e:
        reason = str(e).strip().splitlines()[0].strip() if str(e).strip() else type(e).__name__
        raise StoreUnreachable(f"cannot reach PostgreSQL at {where(url)}: {redact_password(reason)}") from None
    for kind in (int, float, bool):
        conn.adapters.register_dumper(kind, TextDumper)
    conn.adapters.register_loader("numeric", NumberLoader)
    return conn


def connect(url: str) -> Connection:
    """The store at `url`, read as SQLite is; its functions installed if they are missing, and its
    tables if it has none yet (a new database reads as an empty store, as a new file does)."""
    from core.pg import functions, schema

    conn = open_raw(url)
    try:
        if not conn.execute("SELECT to_regclass('requests') IS NOT NULL").fetchone()[0]:
            schema.install(conn)
        functions.install(conn)
    except psycopg.Error:
        conn.close()
        raise
    return Connection(conn, url)
