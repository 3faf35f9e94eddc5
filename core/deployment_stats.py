"""What recent calls say of each deployment: moving averages of time to first token and total time,
recent error rate, and calls in flight; shared by every call, read by the routing strategies."""

from __future__ import annotations

from dataclasses import dataclass, field

ALPHA = 0.3  # weight of the newest call in each moving average: about the last 5 calls count
MIN_CALLS = 3  # calls before a deployment's error rate counts (router.cooldown.error_rate)


def _ewma(old: float | None, new: float) -> float:
    return new if old is None else old + ALPHA * (new - old)


@dataclass(slots=True)
class Observed:
    """One deployment's recent record."""

    ttft: float | None = None  # seconds from sending to the first chunk (streams), moving average
    total: float | None = None  # seconds from sending to the end of the answer, moving average
    errors: float = 0.0  # moving average of failed (1) and answered (0) attempts
    calls: int = 0
    in_flight: int = 0

    def unhealthy(self, error_rate: float | None) -> bool:
        """Failing more often than `error_rate` lately (None: never said to be)."""
        return error_rate is not None and self.calls >= MIN_CALLS and self.errors > error_rate


@dataclass
class DeploymentStats:
    """Per deployment name; updated as attempts start, reach their first chunk, and end."""

    seen: dict[str, Observed] = field(default_factory=dict)

    def of(self, name: str) -> Observed:
        return self.seen.get(name) or Observed()

    def started(self, name: str) -> None:
        self.seen.setdefault(name, Observed()).in_flight += 1

    def first_chunk(self, name: str, seconds: float) -> None:
        o = self.seen.setdefault(name, Observed())
        o.ttft = _ewma(o.ttft, seconds)

    def abandoned(self, name: str) -> None:
        """An attempt stopped by its caller: out of flight, counted neither way."""
        o = self.seen.setdefault(name, Observed())
        o.in_flight = max(0, o.in_flight - 1)

    def recovered(self, name: str) -> None:
        """It answered the probe after a cooldown (core/routing.py): its recent errors no longer count."""
        o = self.seen.setdefault(name, Observed())
        o.errors, o.calls = 0.0, 0

    def ended(self, name: str, *, ok: bool, seconds: float | None = None) -> None:
        """An attempt is over: failed, or answered (`seconds` from sending to its end)."""
        o = self.seen.setdefault(name, Observed())
        o.in_flight = max(0, o.in_flight - 1)
        o.calls += 1
        o.errors = _ewma(o.errors if o.calls > 1 else None, 0.0 if ok else 1.0)
        if ok and seconds is not None:
            o.total = _ewma(o.total, seconds)
