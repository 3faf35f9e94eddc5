"""StoreFollower: a table read from the store into memory, and a thread that re-reads it when it
changes, so lookups on the hot path never touch SQLite (the key ring, the prompt book)."""

from __future__ import annotations

import logging
import sqlite3
import threading
from pathlib import Path

log = logging.getLogger(__name__)

REFRESH_SECONDS = 1.0


class StoreFollower:
    """Subclasses read the store in `reload()` (cheaply when nothing changed); `what` names it."""

    what = "store"

    def __init__(self) -> None:
        self._path: Path | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._version: str | None = None
        self.refresh = REFRESH_SECONDS

    def open(self, path: Path) -> None:
        """Load now and keep following the file."""
        self.close()
        self._path, self._version, self._stop = path, None, threading.Event()
        self.reload()
        self._thread = threading.Thread(target=self._follow, name=f"tapgate-{self.what}", daemon=True)
        self._thread.start()

    def close(self) -> None:
        if self._thread is not None:
            self._stop.set()
            self._thread.join()
            self._thread = None

    def reload(self) -> None:
        raise NotImplementedError

    def _follow(self) -> None:
        while not self._stop.wait(self.refresh):
            try:
                self.reload()
            except sqlite3.Error as e:
                log.warning("tapgate: could not re-read %s: %s", self.what, e)
