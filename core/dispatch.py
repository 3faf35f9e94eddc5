"""Dispatch: a routed call sent along its plan through the Upstream it is given, retried and failed over
(core/fallback.py) on the Clock it is given, each deployment's health kept, every attempt recorded.
Imports neither mitmproxy nor an HTTP library: tests drive it with a fake upstream on a virtual clock."""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass

from core.clock import SYSTEM, Clock
from core.config import RetryPolicy
from core.deployment_stats import DeploymentStats
from core.errors import Failure
from core.fallback import attempt_in_order
from core.routing import Cooling, Target
from core.sending import Answer, Upstream, WholeAnswer
from providers.chat import UpstreamRequest


@dataclass(frozen=True, slots=True)
class Attempt:
    """One try at one deployment: when (wall time for spans, monotonic for its length) and how it ended."""

    number: int
    target: Target
    at: float  # epoch seconds when it started
    started: float  # clock.now() at its start
    ended: float
    result: Answer | Failure

    @property
    def failure(self) -> Failure | None:
        return self.result if isinstance(self.result, Failure) else None


@dataclass(frozen=True, slots=True)
class Timeouts:
    connect: float
    first_byte: float


# What the router sends a deployment: the request in its dialect, and whether the answer is relayed as is.
type Prepare = Callable[[Target], tuple[UpstreamRequest, bool]]


class Dispatch:
    """Sends calls through one upstream on one clock; `cooling` is the deployments' shared health."""

    def __init__(self, upstream: Upstream, cooling: Cooling, clock: Clock = SYSTEM,
                 rng: random.Random | None = None, stats: DeploymentStats | None = None) -> None:
        """`stats`: the deployments' recent latency, errors and load (core/deployment_stats.py), kept here."""
        self.upstream, self.cooling, self.clock, self.rng = upstream, cooling, clock, rng
        self.stats = stats if stats is not None else DeploymentStats()

    async def send(self, plan: list[Target], prepare: Prepare, *, stream: bool, policy: RetryPolicy, deadline: float,
                   timeouts: Timeouts, on_attempt: Callable[[Attempt], None]) -> Answer:
        """The first answer along the plan. `prepare` may raise (a request the deployment cannot take);
        `on_attempt` sees each attempt as it ends. Raises ProviderRejected or AllAttemptsFailed."""
        clock = self.clock
        begun: list[tuple[float, float]] = []
        count = 0

        async def one(target: Target, remaining: float) -> Answer | Failure:
            begun.append((clock.wall(), clock.now()))
            if variable := target.missing_key:  # never an unauthenticated call upstream
                return Failure("missing_key", f"its key variable {variable} is not set in the gateway's "
                                              "environment; nothing was sent")
            self.cooling.attempting(target.name)
            request, as_is = prepare(target)
            self.stats.started(target.name)
            try:
                return await self.upstream.attempt(target, request, stream=stream, remaining=remaining,
                                                   connect_timeout=timeouts.connect,
                                                   first_byte_timeout=timeouts.first_byte, as_is=as_is)
            except BaseException:  # cancelled (the client left): no longer in flight, no verdict on it
                self.stats.abandoned(target.name)
                raise

        def ended(target: Target, result: Answer | Failure) -> None:
            nonlocal count
            count += 1
            at, started = begun[-1]
            failed = isinstance(result, Failure)
            probe = (h := self.cooling.health.get(target.name)) is not None and h.probing
            if failed and result.kind != "missing_key":  # a missing key says nothing of the deployment's health
                self.cooling.failed(target.name, clock.now())
            elif not failed:
                self.cooling.succeeded(target.name)
            if result_counts(result):
                self._observe(target, result, started)
            if probe and not failed:  # a cooled deployment answered its probe: it is back, its past forgiven
                self.stats.recovered(target.name)
            on_attempt(Attempt(count, target, at, started, clock.now(), result))

        return await attempt_in_order(plan, one, policy, deadline, ended, sleep=clock.sleep, rng=self.rng,
                                      clock=clock.now)

    def _observe(self, target: Target, result: Answer | Failure, started: float) -> None:
        """Latency and errors for the strategies: a stream counts at its first chunk, ends when released."""
        stats, name, took = self.stats, target.name, self.clock.now() - started
        if isinstance(result, Failure):
            stats.ended(name, ok=False)
        elif isinstance(result, WholeAnswer):
            stats.ended(name, ok=True, seconds=took)
        else:
            stats.first_chunk(name, took)
            result.on_release = lambda ended: stats.ended(name, ok=ended, seconds=self.clock.now() - started)


def result_counts(result: Answer | Failure) -> bool:
    """A missing key never reached the deployment: it says nothing of its speed or health."""
    return not (isinstance(result, Failure) and result.kind == "missing_key")
