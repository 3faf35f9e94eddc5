"""The CLI's edits on PostgreSQL (keys, prompts, datasets, scores): the few sqlite-utils calls the
edit commands make (`db["keys"].insert`, `.update`, `.get`, `.rows_where`, `db.execute`...), over
core/pg/reading.py's connection, so `tapgate keys create` is the same code on either store. A clash
on a primary key raises sqlite3.IntegrityError and a missing row sqlite-utils' NotFoundError, as the
callers already expect."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import Any

import psycopg
from sqlite_utils.db import NotFoundError

from core.pg import functions, schema
from core.pg.reading import Connection, Cursor, open_raw


def primary_keys() -> dict[str, list[str]]:
    return {t.name: [c for c in t.pk if t.name not in schema.PARTITIONED or c != schema.PARTITIONED[t.name]]
            for t in schema.sqlite_shape().tables}


class Table:
    def __init__(self, db: Database, name: str) -> None:
        self.db, self.name = db, name
        self.pk = primary_keys().get(name, ["id"])

    def insert(self, row: dict[str, Any], replace: bool = False) -> None:
        self.insert_all([row], replace=replace)

    def insert_all(self, rows: Iterable[dict[str, Any]], replace: bool = False, batch_size: int = 500) -> None:
        for columns, values in _batches(rows, batch_size):
            names = ", ".join(f'"{c}"' for c in columns)
            marks = ", ".join("(" + ", ".join("?" * len(columns)) + ")" for _ in values)
            sql = f'INSERT INTO "{self.name}" ({names}) VALUES {marks}'
            if replace:
                keys = ", ".join(f'"{c}"' for c in self.pk)
                rest = [c for c in columns if c not in self.pk]
                sets = ", ".join(f'"{c}" = excluded."{c}"' for c in rest)
                sql += f" ON CONFLICT ({keys}) " + (f"DO UPDATE SET {sets}" if rest else "DO NOTHING")
            self.db.execute(sql, [v for row in values for v in row])

    def update(self, pk: Any, updates: dict[str, Any]) -> None:
        sets = ", ".join(f'"{c}" = ?' for c in updates)
        done = self.db.execute(f'UPDATE "{self.name}" SET {sets} WHERE "{self.pk[0]}" = ?', [*updates.values(), pk])
        if done.rowcount == 0:
            raise NotFoundError(f"no {self.name} row {pk!r}")

    def get(self, pk: Any) -> dict[str, Any]:
        row = self.db.execute(f'SELECT * FROM "{self.name}" WHERE "{self.pk[0]}" = ?', [pk]).fetchone()
        if row is None:
            raise NotFoundError(f"no {self.name} row {pk!r}")
        return dict(row)

    def rows_where(self, where: str | None = None, where_args: Iterable[Any] | None = None,
                   order_by: str | None = None) -> Iterator[dict[str, Any]]:
        sql = f'SELECT * FROM "{self.name}"' + (f" WHERE {where}" if where else "")
        sql += f" ORDER BY {order_by}" if order_by else ""
        return (dict(r) for r in self.db.execute(sql, list(where_args or ())))

    def count_where(self, where: str, where_args: Iterable[Any] | None = None) -> int:
        return self.db.execute(f'SELECT count(*) FROM "{self.name}" WHERE {where}', list(where_args or ())).fetchone()[0]


def _batches(rows: Iterable[dict[str, Any]], size: int) -> Iterator[tuple[list[str], list[list[Any]]]]:
    """Rows in batches of one column list each (a new batch where the columns change)."""
    columns: list[str] | None = None
    batch: list[list[Any]] = []
    for row in rows:
        if columns is not None and (list(row) != columns or len(batch) >= size):
            yield columns, batch
            batch = []
        columns = list(row)
        batch.append(list(row.values()))
    if batch:
        yield columns, batch


class Database:
    """`with db.conn:` runs its block in one transaction, as with sqlite3."""

    def __init__(self, url: str) -> None:
        raw = open_raw(url)
        try:
            schema.install(raw)
            functions.install(raw)
        except psycopg.Error:
            raw.close()
            raise
        self._conn = Connection(raw, url)
        self.conn = self

    def __getitem__(self, name: str) -> Table:
        return Table(self, name)

    def execute(self, sql: str, params: Iterable[Any] | None = None) -> Cursor:
        try:
            return self._conn.execute(sql, list(params or ()))
        except psycopg.IntegrityError as e:
            raise sqlite3.IntegrityError(str(e)) from None

    def query(self, sql: str, params: Iterable[Any] | None = None) -> Iterator[dict[str, Any]]:
        return (dict(r) for r in self.execute(sql, params))

    @contextmanager
    def _transaction(self):
        with self._conn.raw.transaction():
            yield self

    def __enter__(self):
        self._block = self._transaction()
        return self._block.__enter__()

    def __exit__(self, *exc) -> bool | None:
        return self._block.__exit__(*exc)

    def commit(self) -> None:
        """Statements outside `with db.conn:` are committed as they run (autocommit)."""

    def close(self) -> None:
        self._conn.close()


def open_db(url: str) -> Database:
    """The store at `url` for editing, its schema and functions installed if need be (raises
    StoreUnreachable, naming host and port, when PostgreSQL does not answer)."""
    return Database(url)
