"""The dashboard's numbers: a Tally of recent calls and the one function that turns it into a
Snapshot. The gateway feeds its Tally each finished row; `tapgate top` feeds its own from the store
(the rows written since it last looked), so both dashboards compute the same figures the same way."""

from __future__ import annotations

import math
import sqlite3
import threading
from collections import deque
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from cli import queries

LAST_KEEP = 50  # the "last calls" list
# Percentiles are exact over the window's last LATENCY_KEEP successful calls: a redraw sorts at most
# this many values, so its cost (and its share of the proxy's GIL) does not grow with traffic.
LATENCY_KEEP = 20_000
# PostgreSQL: rows `tapgate top` looks back over again each time (a second or two of calls from several gateways)
LATE_ROWS = 1000


def epoch(started_at: str) -> float:
    return datetime.fromisoformat(started_at).timestamp()


def day_of(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).date().isoformat()


@dataclass(frozen=True, slots=True)
class Seen:
    """One call in the window, as little of it as the figures need."""

    started: float
    provider: str
    ok: bool
    duration_ms: float | None
    ttft_ms: float | None
    cache_hit: bool | None = None  # None until the store has a cache_hit column (the cache issue)
    retries: int = 0  # tries of a target beyond its first (the router's `attempt <target>` spans)
    fallback: bool = False  # more than one target tried

    @classmethod
    def of(cls, row: dict[str, Any], attempts: list[str] = ()) -> Seen:
        cache = row.get("cache_hit")
        return cls(
            started=epoch(row["started_at"]),
            provider=row["provider"] or "?",
            ok=row["status"] == "ok",
            duration_ms=row["duration_ms"],
            ttft_ms=row["ttft_ms"],
            cache_hit=None if cache is None else bool(cache),
            retries=len(attempts) - len(set(attempts)),
            fallback=len(set(attempts)) > 1,
        )


@dataclass(slots=True)
class Second:
    """What started in one second: calls and errors per provider, cache hits, fallbacks, retries."""

    providers: dict[str, list[int]]
    cache_hits: int = 0
    cache_lookups: int = 0
    fallbacks: int = 0
    retries: int = 0


class Tally:
    """Counts per second of the last `window_s` seconds, the latencies of recent successful calls,
    today's spend per (key, customer, model), the last calls. `add` is on the gateway's hot path: a
    few updates under a lock held for microseconds; `snapshot` runs on the dashboard's own thread."""

    def __init__(self, window_s: float) -> None:
        self.window_s = window_s
        self.seconds: dict[int, Second] = {}
        self.latencies: deque[tuple[float, float | None, float | None]] = deque(maxlen=LATENCY_KEEP)
        self.last: deque[dict[str, Any]] = deque(maxlen=LAST_KEEP)
        self.day = ""  # the UTC date `spend` counts
        self.spend: dict[tuple[str | None, str | None, str | None], list[float]] = {}
        self.budgets: list[tuple[str, float, float, str]] | None = None  # (name, spent, cap, unit)
        self.rowid = 0  # `tapgate top`: the last store row taken in
        self.late = 0  # how far back `follow` looks again for rows committed after higher-numbered ones
        self.recent: dict[str, int] = {}  # id -> rowid of the rows taken in within `late` of self.rowid
        self.lock = threading.Lock()

    def add(self, row: dict[str, Any], attempts: list[str] = ()) -> None:
        """Count one finished call (a store row; the bodies are not kept)."""
        seen = Seen.of(row, attempts)
        slim = {k: row.get(k) for k in queries.CALL_COLUMNS}
        unpriced = row.get("cost_usd") is None and row.get("input_tokens") is not None
        with self.lock:
            self._count(seen)
            if seen.ok:
                self.latencies.append((seen.started, seen.duration_ms, seen.ttft_ms))
            self.last.append(slim)
            self._spend(row["started_at"][:10], row.get("key_id"), row.get("customer_identifier"), row.get("model"),
                        1, row.get("cost_usd"), int(unpriced))

    def _count(self, s: Seen) -> None:
        second = int(s.started)
        bucket = self.seconds.get(second)
        if bucket is None:
            if len(self.seconds) > self.window_s + 60:  # drop the seconds that left the window
                self.seconds = {k: v for k, v in self.seconds.items() if k >= second - self.window_s}
            bucket = self.seconds[second] = Second({})
        acc = bucket.providers.setdefault(s.provider, [0, 0])
        acc[0] += 1
        acc[1] += not s.ok
        if s.cache_hit is not None:
            bucket.cache_lookups += 1
            bucket.cache_hits += s.cache_hit
        bucket.fallbacks += s.fallback
        bucket.retries += s.retries

    def _spend(self, day: str, key, customer, model, calls: int, cost: float | None, unpriced: int) -> None:
        if day > self.day:
            self.day, self.spend = day, {}
        if day == self.day:  # a call started yesterday and ended today counts for yesterday
            acc = self.spend.setdefault((key, customer, model), [0.0, 0, 0])
            acc[0] += cost or 0.0
            acc[1] += calls
            acc[2] += unpriced

    def seed(self, conn: sqlite3.Connection, now: float, until: str | None = None) -> None:
        """Take in what the store holds (calls started before `until`, if given), in one read
        transaction: the window's calls, today's spend, the last calls, the budgets."""
        since = queries.iso(datetime.fromtimestamp(now - self.window_s, UTC))
        day = day_of(now)
        # PostgreSQL numbers rows as several gateways insert them, and a row may commit after a
        # higher-numbered one: `follow` looks that far back again, skipping the rows it has.
        self.late = LATE_ROWS if getattr(conn, "postgres", False) else 0
        conn.execute("BEGIN")  # one consistent view of the file; a read transaction takes no write lock
        try:
            self.rowid = queries.last_rowid(conn)
            if self.late:
                self.recent = queries.ids_after(conn, self.rowid - self.late)
            rows = queries.calls_since(conn, since, until)
            tries = queries.attempts_since(conn, since)
            spend = queries.spend_since(conn, day + "T00:00:00.000Z", until)
            last = queries.last_calls(conn, LAST_KEEP, until)
            budgets = queries.budgets(conn)
        finally:
            conn.execute("COMMIT")
        old = sorted((Seen.of(r, tries.get(r["id"], [])) for r in rows), key=lambda s: s.started)
        with self.lock:
            for seen in old:
                self._count(seen)
            room = LATENCY_KEEP - len(self.latencies)  # the calls already shown are newer: they stay
            oks = [(s.started, s.duration_ms, s.ttft_ms) for s in old if s.ok]
            self.latencies.extendleft(reversed(oks[len(oks) - room:] if room < len(oks) else oks))
            for r in spend:
                self._spend(day, r["key_id"], r["customer_identifier"], r["model"], r["calls"], r["cost_usd"],
                            r["unpriced"])
            self.last.extendleft(last[: LAST_KEEP - len(self.last)])  # newest first, so the deque stays in order
        self._take_budgets(budgets)

    def follow(self, conn: sqlite3.Connection) -> int:
        """Take in the calls written to the store since the last look; how many there were."""
        conn.execute("BEGIN")
        try:
            rows = queries.calls_after(conn, self.rowid - self.late)
            if self.late:
                rows = [r for r in rows if r["id"] not in self.recent]
            tries = queries.attempts_of(conn, [r["id"] for r in rows]) if rows else {}
            budgets = queries.budgets(conn)
        finally:
            conn.execute("COMMIT")
        for r in rows:
            self.add(r, tries.get(r["id"], []))
            self.rowid = max(self.rowid, r["_rowid"])
        if self.late:
            self.recent.update((r["id"], r["_rowid"]) for r in rows)
            self.recent = {i: n for i, n in self.recent.items() if n > self.rowid - self.late}
        self._take_budgets(budgets)
        return len(rows)

    def read_budgets(self, conn: sqlite3.Connection) -> None:
        """Where the budgets stand now: the gateway rewrites the budgets table every few seconds."""
        self._take_budgets(queries.budgets(conn))

    def _take_budgets(self, rows: list[sqlite3.Row] | None) -> None:
        budgets = None if rows is None else [(r["name"], r["spent"] or 0.0, r["cap"], r["unit"]) for r in rows]
        with self.lock:
            self.budgets = budgets


@dataclass(frozen=True)
class Percentiles:
    p50: float | None = None
    p95: float | None = None
    p99: float | None = None


@dataclass(frozen=True)
class Health:
    provider: str
    calls: int
    errors: int

    @property
    def error_rate(self) -> float:
        return self.errors / self.calls if self.calls else 0.0


@dataclass(frozen=True)
class Spend:
    name: str
    cost_usd: float
    calls: int


@dataclass(frozen=True)
class Snapshot:
    """Everything the dashboard shows, at one instant."""

    at: datetime
    window_s: float
    source: str
    rps_10s: float  # calls started in the last 10 s, per second
    rps_60s: float
    calls: int  # started in the window
    errors: int
    latency: Percentiles  # successful calls, request start to last byte
    ttft: Percentiles  # successful streams
    providers: list[Health]
    fallbacks: int
    retries: int
    cache_hit_rate: float | None  # None: the store does not record cache hits yet
    today_cost_usd: float
    today_calls: int
    today_unpriced: int
    by_key: list[Spend]
    by_customer: list[Spend]
    by_model: list[Spend]
    budgets: list[tuple[str, float, float, str]] | None  # (name, spent, cap, unit); None: no budgets
    last: list[dict[str, Any]]  # newest first
    writer: dict[str, Any] | None = None  # the store writer's status (core/journal.py read_status)

    @property
    def error_rate(self) -> float:
        return self.errors / self.calls if self.calls else 0.0


def percentiles(values: list[float]) -> Percentiles:
    """Nearest rank: the value at rank ceil(p * n), as the latency_by_model view computes it."""
    if not values:
        return Percentiles()
    values = sorted(values)
    at = lambda p: values[max(0, math.ceil(p * len(values)) - 1)]  # noqa: E731
    return Percentiles(at(0.50), at(0.95), at(0.99))


def snapshot(tally: Tally, now: float, source: str = "", writer: dict[str, Any] | None = None) -> Snapshot:
    """What the dashboard shows of a tally at `now` (epoch seconds). Windows are whole seconds:
    "the last 10 s" counts calls that started in second floor(now - 10) or later."""
    since, t10, t60 = (math.floor(now - x) for x in (tally.window_s, 10, 60))
    with tally.lock:
        seconds = [(k, b.providers.copy(), b.cache_hits, b.cache_lookups, b.fallbacks, b.retries)
                   for k, b in tally.seconds.items() if since <= k <= now]
        latencies = [(d, t) for started, d, t in tally.latencies if since <= started < math.floor(now) + 1]
        last = list(tally.last)
        spend = list(tally.spend.items()) if tally.day == day_of(now) else []
        budgets = tally.budgets
    providers: dict[str, list[int]] = {}
    in_10s = in_60s = hits = lookups = fallbacks = retries = 0
    for second, per_provider, b_hits, b_lookups, b_fallbacks, b_retries in seconds:
        calls = 0
        for provider, (c, e) in per_provider.items():
            acc = providers.setdefault(provider, [0, 0])
            acc[0] += c
            acc[1] += e
            calls += c
        in_10s += calls if second >= t10 else 0
        in_60s += calls if second >= t60 else 0
        hits, lookups = hits + b_hits, lookups + b_lookups
        fallbacks, retries = fallbacks + b_fallbacks, retries + b_retries
    groups: dict[str, dict[str, list[float]]] = {"key": {}, "customer": {}, "model": {}}
    for (key, customer, model), (cost, calls, _) in spend:
        for group, name in (("key", key), ("customer", customer), ("model", model)):
            acc = groups[group].setdefault(name or "(none)", [0.0, 0])
            acc[0] += cost
            acc[1] += calls
    ranked = {g: sorted((Spend(n, c, int(k)) for n, (c, k) in totals.items()),
                        key=lambda s: (-s.cost_usd, -s.calls, s.name)) for g, totals in groups.items()}
    return Snapshot(
        at=datetime.fromtimestamp(now, UTC),
        window_s=tally.window_s,
        source=source,
        rps_10s=in_10s / 10,
        rps_60s=in_60s / 60,
        calls=sum(c for c, _ in providers.values()),
        errors=sum(e for _, e in providers.values()),
        latency=percentiles([d for d, _ in latencies if d is not None]),
        ttft=percentiles([t for _, t in latencies if t is not None]),
        providers=sorted((Health(p, c, e) for p, (c, e) in providers.items()), key=lambda h: (-h.calls, h.provider)),
        fallbacks=fallbacks,
        retries=retries,
        cache_hit_rate=hits / lookups if lookups else None,
        today_cost_usd=sum(v[0] for _, v in spend),
        today_calls=int(sum(v[1] for _, v in spend)),
        today_unpriced=int(sum(v[2] for _, v in spend)),
        by_key=ranked["key"],
        by_customer=ranked["customer"],
        by_model=ranked["model"],
        budgets=budgets,
        last=sorted(last, key=lambda r: r["started_at"] or "", reverse=True),
        writer=writer,
    )
