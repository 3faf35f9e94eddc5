"""The PostgreSQL writer thread (`tapgate_postgres`): tails the same journal the SQLite writer does
(core/journal.py) and commits it to PostgreSQL in batches, one statement per table (core/pg/batches.py).

PostgreSQL down loses nothing: the batch stays in the on-disk journal (its offset moves only on
commit), the writer reconnects with backoff and drains by itself. What dead gateways left in the
journal is committed first, from this thread, so a start never waits on PostgreSQL."""

from __future__ import annotations

import logging
import os
import secrets
import time
from datetime import UTC, datetime
from pathlib import Path

import psycopg

from core.journal import Journal, Tail, orphans
from core.pg.batches import DATA_ERRORS, Batches
from core.pg.schema import install
from core.pg.upkeep import EVERY_SECONDS, upkeep
from core.pg.url import redact
from core.writer import BATCH_BYTES, FLUSH_SECONDS, STATUS_SECONDS, Writer, gathering, whole_lines

log = logging.getLogger(__name__)

CONNECT_TIMEOUT_SECONDS = 5
# SQLSTATE classes that say the server, not the batch, is the trouble: connection (08), resources
# (53), operator intervention such as a shutdown (57), system (58), rollback (40), and a missing
# privilege (42501). The batch then waits in the journal; any other error is the batch's own.
TRANSIENT = ("08", "53", "57", "58", "40")


def transient(e: Exception, conn: psycopg.Connection | None) -> bool:
    if conn is None or conn.closed or conn.broken:
        return True
    state = getattr(e, "sqlstate", None)
    if state is None:
        return isinstance(e, (psycopg.OperationalError, psycopg.InterfaceError))
    return state[:2] in TRANSIENT or state == "42501"


def connect(url: str) -> psycopg.Connection:
    """Keepalives and a TCP user timeout: a server that vanished (a network partition, a host gone)
    fails the batch within about 30 s instead of the kernel's many minutes, and the journal keeps it."""
    return psycopg.connect(url, autocommit=True, connect_timeout=CONNECT_TIMEOUT_SECONDS,
                           application_name="tapgate-writer", keepalives=1, keepalives_idle=10,
                           keepalives_interval=5, keepalives_count=3, tcp_user_timeout=30_000)


def store_salt(conn: psycopg.Connection, salt: str) -> str:
    """The store's key-fingerprint salt: `salt` if the store has none yet, else the store's."""
    conn.execute("INSERT INTO meta (key, value) VALUES ('key_salt', %s) ON CONFLICT DO NOTHING", (salt,))
    return conn.execute("SELECT value FROM meta WHERE key = 'key_salt'").fetchone()[0]


def open_salt(url: str, cache: Path) -> str:
    """At start: the schema installed and the store's salt, cached beside the journal so a gateway
    started while PostgreSQL is down fingerprints keys as the others do. With neither, a new salt
    (the writer offers it to the store when it connects)."""
    try:
        cached = cache.read_text().strip()
    except OSError:
        cached = ""
    try:
        with connect(url) as conn:
            install(conn)
            salt = store_salt(conn, cached or secrets.token_hex(16))
    except psycopg.Error as e:
        log.error("tapgate: PostgreSQL at %s is not reachable at start (%s); calls wait in the journal "
                  "until it is", redact(url), redact(str(e), url))
        salt = cached or secrets.token_hex(16)
    if salt != cached:
        fd = os.open(cache, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
        try:
            os.write(fd, salt.encode())
        finally:
            os.close(fd)
    return salt


class PgWriter(Writer):
    """The SQLite Writer's loop, status and counts, committing to PostgreSQL instead."""

    def __init__(self, url: str, journal: Journal, salt: str = "", retention_days: int = 0) -> None:
        super().__init__(redact(url), journal, None, salt)
        self.name = "tapgate-postgres-writer"
        self.url = url
        self.retention_days = retention_days
        self.connected = False
        self.orphan_records = 0  # left by dead gateways, not yet committed
        self.orphan_bytes = 0
        self.replayed = 0
        self.batches = Batches()
        self._upkeep_at = 0.0
        self._salt_checked = False

    # -- the loop ------------------------------------------------------------------------------

    def run(self) -> None:
        conn = None
        try:
            conn, done = self._replay(conn)
            tail = Tail(self.journal)
            while done:
                if not self.stopping.is_set():
                    if self.wake.wait(STATUS_SECONDS):
                        self.stopping.wait(FLUSH_SECONDS)  # gather a batch; a shutdown cuts this short
                    self.wake.clear()
                stopping = self.stopping.is_set()
                while data := tail.read(BATCH_BYTES):
                    self._check_journal()
                    conn, ok = self._write(conn, data)
                    if not ok:
                        break  # stopping, and PostgreSQL is still down: the journal keeps the rest
                    tail.commit()
                    self.written += data.count(b"\n")
                    self.written_bytes += len(data)
                    if not stopping and gathering(data):
                        break
                if time.monotonic() >= self._upkeep_at:  # also reconnects an idle writer, so status is true
                    conn = self._maintain(conn)
                self._status()
                if stopping:
                    break
            self._finish(tail)
        finally:
            if conn is not None:
                conn.close()

    def _write(self, conn, data: bytes):
        """Commit whole lines, waiting out an unreachable server. (connection, False) when stopping
        and it is still unreachable."""
        tries = 0
        while True:
            stopping = self.stopping.is_set()
            try:
                conn = self._connection(conn)
                self._commit(conn, data)
                self._recovered()
                return conn, True
            except psycopg.Error as e:
                conn = self._lost_connection(conn, e)
                tries += 1
                if not self._stalled(e, tries, stopping):
                    return conn, False

    def _commit(self, conn: psycopg.Connection, data: bytes) -> None:
        try:
            self.batches.insert(conn, data)
        except DATA_ERRORS as e:
            if isinstance(e, psycopg.Error) and transient(e, conn):
                raise
            bad = self.batches.insert_each(conn, data)  # one malformed record must not hold up the rest
            for line, why in bad:
                log.error("tapgate: a record could not be stored in PostgreSQL and is lost (%s): %.200r",
                          redact(str(why), self.url), line)
            self.lost += len(bad)

    def _replay(self, conn):
        """Commit what dead gateways left in the journal (the SQLite writer does this before start;
        here it must not hold the start up while PostgreSQL is down). (connection, False) when the
        gateway stops first: the files stay for the next start."""
        left = orphans(self.journal.directory)
        sizes = [(segment, segment.stat().st_size) for _, _, segments in left for segment in segments]
        self.orphan_bytes = sum(size for _, size in sizes)
        self.orphan_records = sum(segment.read_bytes().count(b"\n") for segment, _ in sizes) if sizes else 0
        done = True
        for fd, lock, segments in left:
            try:
                for segment in segments if done else ():
                    data = segment.read_bytes()
                    end = data.rfind(b"\n") + 1
                    if end < len(data):
                        log.warning("tapgate: %s ends in a torn record (%d bytes) the crash cut; it is skipped",
                                    segment.name, len(data) - end)
                        self.orphan_bytes -= len(data) - end
                    for chunk in whole_lines(data[:end], BATCH_BYTES):
                        conn, done = self._write(conn, chunk)
                        if not done:
                            break
                        lines = chunk.count(b"\n")
                        self.orphan_records -= lines
                        self.orphan_bytes -= len(chunk)
                        self.replayed += lines
                    if not done:
                        break
                    segment.unlink()
                if done and lock is not None:
                    lock.unlink(missing_ok=True)
                    (lock.parent / lock.name.replace(".lock", ".status.json")).unlink(missing_ok=True)
            finally:
                if fd is not None:
                    os.close(fd)
        if self.replayed:
            log.warning("tapgate: committed %d records a gateway that stopped without committing them left in %s",
                        self.replayed, self.journal.directory)
        return conn, done

    # -- the connection ------------------------------------------------------------------------

    def _connection(self, conn):
        if conn is not None and not conn.closed and not conn.broken:
            return conn
        conn = connect(self.url)
        try:
            install(conn)
            if not self._salt_checked and self.salt:
                if store_salt(conn, self.salt) != self.salt:
                    log.warning("tapgate: PostgreSQL at %s has another key-fingerprint salt than this gateway "
                                "started with (it was down at start); restart to use the store's", self.path)
                self._salt_checked = True
        except BaseException:
            conn.close()
            raise
        if not self.connected:
            log.info("tapgate: writing calls to PostgreSQL at %s", self.path)
        self.connected = True
        if time.monotonic() >= self._upkeep_at:
            self._maintain(conn)
        return conn

    def _lost_connection(self, conn, e: Exception):
        self.connected = False
        if conn is not None:
            conn.close()
        return None

    def _maintain(self, conn):
        """Partitions ahead and retention, hourly. Returns the connection (None if it failed)."""
        self._upkeep_at = time.monotonic() + EVERY_SECONDS
        try:
            conn = self._connection(conn) if conn is None else conn
            upkeep(conn, datetime.now(UTC).date(), self.retention_days)
            return conn
        except psycopg.Error as e:
            self._upkeep_at = time.monotonic() + min(60.0, EVERY_SECONDS)  # again soon, not in an hour
            self.last_error = redact(str(e), self.url)
            log.warning("tapgate: PostgreSQL upkeep (partitions, retention) failed: %s", self.last_error)
            return self._lost_connection(conn, e) if conn is None or conn.broken or conn.closed else conn

    def upkeep_soon(self) -> None:
        """A new retention: applied at the writer's next turn (within a second), not in an hour."""
        self._upkeep_at = 0.0
        self.wake.set()

    def _check_journal(self) -> None:
        if not self.journal.intact():
            log.error("tapgate: the journal %s was deleted under the running gateway; recreating it "
                      "(records not yet committed are still held open and are committed)", self.journal.directory)
            self.journal.reopen()
            self.reopens += 1

    # -- what the dashboards show --------------------------------------------------------------

    def _stalled(self, e: Exception, tries: int, stopping: bool) -> bool:
        return super()._stalled(Exception(redact(str(e), self.url)), tries, stopping)

    def pending(self) -> tuple[int, int]:
        records, size = super().pending()
        return records + self.orphan_records, size + self.orphan_bytes

    def status(self) -> dict:
        return {**super().status(), "store": "postgresql", "target": self.path, "connected": self.connected,
                "replayed": self.replayed}
