"""How an alias orders its deployments for one call: by weight, cost, latency, load, or cost and latency
together; after skipping the ones that cannot serve the call (context, tools, images, JSON schema).
Returns the order with each candidate's score, for the call's span."""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from core.config import ModelAlias
from core.deployment_stats import DeploymentStats
from providers.model_facts import facts_for
from providers.pricing import PriceTable

if TYPE_CHECKING:
    from core.routing import Target

DEFAULT_OUTPUT_TOKENS = 256  # output assumed for a cost estimate when the request sets no max_tokens


@dataclass(frozen=True, slots=True)
class Need:
    """What the call needs of a deployment, estimated before it is sent."""

    input_tokens: int = 0
    output_tokens: int = DEFAULT_OUTPUT_TOKENS
    tools: bool = False
    images: bool = False
    json_schema: bool = False
    stream: bool = False


@dataclass(slots=True)
class Choice:
    """One model's deployments in the order to try, how each scored, and the ones left out and why."""

    model: str
    strategy: str
    order: list[Target]
    scores: dict[str, float | None] = field(default_factory=dict)
    skipped: dict[str, str] = field(default_factory=dict)

    def attributes(self) -> dict:
        return {"model": self.model, "strategy": self.strategy, "scores": self.scores,
                **({"skipped": self.skipped} if self.skipped else {})}


def weighted_order(targets: list[Target], rng: random.Random | random.Random) -> list[Target]:
    """A weighted shuffle (Efraimidis–Spirakis): each key u^(1/w), highest first."""
    if len(targets) < 2:
        return list(targets)
    return sorted(targets, key=lambda t: rng.random() ** (1.0 / t.weight), reverse=True)


def incapable(target: Target, need: Need) -> str | None:
    """Why the deployment cannot serve the call, by its model's facts; None when it can (or is unknown)."""
    facts = facts_for(target.endpoint.provider.price_prefix, target.model)
    if facts is None:
        return None
    if facts.context is not None and need.input_tokens > facts.context:
        return f"context {facts.context} < ~{need.input_tokens} input tokens"
    for wanted, has, what in ((need.tools, facts.tools, "tools"), (need.images, facts.vision, "images"),
                              (need.json_schema, facts.json_schema, "JSON schema")):
        if wanted and not has:
            return f"no {what}"
    return None


def cost_of(target: Target, need: Need, prices: PriceTable) -> float | None:
    price = prices.price(target.endpoint.provider.price_prefix, target.model)
    if price is None or price.input is None:
        return None
    price = price.for_input(need.input_tokens)
    return (need.input_tokens * price.input + need.output_tokens * (price.output or 0.0)) / 1e6


def latency_of(target: Target, need: Need, stats: DeploymentStats) -> float | None:
    seen = stats.of(target.name)
    return (seen.ttft if need.stream and seen.ttft is not None else seen.total) or seen.ttft


def order(model: str, alias: ModelAlias | None, targets: list[Target], need: Need, stats: DeploymentStats,
          prices: PriceTable, rng: random.Random | random.Random) -> Choice:
    """The alias's strategy applied to its capable deployments (weighted for names that are no alias)."""
    strategy = alias.strategy if alias else "weighted"
    skipped = {t.name: why for t in targets if (why := incapable(t, need))}
    capable = [t for t in targets if t.name not in skipped] or list(targets)  # none can: let the provider say
    base = weighted_order(capable, rng)  # the tie-break, and the order of equals
    if strategy == "weighted":
        return Choice(model, strategy, base, {t.name: t.weight for t in base}, skipped)
    if strategy == "least-busy":
        scores: dict[str, float | None] = {t.name: float(stats.of(t.name).in_flight) for t in base}
    elif strategy == "lowest-cost":
        scores = {t.name: cost_of(t, need, prices) for t in base}
    elif strategy == "lowest-latency":
        scores = {t.name: latency_of(t, need, stats) for t in base}
    else:  # cost-latency: each scaled to the worst candidate's, then weighed
        costs = {t.name: cost_of(t, need, prices) for t in base}
        latencies = {t.name: latency_of(t, need, stats) for t in base}
        worst_cost = max((c for c in costs.values() if c is not None), default=0.0) or 1.0
        worst_latency = max((v for v in latencies.values() if v is not None), default=0.0) or 1.0
        w = alias.cost_weight
        scores = {n: w * (1.0 if costs[n] is None else costs[n] / worst_cost)
                  + (1 - w) * (0.0 if latencies[n] is None else latencies[n] / worst_latency) for n in costs}
    # Lower is better; an unknown cost goes last, an unmeasured latency first (it gets measured).
    missing = float("inf") if strategy == "lowest-cost" else 0.0
    ranked = sorted(base, key=lambda t: missing if scores[t.name] is None else scores[t.name])
    if strategy in ("lowest-latency", "cost-latency") and len(ranked) > 1 and rng.random() < alias.explore:
        pick = rng.randrange(1, len(ranked))  # a little exploration: a recovered deployment gets noticed
        ranked.insert(0, ranked.pop(pick))
    return Choice(model, strategy, ranked, {n: None if s is None else round(s, 9) for n, s in scores.items()},
                  skipped)
