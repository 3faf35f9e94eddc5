"""The shared ledger: budget counters and rate windows in Redis, so every gateway process that names the
same Redis admits against the same totals. Admission there is one script (core/shared/scripts.py):
rate limits checked and counted, the worst case reserved under every budget, atomically."""

from __future__ import annotations

import asyncio
import itertools
import uuid
from dataclasses import dataclass, field
from datetime import date, datetime
from functools import lru_cache
from zoneinfo import ZoneInfo

from core.config import Budget, RateLimit
from core.ledger import LIFETIME, Amount, Crossing, OverCap, Scope, period_bounds
from core.shared import scripts
from core.shared.batching import ScriptCalls

UNITS = {"usd": 1, "tokens": 2, "requests": 3}
KEYS_KEPT = 4096
Counter = tuple[Scope, str, str]  # (scope, period, period start), as core/ledger.py names them


@dataclass
class Held:
    """A reservation booked in Redis: released at settle, or by Redis when it expires unrenewed."""

    id: str
    member: str  # the held sets' member: `<id>|<usd>|<tokens>`
    worst: Amount
    counters: list[Counter]
    budgets: list[tuple[Scope, Budget]]
    limited: list[Scope] = field(default_factory=list)  # scopes whose token windows the call counts in
    settled: bool = False


@dataclass(frozen=True)
class RateLimited:
    scope: Scope
    which: str  # "requests" or "tokens"
    retry_after: int
    limit: RateLimit


class NotLoaded(Exception):
    """Redis has no settled spend (a new server, or one that lost its data): rebuild it from the store."""


class SharedLedger:
    """The calls that touch Redis; each raises what redis-py raises when it cannot reach the server."""

    def __init__(self, client, prefix: str = "tapgate:", tz: str = "UTC", reservation_seconds: float = 60.0) -> None:
        self.client = client
        self.prefix = prefix
        self.tz = ZoneInfo(tz)
        self.ttl_ms = int(reservation_seconds * 1000)
        self._admit = client.register_script(scripts.ADMIT)
        self._settle = client.register_script(scripts.SETTLE)
        self._renew = client.register_script(scripts.RENEW)
        self._load = client.register_script(scripts.LOAD)
        self._sweep = client.register_script(scripts.SWEEP)
        self.calls = ScriptCalls(client)  # admissions, and settlements riding with them: one round trip
        self._keys: dict[Counter, str] = {}  # every call names the same few counters: their keys, built once
        # Reservation ids: this process's random prefix and a count, unique across processes without a
        # uuid4 per call (an os.urandom system call and an object: 1% of a busy gateway's event loop).
        self._ids = map(f"{uuid.uuid4().hex[:16]}-{{:x}}".format, itertools.count())

    def now(self) -> datetime:
        return datetime.now(self.tz)

    def counter(self, scope: Scope, period: str, now: datetime) -> Counter:
        return scope, period, _period_start(period, now.date(), now.tzinfo)

    def key(self, counter: Counter) -> str:
        if (key := self._keys.get(counter)) is None:
            if len(self._keys) >= KEYS_KEPT:  # a new period, or a great many scopes: start again
                self._keys.clear()
            (kind, ident), period, start = counter
            key = self._keys[counter] = f"{self.prefix}b:{kind}:{ident}:{period}:{start}"
        return key

    def window(self, scope: Scope, what: str) -> str:
        return f"{self.prefix}rl:{scope[0]}:{scope[1]}:{what}"

    @property
    def held_index(self) -> str:
        return f"{self.prefix}holding"

    @property
    def loaded_key(self) -> str:
        return f"{self.prefix}loaded"

    async def admit(self, budgets: list[tuple[Scope, Budget]], limits: list[tuple[Scope, RateLimit]],
                    worst: Amount) -> Held | OverCap | RateLimited:
        """Check every rate limit and cap and book the call, in one script; raises NotLoaded."""
        now = self.now()
        counters: dict[Counter, int] = {}
        checks = []
        for scope, budget in budgets:
            c = self.counter(scope, budget.period, now)
            index = counters.setdefault(c, len(counters) + 1)
            if budget.cap is not None:
                checks.append((index, scope, budget))
        keys = [self.loaded_key]
        for scope, _ in limits:
            keys += [self.window(scope, "req"), self.window(scope, "tok")]
        for c in counters:
            key = self.key(c)
            keys += [key, key + ":held"]
        keys.append(self.held_index)
        ident = next(self._ids)
        usd, tokens = repr(float(worst.usd)), str(int(worst.tokens))
        args: list = [self.ttl_ms, ident, usd, tokens, len(limits), len(counters), len(checks)]
        for _, limit in limits:
            args += [limit.rpm or 0, limit.tpm or 0]
        for index, _, budget in checks:
            args += [index, UNITS[budget.unit], repr(float(budget.cap))]
        result = await self.calls.run(self._admit, keys, args)
        status = int(result[0])
        if status == -1:
            raise NotLoaded
        if status == 2:
            scope, limit = limits[int(result[1]) - 1]
            which = result[2].decode() if isinstance(result[2], bytes) else result[2]
            return RateLimited(scope, which, int(result[3]), limit)
        if status == 3:
            _, scope, budget = checks[int(result[1]) - 1]
            _, end = period_bounds(budget.period, now)
            c = self.counter(scope, budget.period, now)
            return OverCap(scope, budget, float(result[2]), end, worst.of(budget.unit), c[2])
        return Held(ident, f"{ident}|{usd}|{tokens}", worst, list(counters), list(budgets),
                    [scope for scope, limit in limits if limit.tpm])

    async def settle(self, held: Held, actual: Amount) -> list[Crossing]:
        """Replace the reservation with what the call cost; the thresholds this settlement crossed
        (the counters are incremented in Redis, so exactly one process sees each crossing)."""
        return (await self.settle_many([(held, actual)]))[0]

    async def settle_many(self, settlements: list[tuple[Held, Amount]]) -> list[list[Crossing]]:
        """Several settlements in one round trip, riding with the next admission (core/shared/batching.py):
        what a busy process has queued goes to Redis together. Per settlement, the thresholds it crossed."""
        calls = []
        for held, actual in settlements:
            keys = []
            for c in held.counters:
                key = self.key(c)
                keys += [key, key + ":held"]
            keys += [self.window(scope, "tok") for scope in held.limited]
            usd, tokens = held.member.split("|")[1:]
            calls.append(self.calls.ride(self._settle, keys, [len(held.counters), held.member, repr(float(actual.usd)),
                                                            int(actual.tokens), int(actual.requests), usd, tokens,
                                                            held.id]))
        results = await asyncio.gather(*calls)
        return [self._crossings(held, actual, after) for (held, actual), after in zip(settlements, results, strict=True)]

    def _crossings(self, held: Held, actual: Amount, after: list) -> list[Crossing]:
        crossings = []
        for scope, budget in held.budgets:
            if not (budget.soft or budget.cap):
                continue
            i = next((i for i, c in enumerate(held.counters) if c[0] == scope and c[1] == budget.period), None)
            if i is None:
                continue
            u, t, r = after[i]
            now_spent = Amount(float(u), int(t), int(r)).of(budget.unit)
            old_spent = now_spent - actual.of(budget.unit)
            for threshold in sorted({*budget.soft, *([budget.cap] if budget.cap else [])}):
                if old_spent < threshold <= now_spent:
                    _, end = period_bounds(budget.period, self.now())
                    crossings.append(Crossing(scope, budget, threshold, now_spent, held.counters[i][2], end))
        return crossings

    async def renew(self, holds: list[Held]) -> None:
        """Push back the expiry of reservations whose calls are still running in this process."""
        keys, members = [], []
        for held in holds:
            for c in held.counters:
                keys.append(self.key(c) + ":held")
                members.append(held.member)
        if keys:
            await self._renew(keys=keys, args=[self.ttl_ms, *members])

    async def sweep(self) -> int:
        """Release every expired hold now (a dead process's); how many were released."""
        return int(await self._sweep(keys=[self.held_index]))

    async def load(self, totals: dict[Counter, Amount]) -> bool:
        """Settled spend from the store, unless another process loaded it first. True if this one did."""
        keys, args = [self.loaded_key], []
        for c, amount in totals.items():
            keys.append(self.key(c))
            args += [repr(float(amount.usd)), int(amount.tokens), int(amount.requests)]
        return bool(await self._load(keys=keys, args=args))

    async def standings(self, counters: list[Counter]) -> dict[Counter, tuple[Amount, Amount]]:
        """(settled, reserved) of several counters in one round trip: the budgets table every process
        writes from the same numbers."""
        pipe = self.client.pipeline(transaction=False)
        for counter in counters:
            pipe.hmget(self.key(counter), "su", "st", "sr", "ru", "rt", "rr")
        return {c: _amounts(v) for c, v in zip(counters, await pipe.execute(), strict=True)}

    async def standing(self, counter: Counter) -> tuple[Amount, Amount]:
        """(settled, reserved) of one counter, for tests and the budgets table."""
        return _amounts(await self.client.hmget(self.key(counter), "su", "st", "sr", "ru", "rt", "rr"))


@lru_cache(maxsize=64)
def _period_start(period: str, day: date, tz) -> str:
    """The counter's period start as its key names it: the same all day, so worked out once a day."""
    start, _ = period_bounds(period, datetime(day.year, day.month, day.day, tzinfo=tz))
    return start.isoformat() if start else LIFETIME


def _amounts(values: list) -> tuple[Amount, Amount]:
    n = [float(x) if x is not None else 0.0 for x in values]
    return Amount(n[0], int(n[1]), int(n[2])), Amount(n[3], int(n[4]), int(n[5]))
