"""The journal: every record is appended to a file before the call's answer completes, so a crash of
the gateway process (SIGKILL, an uncaught fault) loses no answered call. The writer thread commits
the journal to SQLite and deletes what it committed; the next start replays what a dead process left.

A plain `os.write` to the page cache (no fsync): it survives the process, not a power cut. Layout,
beside the store: `<db>.journal/` (0700) holds per gateway process a lock file `<owner>.lock`, held
with flock for the life of the process, its segments `<owner>.<n>.jsonl` (0600) and its writer's
status `<owner>.status.json`. Segments whose owner's lock is free were left by a dead process, so
two gateways on one store never replay each other's live journal. A line is `["table",{row}]`, so a
batch of whole lines becomes one JSON array with a single bytes.replace, and the writer's Python
work (which holds the GIL the event loop needs) stays a few C calls per batch.
"""

from __future__ import annotations

import fcntl
import json
import os
import threading
import time
from collections import deque
from dataclasses import dataclass
from pathlib import Path

SEGMENT_BYTES = 16 * 1024 * 1024  # a new segment past this, so committed ones can be deleted
STATUS_FRESH_SECONDS = 10  # a status older than this belongs to a writer that is not running


def journal_dir(db: Path) -> Path:
    return db.with_name(db.name + ".journal")


def private_dir(path: Path) -> None:
    """Create path and any missing parents readable by their owner only (existing ones are left as they are)."""
    missing = []
    while not path.exists():
        missing.append(path)
        path = path.parent
    for p in reversed(missing):
        try:
            p.mkdir(mode=0o700)
        except FileExistsError:
            pass


@dataclass
class Segment:
    path: Path
    read_fd: int  # the writer reads through this, so a segment unlinked under it is still read to its end


class Journal:
    """The append side (the event loop's hot path) and the segment list the writer tails."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.owner = f"{os.getpid()}-{time.time_ns():x}"
        self.lock = threading.Lock()  # appends come from the event loop; reopen from the writer
        self.records = 0  # appended since start
        self.bytes = 0
        self.segments: deque[Segment] = deque()
        self._fd = -1
        self._lock_fd = -1
        self._size = 0
        self._n = 0
        self.reopen()

    @property
    def lock_path(self) -> Path:
        return self.directory / f"{self.owner}.lock"

    @property
    def status_path(self) -> Path:
        return self.directory / f"{self.owner}.status.json"

    def intact(self) -> bool:
        """False when the directory or this process's files in it were deleted or replaced."""
        try:
            return (os.stat(self.lock_path).st_ino == os.fstat(self._lock_fd).st_ino
                    and os.stat(self.segments[-1].path).st_ino == os.fstat(self._fd).st_ino)
        except OSError:
            return False

    def reopen(self) -> None:
        """(Re)create the directory and this process's lock and start a new segment: at start, and
        when the directory was deleted under a running gateway."""
        with self.lock:
            private_dir(self.directory)
            if self._lock_fd >= 0:
                os.close(self._lock_fd)
            self._lock_fd = os.open(self.lock_path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
            fcntl.flock(self._lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            self._rotate()

    def append(self, data: bytes, records: int) -> None:
        """Whole lines, in one write: the hot path. Raises OSError when the file cannot take them."""
        with self.lock:
            view = memoryview(data)
            while view:
                view = view[os.write(self._fd, view):]
            self._size += len(data)
            self.records += records
            self.bytes += len(data)
            if self._size >= SEGMENT_BYTES:
                self._rotate()

    def _rotate(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
        self._n += 1
        path = self.directory / f"{self.owner}.{self._n:06d}.jsonl"
        self._fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, 0o600)
        self._size = 0
        self.segments.append(Segment(path, os.open(path, os.O_RDONLY | os.O_CLOEXEC)))

    def drop_oldest(self) -> None:
        """The writer committed all of the oldest segment, and a newer one exists: delete it."""
        segment = self.segments.popleft()
        os.close(segment.read_fd)
        segment.path.unlink(missing_ok=True)

    def close(self, committed: bool) -> None:
        """At shutdown. Only a fully committed journal is deleted; otherwise the next start replays it."""
        with self.lock:
            os.close(self._fd)
            self._fd = -1
            for segment in self.segments:
                os.close(segment.read_fd)
                if committed:
                    segment.path.unlink(missing_ok=True)
            self.segments.clear()
            self.status_path.unlink(missing_ok=True)
            if committed:
                self.lock_path.unlink(missing_ok=True)
            os.close(self._lock_fd)
            self._lock_fd = -1


class Tail:
    """The writer's side: whole lines (as one bytes) from the oldest segment on, a batch at a time; the
    offset moves only when a batch is committed, so a failed batch is read again."""

    def __init__(self, journal: Journal) -> None:
        self.journal = journal
        self.offset = 0
        self.pending: tuple[int, bool] | None = None  # (bytes read, segment rotated before the read)

    def read(self, limit: int) -> bytes:
        segments = self.journal.segments
        while segments:
            rotated = len(segments) > 1  # before the read: then nothing more will be appended to it
            segment = segments[0]
            data = os.pread(segment.read_fd, limit, self.offset)
            while data and b"\n" not in data and len(data) == limit:  # one record longer than a batch
                limit *= 2
                data = os.pread(segment.read_fd, limit, self.offset)
            end = data.rfind(b"\n") + 1
            if end:
                self.pending = (end, rotated)
                return data[:end]
            if not rotated:
                return b""
            self.journal.drop_oldest()
            self.offset = 0
        return b""

    def commit(self) -> None:
        if self.pending is None:
            return
        size, rotated = self.pending
        self.pending = None
        self.offset += size
        if rotated and self.offset >= os.fstat(self.journal.segments[0].read_fd).st_size:
            self.journal.drop_oldest()
            self.offset = 0


def orphans(directory: Path) -> list[tuple[int | None, Path | None, list[Path]]]:
    """Journals left by processes that are gone: (its lock's fd, held now, the lock's path, its
    segments in order). Segments whose lock file is missing count as left too."""
    if not directory.is_dir():
        return []
    by_owner: dict[str, list[Path]] = {}
    for path in directory.glob("*.jsonl"):
        by_owner.setdefault(path.name.split(".")[0], []).append(path)
    for lock in directory.glob("*.lock"):
        by_owner.setdefault(lock.name.split(".")[0], [])
    found = []
    for owner, segments in sorted(by_owner.items()):
        lock = directory / f"{owner}.lock"
        fd = None
        try:
            fd = os.open(lock, os.O_RDWR | os.O_CLOEXEC)
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except FileNotFoundError:
            fd, lock = None, None
        except BlockingIOError:
            os.close(fd)
            continue  # a live gateway's
        found.append((fd, lock, sorted(segments)))
    return found


def read_status(db: Path) -> dict | None:
    """What the writers of running gateways on this store last said (summed), for the dashboards."""
    total: dict | None = None
    now = time.time()
    for path in journal_dir(db).glob("*.status.json"):
        try:
            status = json.loads(path.read_text())
        except (OSError, ValueError):
            continue  # being replaced, or gone
        if now - status.get("updated", 0) > STATUS_FRESH_SECONDS:
            continue
        if total is None:
            total = dict(status)
            continue
        for name, value in status.items():
            if isinstance(value, (int, float)) and name != "updated":
                total[name] = total.get(name, 0) + value
    return total


def write_status(path: Path, status: dict) -> None:
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
    try:
        os.write(fd, json.dumps(status).encode())
    finally:
        os.close(fd)
    os.replace(tmp, path)
