"""The response cache's entries: in memory with cachetools (a per-entry TTL, a bound in bytes, least
recently used out first), optionally mirrored to the SQLite store, and the calls in flight that
identical requests wait for instead of going upstream themselves."""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import dataclass, field
from typing import Any

from cachetools import TLRUCache

from providers.safe_json import loads

ENTRY_OVERHEAD = 256  # bytes of bookkeeping counted per entry beside its body


@dataclass(frozen=True, slots=True)
class Entry:
    """One cached answer: the provider's body (whole JSON, or the raw bytes of its stream)."""

    stream: bool
    content_type: str
    body: bytes
    expires: float  # time.time()
    meta: dict[str, Any] = field(default_factory=dict)  # routed_to, model, for the hit's row

    @property
    def size(self) -> int:
        return len(self.body) + ENTRY_OVERHEAD


class ResponseCache:
    def __init__(self, max_bytes: int, persist=None) -> None:
        # ttu: an entry lives until its own expiry (each request may set its own cache_ttl).
        self.entries: TLRUCache[str, Entry] = TLRUCache(
            maxsize=max_bytes, ttu=lambda _key, entry, _now: entry.expires, timer=time.time,
            getsizeof=lambda entry: entry.size)
        self.inflight: dict[str, asyncio.Future] = {}
        self.persist = persist  # callable(row) that queues a cache_entries row for the store's writer

    def get(self, key: str) -> Entry | None:
        return self.entries.get(key)

    def put(self, key: str, entry: Entry, persist: bool = True) -> None:
        if entry.size > self.entries.maxsize:
            return
        self.entries[key] = entry
        if persist and self.persist is not None:
            self.persist({"key": key, "expires_at": entry.expires, "stream": int(entry.stream),
                          "content_type": entry.content_type, "body": entry.body, "meta": json.dumps(entry.meta)})

    def load(self, rows) -> int:
        """Entries kept in the store by an earlier run; the expired ones are skipped."""
        now, count = time.time(), 0
        for row in rows:
            if row["expires_at"] > now:
                self.entries[row["key"]] = Entry(bool(row["stream"]), row["content_type"], row["body"],
                                                 row["expires_at"], loads(row["meta"] or "{}"))
                count += 1
        return count

    # -- identical requests in flight ---------------------------------------------------------------

    def lead(self, key: str) -> bool:
        """True when this call is the first in flight for key (it will resolve the others' wait)."""
        if key in self.inflight:
            return False
        self.inflight[key] = asyncio.get_running_loop().create_future()
        return True

    async def wait(self, key: str, timeout: float) -> Entry | None:
        """The entry an identical call in flight stores, once it ends (None if it stored nothing)."""
        pending = self.inflight.get(key)
        if pending is None:
            return self.get(key)
        try:
            await asyncio.wait_for(asyncio.shield(pending), timeout)
        except TimeoutError:
            return None
        return self.get(key)

    def release(self, key: str) -> None:
        if (pending := self.inflight.pop(key, None)) is not None and not pending.done():
            pending.set_result(None)
