"""Which deployments may answer a model name, in which order: aliases split by weight, provider/model
names, bare names found in the price table, and the cooldown that skips a failing deployment."""

from __future__ import annotations

import os
import random
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from core.config import Cooldown, Deployment, ModelAlias, RouterConfig
from core.deployment_stats import DeploymentStats
from core.strategies import Choice, Need, order
from providers import Endpoint, endpoint, provider_of
from providers.pricing import PriceTable


class UnknownModel(LookupError):
    """A model name no alias, provider or price row names."""


@dataclass(frozen=True, slots=True)
class Target:
    """One deployment ready to call: where, which model, with which key."""

    name: str  # "anthropic/claude-sonnet-4-5", how it appears in rows, spans and errors
    endpoint: Endpoint
    model: str
    base_url: str
    key: str | None
    weight: float = 1.0
    headers: tuple[tuple[str, str], ...] = ()
    key_env: str | None = None  # the variable the key comes from; set and empty means it is missing

    @property
    def missing_key(self) -> str | None:
        """The variable this deployment's key should come from, when the environment lacks it."""
        return self.key_env if self.key_env and not self.key else None

    @property
    def provider(self) -> str:
        return self.endpoint.name


@dataclass(slots=True)
class Health:
    """Consecutive failures of one deployment; past the threshold it cools down, then one call probes it."""

    failures: int = 0
    cooled_until: float = 0.0
    probing: bool = False


@dataclass
class Cooling:
    policy: Cooldown
    health: dict[str, Health] = field(default_factory=dict)
    # core/shared/health.py (tapgate_redis): called with ("failed" | "succeeded", name) so that the other
    # gateway processes count this one's failures and recoveries too.
    relay: Callable[[str, str], None] | None = None

    def available(self, name: str, now: float) -> bool:
        """Not cooling down, or cooled long enough and no probe of it in flight."""
        h = self.health.get(name)
        if h is None or h.failures < self.policy.failures:
            return True
        return now >= h.cooled_until and not h.probing

    def attempting(self, name: str) -> None:
        """A call is about to try this deployment: if it is cooling down, that call is its probe, and
        the others keep skipping it until the probe's answer (marked here, when the attempt really
        starts, so a plan that never reaches it does not hold the probe)."""
        h = self.health.get(name)
        if h is not None and h.failures >= self.policy.failures:
            h.probing = True

    def succeeded(self, name: str, relayed: bool = False) -> None:
        """Only a recovery is relayed: a deployment no process saw fail is in no process's health
        (relayed failures are counted here too), so every other success would be a publish for nothing."""
        if self.health.pop(name, None) is not None and self.relay is not None and not relayed:
            self.relay("succeeded", name)

    def failed(self, name: str, now: float, relayed: bool = False) -> None:
        if self.relay is not None and not relayed:
            self.relay("failed", name)
        h = self.health.setdefault(name, Health())
        h.failures += 1
        h.probing = False
        if h.failures >= self.policy.failures:
            h.cooled_until = now + self.policy.seconds

    def cooling(self, now: float) -> list[str]:
        return [n for n, h in self.health.items() if h.failures >= self.policy.failures and now < h.cooled_until]


class Routes:
    """Model names to deployments, from config; built again when the config changes."""

    def __init__(self, config: RouterConfig, prices: PriceTable, env: dict[str, str] | None = None,
                 extra: dict[str, ModelAlias] | None = None) -> None:
        """`extra`: aliases beyond config's (a routing rule's deployment list, as `rule:<name>`)."""
        self.config = config
        self.prices = prices
        self.env = os.environ if env is None else env
        self.cooling = Cooling(config.cooldown)
        self.stats = DeploymentStats()
        self.models = {**config.models, **(extra or {})}
        self.aliases = {name: [self._target(d) for d in alias.deployments] for name, alias in self.models.items()}

    def _target(self, d: Deployment) -> Target:
        access = self.config.providers.get(d.provider)
        base_url = d.base_url or (access.base_url if access else None)
        found = endpoint(d.provider, base_url)
        if found is None:
            raise ValueError(f"unknown provider {d.provider!r} (give base_url for an OpenAI-compatible server)")
        key_env = d.api_key_env or (access.api_key_env if access else None) or found.key_env
        return Target(f"{d.provider}/{d.model}", found, d.model, (base_url or found.base_url).rstrip("/"),
                      self.env.get(key_env) if key_env else None, d.weight, tuple(d.headers.items()), key_env)

    def missing_keys(self) -> list[tuple[str, str]]:
        """(deployment, variable) for each configured deployment whose key variable is unset."""
        targets = [t for ts in self.aliases.values() for t in ts]
        for provider, access in self.config.providers.items():
            if access.api_key_env and endpoint(provider, access.base_url) is not None:
                targets.append(self._target(Deployment(provider=provider, model="*")))
        return list(dict.fromkeys((t.name, t.missing_key) for t in targets if t.missing_key))

    def resolve(self, model: str) -> list[Target]:
        """Every deployment that serves `model`. Raises UnknownModel."""
        if (targets := self.aliases.get(model)) is not None:
            return targets
        provider, slash, name = model.partition("/")
        access = self.config.providers.get(provider)
        if slash and endpoint(provider, access.base_url if access else None):
            return [self._target(Deployment(provider=provider, model=name))]
        if (provider := provider_of(model, self.prices)) is not None:
            return [self._target(Deployment(provider=provider, model=model))]
        raise UnknownModel(model)

    def fallbacks(self, model: str, requested: Iterable[str] | None) -> list[str]:
        """The request's fallback_models, else the alias's, else config's for the name."""
        if requested:
            return [m for m in requested if m != model]
        alias = self.models.get(model)
        return list(alias.fallback_models if alias and alias.fallback_models else self.config.fallback_models.get(model, []))

    def plan(self, models: list[str], rng: random.Random | None = None, now: float | None = None,
             need: Need | None = None) -> list[Target]:
        """The order to try deployments in (see `choose`)."""
        return self.choose(models, rng, now, need)[0]

    def choose(self, models: list[str], rng: random.Random | None = None, now: float | None = None,
               need: Need | None = None) -> tuple[list[Target], list[Choice]]:
        """The order to try deployments in: each model in turn, its deployments ordered by its alias's
        strategy (core/strategies.py; weighted by default), cooling ones left out (unless that would leave
        nothing to try), recently failing ones last; and each model's choice, for the trace.
        `now`: the monotonic clock the cooldowns were marked on."""
        rng = rng or random
        now = time.monotonic() if now is None else now
        need = need or Need()
        choices = [order(model, self.models.get(model), self.resolve(model), need, self.stats, self.prices, rng)
                   for model in models]
        ordered = [t for choice in choices for t in choice.order]
        ready = [t for t in ordered if self.cooling.available(t.name, now)]
        for choice in choices:
            choice.skipped |= {t.name: "cooling down" for t in choice.order if t not in ready}
        plan = ready or ordered
        healthy = [t for t in plan if not self.stats.of(t.name).unhealthy(self.config.cooldown.error_rate)]
        return healthy + [t for t in plan if t not in healthy], choices

