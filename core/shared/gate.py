"""The shared gate: Admission's way to Redis. It admits through the shared ledger, settles off the hot
path (a bounded queue one task drains), keeps the reservations of running calls alive, rebuilds the
settled spend from the store when Redis has none, and, while Redis is unreachable, either refuses calls
that need a budget check (fail-closed, a 503) or admits them against this process's share of each cap
(fail-open), until the server answers again."""

from __future__ import annotations

import asyncio
import itertools
import logging
import math
import time
import uuid
from collections import deque
from collections.abc import Callable
from typing import Any, Literal

from redis.exceptions import TimeoutError as RedisTimeout

from core.config import Budget, RateLimit
from core.errors import Unavailable
from core.ledger import Amount, Crossing, Ledger, OverCap, Reservation, Scope
from core.ratelimit import Window
from core.shared.ledger import Counter, Held, NotLoaded, RateLimited, SharedLedger

log = logging.getLogger(__name__)

Failure = Literal["closed", "open"]
HEARTBEAT_SECONDS = 0.5
PEER_SECONDS = 3.0  # a process whose heartbeat is older than this no longer counts as a peer
SETTLE_BACKLOG = 100_000  # settlements waiting for Redis; past this the oldest are dropped, loudly
REDIS_TIMEOUT = 5.0
SETTLE_BATCH = 256  # settlements per round trip to Redis


class SharedGate:
    def __init__(self, ledger: SharedLedger, totals: Callable[[], dict[Counter, Amount]],
                 failure: Failure = "closed", on_crossing: list | None = None) -> None:
        self.ledger = ledger
        self.totals = totals  # the store's settled spend per counter (blocking: run in a thread)
        self.failure = failure
        self.on_crossing = on_crossing if on_crossing is not None else []
        self.up = True
        self.peers = 1
        self.ident = uuid.uuid4().hex
        self.live: dict[str, Held] = {}  # reservations of calls still running here, renewed by the heartbeat
        self.backlog: deque[tuple[Any, Amount, Any]] = deque()  # (Held | Counter list, actual, call)
        self.dropped = 0
        self.slow = 0  # admissions Redis did not answer within REDIS_TIMEOUT
        self.outage = Ledger(ledger.tz.key)  # fail-open: this process's own spend while Redis is away
        self.outage_windows: dict[Scope, Window] = {}
        self._wake = asyncio.Event()
        self._tasks: list[asyncio.Task] = []
        self._rebuilding: asyncio.Lock | None = None
        self._stopping = False

    # -- start and stop ----------------------------------------------------------------------------

    async def start(self) -> None:
        self._rebuilding = asyncio.Lock()
        try:
            await self._ensure_loaded()
            await self._beat()
        except Exception as e:  # (any redis or OS error: the heartbeat retries)
            self._down(e)
        self._tasks = [asyncio.create_task(self._heartbeat()), asyncio.create_task(self._drain())]

    async def stop(self) -> None:
        """The drain task writes what is queued and ends; it is not cancelled mid-batch, as a batch Redis
        had applied would stay queued and be written a second time (spend counted twice)."""
        self._stopping = True
        self._wake.set()
        heartbeat, drain = self._tasks or (None, None)
        if heartbeat is not None:
            heartbeat.cancel()
            await asyncio.gather(heartbeat, return_exceptions=True)
        if drain is not None:
            try:
                await asyncio.wait_for(drain, REDIS_TIMEOUT)
            except Exception as e:  # (a timeout cancels it: the batch in flight may or may not have landed)
                log.warning("tapgate: settlements not all written to Redis at shutdown: %s", e or type(e).__name__)
        self._tasks = []
        if self.backlog:
            log.warning("tapgate: %d settlements not written to Redis at shutdown", len(self.backlog))
        await self.ledger.calls.close()
        await self.ledger.client.aclose()

    # -- admit ---------------------------------------------------------------------------------------

    async def admit(self, budgets: list[tuple[Scope, Budget]], limits: list[tuple[Scope, RateLimit]],
                    worst: Amount) -> Held | Reservation | OverCap | RateLimited:
        if self.up:
            try:
                try:
                    return await asyncio.wait_for(self.ledger.admit(budgets, limits, worst), REDIS_TIMEOUT)
                except NotLoaded:
                    await self._ensure_loaded()
                    return await asyncio.wait_for(self.ledger.admit(budgets, limits, worst), REDIS_TIMEOUT)
            except NotLoaded:
                raise Unavailable("The gateway's shared budgets are being rebuilt; retry shortly.",
                                  headers={"retry-after": "1"}) from None
            except (TimeoutError, RedisTimeout):  # one slow answer (a starved event loop): this call only
                self.slow += 1
                return self._local(budgets, limits, worst)
            except Exception as e:  # a connection refused or reset: the heartbeat notices its return
                self._down(e)
        return self._local(budgets, limits, worst)

    def _local(self, budgets, limits, worst: Amount) -> Reservation | OverCap | RateLimited:
        """Redis is unreachable: refuse (fail-closed) or admit against this process's share."""
        if self.failure == "closed":
            raise Unavailable("The gateway cannot check budgets and rate limits right now (its shared state "
                              "is unreachable); retry shortly.", headers={"retry-after": "1"})
        share = max(1, self.peers)
        now = time.monotonic()
        for scope, limit in limits:
            rpm = math.ceil(limit.rpm / share) if limit.rpm else None
            tpm = math.ceil(limit.tpm / share) if limit.tpm else None
            if over := self.outage_windows.setdefault(scope, Window()).check(rpm, tpm, now):
                return RateLimited(scope, over[0], over[1], RateLimit(rpm=rpm, tpm=tpm))
        shared = [(scope, b.model_copy(update={"cap": b.cap / share}) if b.cap else b) for scope, b in budgets]
        result = self.outage.reserve(shared, worst)
        if not isinstance(result, OverCap):
            for scope, _ in limits:
                self.outage_windows[scope].add_request(now)
        return result

    def hold(self, held: Held) -> None:
        self.live[held.id] = held

    # -- settle: queued, written by one task ---------------------------------------------------------

    def settle(self, reservation: Held | Reservation, actual: Amount, call: Any) -> None:
        """Never waits: the settlement is queued for the drain task."""
        if isinstance(reservation, Held):
            self.live.pop(reservation.id, None)
        else:  # admitted while Redis was away: this process's ledger, replayed into Redis when it is back
            self.outage.settle(reservation, actual)
        if len(self.backlog) >= SETTLE_BACKLOG:
            self.backlog.popleft()
            self.dropped += 1
            if self.dropped in (1, 10, 100, 1000) or self.dropped % 10000 == 0:
                log.error("tapgate: %d budget settlements dropped: Redis has been away too long", self.dropped)
        self.backlog.append((reservation, actual, call))
        self._wake.set()

    async def _drain(self) -> None:
        """Until stop(): write what is queued whenever woken; then once more, and end."""
        while True:
            await self._wake.wait()
            self._wake.clear()
            if self.up:
                try:
                    await self._drain_once()
                except Exception as e:  # (the heartbeat notices recovery and wakes us)
                    self._down(e)
            if self._stopping:
                return

    async def _drain_once(self) -> None:
        while self.backlog:
            batch = list(itertools.islice(self.backlog, SETTLE_BATCH))
            settlements = []
            for reservation, actual, _ in batch:
                if isinstance(reservation, Reservation):  # an outage's: no hold in Redis, spend only
                    reservation = Held(uuid.uuid4().hex, "-|0.0|0", Amount(), list(dict.fromkeys(reservation.counters)),
                                       reservation.budgets)
                settlements.append((reservation, actual))
            crossed = await asyncio.wait_for(self.ledger.settle_many(settlements), REDIS_TIMEOUT)
            for _ in batch:
                self.backlog.popleft()
            for (_, _, call), crossings in zip(batch, crossed, strict=True):
                for crossing in crossings:
                    self._fire(crossing, call)

    def _fire(self, crossing: Crossing, call: Any) -> None:
        for fire in self.on_crossing:
            try:
                fire(crossing, call)
            except Exception:  # an alert must never stop settlement
                log.exception("tapgate: budget alert failed")

    # -- health ----------------------------------------------------------------------------------------

    def _down(self, error: BaseException) -> None:
        if self.up:
            self.up = False
            self.outage = Ledger(self.ledger.tz.key)
            self.outage_windows = {}
            if self.failure == "closed":
                log.warning("tapgate: REDIS UNREACHABLE (%s): calls that need a budget or rate-limit check are "
                          "refused with a 503 until it answers (tapgate_redis_failure=closed)", error or type(error).__name__)
            else:
                log.warning("tapgate: REDIS UNREACHABLE (%s): FAILING OPEN: this process admits calls against its own "
                          "1/%d share of each budget and rate limit until Redis answers (tapgate_redis_failure=open)",
                          error or type(error).__name__, max(1, self.peers))

    async def _heartbeat(self) -> None:
        renewed = time.monotonic()
        while True:
            await asyncio.sleep(HEARTBEAT_SECONDS)
            try:
                await asyncio.wait_for(self._beat(), REDIS_TIMEOUT)
                if not self.up:
                    await self._ensure_loaded()
                    self.up = True
                    log.warning("tapgate: Redis answers again: shared budgets and rate limits are back in force "
                                "(%d settlements to write)", len(self.backlog))
                    self._wake.set()
                if time.monotonic() - renewed >= self.ledger.ttl_ms / 4000:
                    await asyncio.wait_for(self.ledger.renew(list(self.live.values())), REDIS_TIMEOUT)
                    renewed = time.monotonic()
                    if released := await asyncio.wait_for(self.ledger.sweep(), REDIS_TIMEOUT):
                        log.info("tapgate: released %d expired budget reservations (a gateway process died "
                                 "with calls in flight)", released)
                if self.backlog:
                    self._wake.set()
            except asyncio.CancelledError:
                raise
            except Exception as e:
                self._down(e)

    async def _beat(self) -> None:
        """Say this process is alive, and count the live ones (each one's share while failing open)."""
        peers = f"{self.ledger.prefix}peers"
        now = time.time()
        pipe = self.ledger.client.pipeline(transaction=True)
        pipe.zadd(peers, {self.ident: now})
        pipe.zremrangebyscore(peers, "-inf", now - PEER_SECONDS)
        pipe.zcard(peers)
        self.peers = int((await pipe.execute())[-1])

    async def _ensure_loaded(self) -> None:
        """Rebuild the settled spend from the store if Redis has none (first start, or data lost)."""
        assert self._rebuilding is not None
        async with self._rebuilding:
            if await self.ledger.client.exists(self.ledger.loaded_key):
                return
            totals = await asyncio.to_thread(self.totals)
            if await self.ledger.load(totals):
                log.warning("tapgate: shared budgets rebuilt in Redis from the store (%d counters)", len(totals))
