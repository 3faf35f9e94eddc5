"""The writer thread: commits the journal to SQLite in batches of ONE statement per table, and never
drops a batch in silence (a busy store is waited out with backoff; a deleted one is recreated, loudly).

One statement per table (`INSERT OR REPLACE ... SELECT value->>'$.col' ... FROM json_each(?)`) hands
the GIL to SQLite once per batch: `executemany` released and re-took it around every row, and under
load the busy event loop gave it back only at the 5 ms switch interval (about 1,500 rows a second).
"""

from __future__ import annotations

import logging
import os
import sqlite3
import threading
import time
from pathlib import Path

from sqlite_utils import Database

from core.journal import Journal, Tail, orphans, write_status

log = logging.getLogger(__name__)

FLUSH_SECONDS = 0.25  # how long a batch gathers after the first record: one wake-up serves many calls
# Read from the journal per transaction: the writer's memory bound, and what its few C calls per
# batch (replace, decode, bind) copy while holding the GIL (about a millisecond a megabyte).
BATCH_BYTES = 2 * 1024 * 1024
STATUS_SECONDS = 1.0
BACKOFF_MAX_SECONDS = 5.0
STOP_TRIES = 3  # a store still busy at shutdown: the journal stays, and the next start commits it
# The writer's own wait for another process's write lock: shorter than other connections' so that a
# long lock shows as a stall (and the status file stays current) within a second or two.
BUSY_TIMEOUT_MS = 1000


class Batches:
    """Journal lines into tables: per table in the batch, one prepared statement over the whole batch."""

    def __init__(self, db: Database) -> None:
        self.db = db
        self.sql: dict[str, str] = {}
        self.tables = [t for t in db.table_names() if not t.startswith("_")]
        # Bytes travel hex-encoded in JSON (SQLite 3.41's unhex() is not everywhere yet).
        db.conn.create_function("tapgate_unhex", 1, lambda v: bytes.fromhex(v) if v is not None else None,
                                deterministic=True)

    def statement(self, table: str) -> str:
        if (sql := self.sql.get(table)) is None:
            columns = self.db[table].columns_dict
            names = ", ".join(f"[{c}]" for c in columns)
            values = ", ".join(
                f"tapgate_unhex(value->>'$[1].\"{c}\"')" if t is bytes else f"value->>'$[1].\"{c}\"'"
                for c, t in columns.items())
            sql = self.sql[table] = (f"INSERT OR REPLACE INTO [{table}] ({names}) SELECT {values} "
                                     f"FROM json_each(?1) WHERE value->>0 = ?2")
        return sql

    def insert(self, data: bytes) -> int:
        """Whole lines in one transaction; raises what SQLite raised, having written nothing. Returns
        the records written."""
        by_table = lines_by_table(data, self.tables)
        with self.db.conn:
            for table, rows in by_table.items():
                self.db.conn.execute(self.statement(table), ((b"[" + b",".join(rows) + b"]").decode(), table))
        return sum(len(rows) for rows in by_table.values())

    def insert_each(self, data: bytes) -> list[tuple[bytes, Exception]]:
        """A batch that failed as a whole, one line at a time: the lines that still fail, with why."""
        bad = []
        for line in data.splitlines(keepends=True):
            try:
                self.insert(line)
            except (sqlite3.DatabaseError, UnicodeDecodeError, ValueError) as e:
                if busy(e):
                    raise
                bad.append((line, e))
        return bad


def lines_by_table(data: bytes, tables) -> dict[str, list[bytes]]:
    """Whole journal lines grouped by the table each names, so that each table's statement is sent (and
    its database parses) only its own lines; ValueError for a line naming no table in `tables`."""
    by_table: dict[str, list[bytes]] = {}
    for line in data[:-1].split(b"\n"):
        end = line.find(b'",', 2)  # a line is ["<table>",{...}]
        table = line[2:end].decode() if line.startswith(b'["') and end > 2 else ""
        if table not in tables:
            raise ValueError("a record names a table the store does not have, or is not a journal line")
        by_table.setdefault(table, []).append(line)
    return by_table


def whole_lines(data: bytes, size: int):
    """data (whole lines) in pieces of about size bytes, each ending at a line's end."""
    start = 0
    while start < len(data):
        end = data.find(b"\n", min(start + size, len(data)) - 1) + 1 or len(data)
        yield data[start:end]
        start = end


def busy(e: Exception) -> bool:
    return isinstance(e, sqlite3.OperationalError) and ("locked" in str(e) or "busy" in str(e))


def replay(path: Path, db: Database, directory: Path) -> int:
    """Commit what dead processes left in the journal; before anything reads the store. Returns records."""
    batches, total = Batches(db), 0
    for fd, lock, segments in orphans(directory):
        try:
            for segment in segments:
                data = segment.read_bytes()
                end = data.rfind(b"\n") + 1
                if end < len(data):
                    log.warning("tapgate: %s ends in a torn record (%d bytes) the crash cut; it is skipped",
                                segment.name, len(data) - end)
                for chunk in whole_lines(data[:end], BATCH_BYTES):
                    try:
                        batches.insert(chunk)
                    except (sqlite3.DatabaseError, UnicodeDecodeError, ValueError) as e:
                        if busy(e):
                            raise
                        for line, why in batches.insert_each(chunk):
                            log.error("tapgate: a journal record could not be stored and is lost (%s): %.200r",
                                      why, line)
                total += data.count(b"\n", 0, end)
                segment.unlink()
            if lock is not None:
                lock.unlink(missing_ok=True)
                (directory / lock.name.replace(".lock", ".status.json")).unlink(missing_ok=True)
        finally:
            if fd is not None:
                os.close(fd)
    if total:
        log.warning("tapgate: committed %d records a gateway that stopped without committing them left in %s",
                    total, directory)
    return total


def gathering(data: bytes) -> bool:
    """After committing `data`: whether to gather the next batch before committing again. A part batch
    means the journal has caught up, and what is in it now arrived during that commit: committing it at
    once would be a commit per few calls (each with its fsync and its per-statement work), so the writer
    waits FLUSH_SECONDS for a batch instead. A whole batch means a backlog: it drains without pause."""
    return len(data) < BATCH_BYTES // 2


class Writer(threading.Thread):
    """Tails the journal and commits it; keeps counts of what is pending, stalls and losses in a
    status file beside the store (read by the dashboard and `tapgate top`)."""

    def __init__(self, path: Path, journal: Journal, open_db, salt: str = "") -> None:
        super().__init__(name="tapgate-store-writer", daemon=True)
        self.path, self.journal, self.open_db, self.salt = path, journal, open_db, salt
        self.wake = threading.Event()  # set by the hot path after an append
        self.stopping = threading.Event()
        self.written = 0  # records committed
        self.written_bytes = 0
        self.lost = 0
        self.dropped = 0  # of lost: refused because the journal was full (Storage.max_journal_bytes)
        self.stalls = 0
        self.reopens = 0
        self.stalled_since: float | None = None
        self.last_error: str | None = None
        self._status_at = 0.0
        self._rate: list[tuple[float, int]] = []  # (time, written) samples for records/s
        self._inode = 0
        self.status_sources: list = []  # more figures for the status file: each a function returning a dict

    # -- the loop ------------------------------------------------------------------------------

    def run(self) -> None:
        db = self._reopen(salt=False)
        tail, batches = Tail(self.journal), Batches(db)
        try:
            while True:
                if not self.stopping.is_set():
                    if self.wake.wait(STATUS_SECONDS):
                        self.stopping.wait(FLUSH_SECONDS)  # gather a batch; a shutdown cuts this short
                    self.wake.clear()
                stopping = self.stopping.is_set()
                tries = 0
                while data := tail.read(BATCH_BYTES):
                    db, batches = self._check_files(db, batches)
                    try:
                        self._commit(batches, data)
                    except sqlite3.DatabaseError as e:
                        tries += 1
                        if not self._stalled(e, tries, stopping):
                            break  # stopping, and the store is still busy: the journal keeps the rest
                        continue
                    tail.commit()
                    self._recovered()
                    tries = 0
                    if not stopping and gathering(data):
                        break
                self._status()
                if stopping:
                    self._finish(tail)
                    return
        finally:
            db.close()

    def _commit(self, batches: Batches, data: bytes) -> None:
        try:
            batches.insert(data)
        except (sqlite3.DatabaseError, UnicodeDecodeError, ValueError) as e:
            if busy(e) or not self._same_file():
                raise
            bad = batches.insert_each(data)  # one malformed record must not hold up the rest
            for line, why in bad:
                log.error("tapgate: a record could not be stored and is lost (%s): %.200r", why, line)
            self.lost += len(bad)
        self.written += data.count(b"\n")
        self.written_bytes += len(data)

    def _stalled(self, e: Exception, tries: int, stopping: bool) -> bool:
        """A batch failed as a whole (the store is busy or gone): count it, say so, wait. False: give up."""
        self.last_error = str(e)
        if self.stalled_since is None:
            self.stalled_since = time.time()
            self.stalls += 1
            log.warning("tapgate: cannot write to %s (%s); %d records wait in the journal and are retried",
                        self.path, e, self.pending()[0])
        self._status(force=True)
        if stopping and tries >= STOP_TRIES:
            log.warning("tapgate: %s still unwritable at shutdown (%s); %d records stay in the journal and "
                        "the next start commits them", self.path, e, self.pending()[0])
            return False
        self.stopping.wait(min(BACKOFF_MAX_SECONDS, 0.1 * 2 ** tries)) if not stopping else time.sleep(0.5)
        return True

    def _recovered(self) -> None:
        if self.stalled_since is not None:
            log.warning("tapgate: writing to %s again after %.1f s", self.path, time.time() - self.stalled_since)
            self.stalled_since = None

    def _finish(self, tail: Tail) -> None:
        appended, _ = self.journal.records, self.journal.bytes
        committed = self.pending()[0] == 0 and tail.pending is None
        self.journal.close(committed=committed)
        if not committed:
            log.warning("tapgate: %d of %d records were not committed; they stay in %s for the next start",
                        appended - self.written, appended, self.journal.directory)

    # -- the store's file ----------------------------------------------------------------------

    def _open(self, salt: bool) -> Database:
        db = self.open_db(self.path)
        db.execute("PRAGMA synchronous = NORMAL")  # with WAL: durable across crashes of this process
        db.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
        if salt and self.salt:  # a recreated store keeps the salt its key fingerprints were made with
            with db.conn:
                db.execute("INSERT OR IGNORE INTO meta (key, value) VALUES ('key_salt', ?)", [self.salt])
        self._inode = os.stat(self.path).st_ino
        return db

    def _reopen(self, salt: bool) -> Database:
        try:
            return self._open(salt)
        except Exception as e:  # busy, or the path unusable: the journal keeps the rows; tried again per batch
            self.last_error = f"cannot open the store: {e}"
            log.error("tapgate: cannot open %s (%s); records wait in the journal", self.path, e)
            self._inode = -1
            return Database(memory=True)  # a placeholder: its batches fail until the store opens

    def _same_file(self) -> bool:
        try:
            return os.stat(self.path).st_ino == self._inode
        except OSError:
            return False

    def _check_files(self, db: Database, batches: Batches) -> tuple[Database, Batches]:
        """Never write on into an unlinked file: a deleted or replaced store (or journal) is reopened, loudly."""
        if not self.journal.intact():
            log.error("tapgate: the journal %s was deleted under the running gateway; recreating it "
                      "(records not yet committed are still held open and are committed)", self.journal.directory)
            self.journal.reopen()
            self.reopens += 1
        if self._same_file():
            return db, batches
        if self._inode != -1:
            what = "replaced" if self.path.exists() else "deleted"
            log.error("tapgate: the store %s was %s while the gateway ran; the rows it held are gone with it. "
                      "Recreating it: calls from now on (and %d waiting in the journal) are written to the new "
                      "file", self.path, what, self.pending()[0])
            self.reopens += 1
            self.last_error = f"store {what} while running"
        db.close()
        db = self._reopen(salt=True)
        return db, Batches(db)

    # -- what the dashboards show --------------------------------------------------------------

    def pending(self) -> tuple[int, int]:
        """(records, bytes) appended to the journal and not yet committed."""
        return self.journal.records - self.written, self.journal.bytes - self.written_bytes

    def status(self) -> dict:
        now = time.time()
        self._rate = [s for s in self._rate if now - s[0] <= 10] + [(now, self.written)]
        first = self._rate[0]
        rate = (self.written - first[1]) / (now - first[0]) if now > first[0] else 0.0
        records, size = self.pending()
        return {"pid": os.getpid(), "updated": now, "pending_records": records, "pending_bytes": size,
                "committed": self.written, "committed_per_s": round(rate, 1), "stalls": self.stalls,
                "stalled": self.stalled_since is not None,
                "stalled_s": round(now - self.stalled_since, 1) if self.stalled_since else 0, "lost": self.lost,
                "dropped": self.dropped,
                "reopens": self.reopens, "last_error": self.last_error,
                **{k: v for source in self.status_sources for k, v in source().items()}}

    def _status(self, force: bool = False) -> None:
        now = time.monotonic()
        if not force and now - self._status_at < STATUS_SECONDS:
            return
        self._status_at = now
        try:
            write_status(self.journal.status_path, self.status())
        except OSError as e:  # the directory is being recreated; the next one will do
            log.debug("tapgate: cannot write the writer's status: %s", e)
