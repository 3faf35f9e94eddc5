"""The shared response cache: entries in Redis with their TTL as Redis expiry, so every gateway process
naming the same Redis answers from one cache, and a cross-process single-flight: the first process to
miss takes a lock (SET NX PX, in a script with the lookup), the others wait for its answer (pub/sub, with
a bounded poll behind it) and take over when the lock goes without an entry (its holder failed, or
died and stopped renewing it).
Every round trip is bounded: a slow or failed one is a miss, never a failed call (issue 17)."""

from __future__ import annotations

import asyncio
import json
import logging
import time
import uuid
from collections import Counter

from redis.exceptions import ConnectionError as Refused

from core.cachestore import Entry
from core.shared.channel import follow

log = logging.getLogger(__name__)

# KEYS: entry, lock. ARGV: token, lock ms, read ("1": an entry found is returned).
# {1, entry} a hit; {2} this caller now holds the lock (it leads); {0} another holds it.
ACQUIRE = """
if ARGV[3] == '1' then
  local v = redis.call('GET', KEYS[1])
  if v then return {1, v} end
end
if redis.call('SET', KEYS[2], ARGV[1], 'NX', 'PX', ARGV[2]) then return {2} end
return {0}
"""
# KEYS: entry, lock. ARGV: entry, ttl ms, token ('' for none), channel, cache key.
# The entry stored, the caller's lock released, the waiters told: one step, so none sees a gap.
STORE = """
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
if ARGV[3] ~= '' and redis.call('GET', KEYS[2]) == ARGV[3] then redis.call('DEL', KEYS[2]) end
redis.call('PUBLISH', ARGV[4], ARGV[5])
return 1
"""
# KEYS: locks. ARGV: lock ms, then each lock's token. A running leader's locks pushed back.
RENEW = """
for i, key in ipairs(KEYS) do
  if redis.call('GET', key) == ARGV[i + 1] then redis.call('PEXPIRE', key, ARGV[1]) end
end
return 1
"""
# KEYS: lock. ARGV: token, channel, cache key. A leader that stored nothing lets the waiters go.
RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('DEL', KEYS[1])
  redis.call('PUBLISH', ARGV[2], ARGV[3])
  return 1
end
return 0
"""

RETRY_SECONDS = 1.0  # after a refused connection (or a few slow answers in a row), Redis is skipped this long
SLOW_IN_A_ROW = 3  # one slow answer (a busy moment) is a miss for that call only; this many, Redis is away
WRITES = 1000  # stores and releases in flight to Redis at most; past this they are dropped, counted
OUTCOMES = ("hit", "miss", "wait", "took_over", "gave_up", "error", "skipped", "stored", "too_large", "dropped")


def encode(entry: Entry) -> bytes:
    head = {"stream": entry.stream, "type": entry.content_type, "expires": entry.expires, "meta": entry.meta}
    return json.dumps(head, separators=(",", ":")).encode() + b"\n" + entry.body


def decode(value: bytes) -> Entry | None:
    head, sep, body = value.partition(b"\n")
    try:
        doc = json.loads(head) if sep else None
        return Entry(bool(doc["stream"]), str(doc["type"]), body, float(doc["expires"]), dict(doc["meta"] or {}))
    except (TypeError, ValueError, KeyError):
        return None  # not an entry this version wrote: a miss


class SharedCache:
    """The calls to Redis for the response cache. `timeout` bounds each round trip a call waits on;
    `lock_seconds` is how long a leader's lock outlives its process (renewed while its call runs);
    `poll` how often a waiter looks again when no message came (a lost message, a leader that died)."""

    def __init__(self, client, prefix: str = "tapgate:", *, timeout: float = 0.25, lock_seconds: float = 10.0,
                 max_entry_bytes: int = 1024 * 1024, poll: float = 0.25) -> None:
        self.client = client
        self.prefix = prefix
        self.channel = f"{prefix}cache:done"
        self.timeout = timeout
        self.lock_ms = max(1, int(lock_seconds * 1000))
        self.max_entry_bytes = max_entry_bytes
        self.poll = poll
        self.counts: Counter[str] = Counter({outcome: 0 for outcome in OUTCOMES})
        self.healthy = True
        self._skip_until = 0.0
        self._failed_in_a_row = 0
        self._acquire = client.register_script(ACQUIRE)
        self._store = client.register_script(STORE)
        self._release = client.register_script(RELEASE)
        self._renew = client.register_script(RENEW)
        self.held: dict[str, str] = {}  # cache key -> token: the locks this process's running leaders hold
        self._waiters: dict[str, list[asyncio.Future]] = {}
        self._writes: set[asyncio.Task] = set()
        self._tasks: list[asyncio.Task] = []

    def entry_key(self, key: str) -> str:
        return f"{self.prefix}cache:{key}"

    def lock_key(self, key: str) -> str:
        return f"{self.prefix}cache:{key}:lock"

    @property
    def pending(self) -> int:
        """Stores and releases not yet written to Redis (the backlog /metrics shows)."""
        return len(self._writes)

    # -- start and stop ------------------------------------------------------------------------------

    def start(self) -> None:
        self._tasks = [asyncio.create_task(self._listen()), asyncio.create_task(self._keep_locks())]

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks = []
        if self._writes:  # what is in flight, once, briefly
            await asyncio.wait(list(self._writes), timeout=max(self.timeout, 1.0))
        await self.client.aclose()

    # -- a call's lookup ---------------------------------------------------------------------------------

    async def fetch(self, key: str, wait: float) -> tuple[Entry | None, str | None]:
        """(entry, None) on a hit; (None, token) when this call leads: it holds the lock and stores its
        answer with that token; (None, None) when it goes upstream without the lock (Redis away or slow,
        or it waited `wait` seconds for another process's answer)."""
        token = uuid.uuid4().hex
        deadline = time.monotonic() + wait
        waiter: asyncio.Future | None = None
        waited = False
        try:
            while True:
                result = await self._bounded(self._acquire(keys=[self.entry_key(key), self.lock_key(key)],
                                                           args=[token, self.lock_ms, "1"]))
                if result is None:
                    self._give_back(key, token)
                    return None, None
                status = int(result[0])
                if status == 1:
                    if (entry := decode(result[1])) is None:
                        self.counts["error"] += 1
                        return None, None
                    self.counts["hit"] += 1
                    return entry, None
                if status == 2:
                    self.held[key] = token
                    self.counts["took_over" if waited else "miss"] += 1
                    return None, token
                # Another process leads: listen first, then look again, so its message cannot fall between.
                if waiter is None or waiter.done():
                    if waiter is None:
                        self.counts["wait"] += 1
                        waited = True
                    waiter = self._listen_for(key, waiter)
                    continue
                if (remaining := deadline - time.monotonic()) <= 0:
                    self.counts["gave_up"] += 1
                    return None, None
                try:
                    await asyncio.wait_for(asyncio.shield(waiter), min(self.poll, remaining))
                except TimeoutError:
                    pass
        except asyncio.CancelledError:  # the client left (or the gateway stops) mid round trip
            self._give_back(key, token)
            raise
        finally:
            if waiter is not None:
                self._forget(key, waiter)

    def _give_back(self, key: str, token: str) -> None:
        """A lookup that ended without its answer may still have taken the lock in Redis: release it (if
        it is this token's), or waiters elsewhere would wait for a leader that does not know it leads."""
        self._drop(key, token)
        self._write(self._release(keys=[self.lock_key(key)], args=[token, self.channel, key]), None, always=True)

    def _listen_for(self, key: str, old: asyncio.Future | None) -> asyncio.Future:
        if old is not None:
            self._forget(key, old)
        future = asyncio.get_running_loop().create_future()
        self._waiters.setdefault(key, []).append(future)
        return future

    def _forget(self, key: str, future: asyncio.Future) -> None:
        waiting = self._waiters.get(key, [])
        if future in waiting:
            waiting.remove(future)
        if not waiting:
            self._waiters.pop(key, None)

    async def _bounded(self, pending, always: bool = False):
        """The round trip's result, or None (a miss) when Redis fails, is slow, or was found away just
        now (`always`: a lock's release, tried all the same)."""
        if not always and time.monotonic() < self._skip_until:
            pending.close()  # the coroutine never started: no round trip while Redis is away
            self.counts["skipped"] += 1
            return None
        try:
            result = await asyncio.wait_for(pending, self.timeout)
        except Exception as e:  # a timeout, a refused or reset connection, a script error
            self.counts["error"] += 1
            self._failed_in_a_row += 1
            if isinstance(e, Refused | ConnectionError) or self._failed_in_a_row >= SLOW_IN_A_ROW:
                self._skip_until = time.monotonic() + RETRY_SECONDS
            if self.healthy:
                self.healthy = False
                log.warning("tapgate: the shared response cache's Redis failed (%s): lookups are misses, served "
                            "by this process's own cache, until it answers again", type(e).__name__ if not str(e) else e)
            return None
        self._failed_in_a_row = 0
        if not self.healthy:
            self.healthy = True
            log.warning("tapgate: the shared response cache's Redis answers again")
        return result

    # -- a leader's answer -----------------------------------------------------------------------------

    def put(self, key: str, entry: Entry, token: str | None) -> None:
        """Store the entry with its TTL and let the waiters go; never waits (written by a task)."""
        if token is not None:
            self._drop(key, token)
        value = encode(entry)
        ttl_ms = int((entry.expires - time.time()) * 1000)
        if len(value) > self.max_entry_bytes or ttl_ms <= 0:
            if len(value) > self.max_entry_bytes:
                self.counts["too_large"] += 1
            if token is not None:
                self.release(key, token)
            return
        self._write(self._store(keys=[self.entry_key(key), self.lock_key(key)],
                                args=[value, ttl_ms, token or "", self.channel, key]), "stored")

    def release(self, key: str, token: str) -> None:
        """A leader that stored nothing: its lock goes, and a waiter takes over at once."""
        self._drop(key, token)
        self._write(self._release(keys=[self.lock_key(key)], args=[token, self.channel, key]), None)

    def _write(self, pending, outcome: str | None, always: bool = False) -> None:
        if len(self._writes) >= WRITES:
            pending.close()
            self.counts["dropped"] += 1
            return

        async def write() -> None:
            if await self._bounded(pending, always) is not None and outcome:
                self.counts[outcome] += 1

        task = asyncio.get_running_loop().create_task(write())
        self._writes.add(task)
        task.add_done_callback(self._writes.discard)

    def _drop(self, key: str, token: str) -> None:
        if self.held.get(key) == token:
            del self.held[key]

    async def _keep_locks(self) -> None:
        """Renew the running leaders' locks three times per lock period: a long call (a slow stream) keeps
        its lock, and a process that dies stops renewing, so its locks expire after one period."""
        while True:
            await asyncio.sleep(self.lock_ms / 3000)
            if held := list(self.held.items()):
                await self._bounded(self._renew(keys=[self.lock_key(k) for k, _ in held],
                                                args=[self.lock_ms, *(t for _, t in held)]), always=True)

    # -- the done channel ------------------------------------------------------------------------------

    async def _listen(self) -> None:  # waiters poll while it is lost; lookups report Redis being away
        await follow(self.client, self.channel, self.wake, "the shared cache's channel", RETRY_SECONDS)

    def wake(self, data: bytes | str) -> None:
        """A leader stored or released `data` (a cache key): its waiters here look again."""
        key = data.decode() if isinstance(data, bytes) else data
        for future in self._waiters.get(key, ()):
            if not future.done():
                future.set_result(None)
