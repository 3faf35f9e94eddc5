"""The ledger: what each key, customer and the whole gateway spent in each budget period, in memory.

A call reserves its worst case before it goes upstream and settles to what the provider reported
when it ends. `reserve` checks every cap and books the reservation with no await in between (it is
plain synchronous code on the event loop), so concurrent calls cannot slip past a cap together.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING
from zoneinfo import ZoneInfo

if TYPE_CHECKING:  # annotations only: `tapgate logs` prints plural() without building the config models
    from core.config import Budget, Period, Unit

Scope = tuple[str, str]  # ("key", id) | ("customer", id) | ("global", "")
LIFETIME = "lifetime"


@dataclass
class Amount:
    usd: float = 0.0
    tokens: int = 0
    requests: int = 0

    def of(self, unit: Unit) -> float:
        return self.usd if unit == "usd" else self.tokens if unit == "tokens" else self.requests

    def add(self, other: Amount, sign: int = 1) -> None:
        self.usd += sign * other.usd
        self.tokens += sign * other.tokens
        self.requests += sign * other.requests


def period_bounds(period: Period, now: datetime) -> tuple[datetime | None, datetime | None]:
    """Calendar start and end of the period holding `now` (in now's zone); None for a lifetime."""
    day = now.replace(hour=0, minute=0, second=0, microsecond=0)
    if period == "day":
        return day, day + timedelta(days=1)
    if period == "week":  # weeks start on Monday (ISO 8601)
        start = day - timedelta(days=day.weekday())
        return start, start + timedelta(days=7)
    if period == "month":
        start = day.replace(day=1)
        return start, (start + timedelta(days=32)).replace(day=1)
    if period == "year":
        start = day.replace(month=1, day=1)
        return start, start.replace(year=start.year + 1)
    return None, None


@dataclass(frozen=True)
class OverCap:
    scope: Scope
    budget: Budget
    spent: float  # settled plus reserved by calls in flight, in the budget's unit
    resets_at: datetime | None
    reserving: float = 0.0  # what the refused call would have reserved (its worst case), same unit
    period_start: str = LIFETIME

    def message(self, worst_case: str = "") -> str:
        """`worst_case` says how the call's reservation was reckoned; it is named for USD and token
        budgets, where the reservation (not spend) is often what no longer fits."""
        unit, cap = self.budget.unit, self.budget.cap
        resets = f"; it resets at {self.resets_at.isoformat()}" if self.resets_at else " (a lifetime budget)"
        why = ""
        if worst_case and unit != "requests":
            whole = ", more than the whole budget" if cap is not None and self.reserving > cap else ""
            why = f"; this call reserves up to {fmt(self.reserving, unit)}{whole}: {worst_case}"
        return (
            f"Budget exceeded for {who(*self.scope)}: {fmt(self.spent, unit)} of {fmt(cap, unit)} per "
            f"{self.budget.period} spent or reserved by calls in flight{why}{resets}."
        )


@dataclass(frozen=True)
class Crossing:
    """A soft threshold (or the cap) that settled spend has just reached, once per period; or, with
    `refusing` set (the refused call's worst case), a cap that has started refusing calls."""

    scope: Scope
    budget: Budget
    threshold: float
    spent: float
    period_start: str
    resets_at: datetime | None
    refusing: float | None = None


@dataclass
class Reservation:
    """What one call booked: the worst case, under each (scope, period) it counts against."""

    worst: Amount
    counters: list[tuple[Scope, str, str]] = field(default_factory=list)  # (scope, period, start)
    budgets: list[tuple[Scope, Budget]] = field(default_factory=list)
    settled: bool = False


def who(scope: str, scope_id: str) -> str:
    """How a message names a scope: "the gateway", "key key_1a2b", "customer acme"."""
    return "the gateway" if scope == "global" else f"{scope} {scope_id}"


def plural(n: int, word: str) -> str:
    """`1 call`, `2 calls`, `1,000 calls`."""
    return f"{n:,} {word}{'' if n == 1 else 's'}"


def fmt(value: float | None, unit: str) -> str:
    if value is None:
        return "-"
    return f"${value:.6g}" if unit == "usd" else f"{value:g} {unit}"


class Ledger:
    def __init__(self, tz: str = "UTC") -> None:
        self.tz = ZoneInfo(tz)
        self.spent: dict[tuple[Scope, str, str], Amount] = {}
        self.reserved: dict[tuple[Scope, str, str], Amount] = {}

    def now(self) -> datetime:
        return datetime.now(self.tz)

    def _counter(self, scope: Scope, period: Period, now: datetime) -> tuple[tuple[Scope, str, str], datetime | None]:
        start, end = period_bounds(period, now)
        return (scope, period, start.isoformat() if start else LIFETIME), end

    def standing(self, scope: Scope, budget: Budget, now: datetime | None = None) -> tuple[float, float, datetime | None]:
        """(settled, reserved, resets_at) of one budget now."""
        key, end = self._counter(scope, budget.period, now or self.now())
        spent, reserved = self.spent.get(key, Amount()), self.reserved.get(key, Amount())
        return spent.of(budget.unit), reserved.of(budget.unit), end

    def reserve(self, budgets: list[tuple[Scope, Budget]], worst: Amount) -> Reservation | OverCap:
        """Book the worst case against every budget, or refuse if any cap would be passed."""
        now = self.now()
        keys: dict[tuple[Scope, str, str], None] = {}
        for scope, budget in budgets:
            key, end = self._counter(scope, budget.period, now)
            keys[key] = None
            if budget.cap is None:
                continue
            spent = self.spent.get(key, Amount()).of(budget.unit) + self.reserved.get(key, Amount()).of(budget.unit)
            if spent + worst.of(budget.unit) > budget.cap + 1e-12:
                return OverCap(scope, budget, spent, end, worst.of(budget.unit), key[2])
        for key in keys:
            self.reserved.setdefault(key, Amount()).add(worst)
        return Reservation(worst, list(keys), list(budgets))

    def settle(self, reservation: Reservation, actual: Amount) -> list[Crossing]:
        """Replace the reservation with what the call really cost; report thresholds just crossed."""
        if reservation.settled:
            return []
        reservation.settled = True
        before = {}
        for key in reservation.counters:
            spent = self.spent.setdefault(key, Amount())
            before[key] = Amount(spent.usd, spent.tokens, spent.requests)
            spent.add(actual)
            self.reserved[key].add(reservation.worst, -1)
        crossings = []
        now = self.now()
        for scope, budget in reservation.budgets:
            key, end = self._counter(scope, budget.period, now)
            if key not in before:
                continue
            old, new = before[key].of(budget.unit), self.spent[key].of(budget.unit)
            for threshold in sorted({*budget.soft, *([budget.cap] if budget.cap else [])}):
                if old < threshold <= new:
                    crossings.append(Crossing(scope, budget, threshold, new, key[2], end))
        return crossings

    def load(self, totals: dict[tuple[Scope, str, str], Amount]) -> None:
        """Settled spend read back from the store at start, so a restart forgets nothing."""
        self.spent = {k: Amount(v.usd, v.tokens, v.requests) for k, v in totals.items()}
        self.reserved = {}
