"""Storage: the open database file, its journal and its writer thread, which keep hooks off SQLite
(or off PostgreSQL, with `tapgate_postgres`: core/pg/writer.py). The schema is in core/schema.py,
plain reads in core/database.py."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any, Protocol

import orjson

from core.journal import Journal, journal_dir, private_dir
from core.schema import install_salt, open_db
from core.writer import Writer, replay

log = logging.getLogger(__name__)


def _hex(value: Any) -> str:
    """json.dumps' fallback: bytes (cache bodies) as hex, decoded by the writer's SQL."""
    if isinstance(value, (bytes, bytearray, memoryview)):
        return bytes(value).hex()
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


def journal_line(table: str, row: dict[str, Any]) -> bytes:
    """`["table",{row}]` and a newline. orjson writes it in a tenth of json.dumps' time on the event
    loop; what orjson refuses (integers past 64 bits, keys that are not strings, lone surrogates)
    json.dumps writes as before. orjson writes non-ASCII as UTF-8 and NaN as null, both of which
    SQLite's JSON functions read (json.dumps' NaN made the whole record unreadable)."""
    try:
        body = orjson.dumps(row, default=_hex)
    except TypeError:  # orjson.JSONEncodeError
        body = json.dumps(row, separators=(",", ":"), default=_hex).encode()
    return b'["%s",%s]\n' % (table.encode(), body)


class Rows(Protocol):
    """Where the core's rows go (Storage, or a list in a test): journalled, never waiting on SQLite."""

    def add(self, table: str, row: dict[str, Any]) -> None: ...

    def add_all(self, records: list[tuple[str, dict[str, Any]]]) -> None: ...


class Storage:
    """The database file, its journal and its writer thread.

    `add` appends the record to the journal (one `os.write`, on the caller's thread) and returns: a
    call is recorded before its answer completes, and survives a crash of the process from then on.
    `open` first commits what a dead gateway left in the journal; `close` commits the rest."""

    def __init__(self) -> None:
        self.writer: Writer | None = None
        self.journal: Journal | None = None
        self.salt = ""
        self._failing = False
        self._full = False
        self.max_journal_bytes = 0  # 0: unbounded; past it, rows are counted as dropped (tapgate_journal_max_mb)
        # Functions whose dicts join the writer's status file (the online scorer's backlog).
        self.status_sources: list = []

    def open(self, path: Path, postgres: str = "", retention_days: int = 0) -> None:
        """Use the file at `path` from now on, or with `postgres` (a URL) PostgreSQL, the journal
        still beside `path`. Raises (and the store in use, if any, stays in use) when it cannot be opened."""
        db = open_db(path)  # with PostgreSQL too: the file's readers (keys, prompts, alerts) find a store
        try:
            salt = install_salt(db)
            if not postgres:
                replay(path, db, journal_dir(path))
        finally:
            db.close()
        if postgres:
            from core.pg.writer import PgWriter, open_salt

            private_dir(journal_dir(path))
            salt = open_salt(postgres, journal_dir(path) / "postgres-salt")
        journal = Journal(journal_dir(path))
        self.close()
        self.salt, self.journal = salt, journal
        self.writer = (PgWriter(postgres, journal, salt, retention_days) if postgres
                       else Writer(path, journal, open_db, salt))
        self.writer.status_sources = self.status_sources
        self.writer.start()

    def add(self, table: str, row: dict[str, Any]) -> None:
        """Journal a row; never waits on SQLite."""
        self.add_all([(table, row)])

    def add_all(self, records: list[tuple[str, dict[str, Any]]]) -> None:
        """Journal rows in one write (a call's row and its spans)."""
        if self.writer is None:
            return
        data = b"".join(journal_line(table, row) for table, row in records)
        if self.max_journal_bytes and self.writer.pending()[1] + len(data) > self.max_journal_bytes:
            self._dropped(len(records))
            return
        if self._full:
            self._full = False
            log.warning("tapgate: the journal has room again; %d records were dropped while it was full",
                        self.writer.dropped)
        try:
            self.journal.append(data, len(records))
        except OSError as e:
            try:  # the journal's directory went away, or its file system is full: one fresh try
                self.journal.reopen()
                self.journal.append(data, len(records))
            except OSError:
                self.writer.lost += len(records)
                if not self._failing:
                    log.error("tapgate: cannot append to the journal in %s (%s): calls are not being recorded",
                              self.journal.directory, e)
                self._failing = True
                return
        self._failing = False
        if not self.writer.wake.is_set():
            self.writer.wake.set()

    def _dropped(self, records: int) -> None:
        """The journal holds max_journal_bytes not yet committed (the store down for long): drop, loudly."""
        self.writer.dropped += records
        self.writer.lost += records
        if not self._full:
            log.error("tapgate: the journal in %s is full (%d MB waiting for %s, the bound set by "
                      "tapgate_journal_max_mb): calls are NOT recorded until the store takes rows again",
                      self.journal.directory, self.max_journal_bytes // 2**20, self.writer.path)
        self._full = True

    def close(self) -> None:
        """Stop the writer once it has committed everything journalled."""
        if self.writer is not None:
            self.writer.stopping.set()
            self.writer.wake.set()
            self.writer.join()
            self.writer = None
            self.journal = None
