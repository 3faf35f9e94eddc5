"""StoreFollower: a table read from the store into memory, and a thread that re-reads it when it
changes, so lookups on the hot path never touch the store (the key ring, the prompt book). The store
is a SQLite file or PostgreSQL (a postgresql:// URL); the same queries read both."""

from __future__ import annotations

import logging
import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from core import database

log = logging.getLogger(__name__)

REFRESH_SECONDS = 1.0


class StoreFollower:
    """Subclasses read the store in `reload()` (cheaply when nothing changed); `what` names it."""

    what = "store"

    def __init__(self) -> None:
        self._path: Path | str | None = None
        self._conn: Any = None  # PostgreSQL's connection, kept between reads (a file is opened each time)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._version: str | None = None
        self.refresh = REFRESH_SECONDS

    def open(self, path: Path | str) -> None:
        """Load now and keep following the store (a file's path or a postgresql:// URL)."""
        self.close()
        self._path, self._version, self._stop = path, None, threading.Event()
        try:
            self.reload()
        except database.read_errors() as e:
            if not database.is_postgres(path):
                raise
            # a server may come back: the thread keeps trying
            log.warning("tapgate: could not read %s from %s: %s; retrying every %g s", self.what, self.shown, e,
                        self.refresh)
        self._thread = threading.Thread(target=self._follow, name=f"tapgate-{self.what}", daemon=True)
        self._thread.start()

    def close(self) -> None:
        if self._thread is not None:
            self._stop.set()
            self._thread.join()
            self._thread = None
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    @property
    def shown(self) -> str:
        return database.shown(self._path) if self._path is not None else ""

    @contextmanager
    def connection(self) -> Iterator[Any]:
        """A read connection: a file's, opened read-only for this read; PostgreSQL's, kept open and
        dropped after an error so the next read reconnects."""
        assert self._path is not None
        if not database.is_postgres(self._path):
            conn = sqlite3.connect(f"file:{self._path}?mode=ro", uri=True, timeout=5)
            conn.row_factory = sqlite3.Row
            try:
                yield conn
            finally:
                conn.close()
            return
        if self._conn is None:
            self._conn = database.connect(self._path)
        try:
            yield self._conn
        except BaseException:
            self._conn.close()
            self._conn = None
            raise

    def reload(self) -> None:
        raise NotImplementedError

    def _follow(self) -> None:
        failing = False  # said once per outage, not at every read
        while not self._stop.wait(self.refresh):
            try:
                self.reload()
            except database.read_errors() as e:
                if not failing:
                    log.warning("tapgate: could not re-read %s: %s (retrying)", self.what, e)
                failing = True
            else:
                if failing:
                    log.info("tapgate: %s read from %s again", self.what, self.shown)
                failing = False
