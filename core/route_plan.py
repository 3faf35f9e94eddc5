"""A routed call's way: the routing rule that matched (or none), the model it sends the call to, and the
strategies' plan of deployments with their scores; what `tapgate route --explain` prints and the trace keeps."""

from __future__ import annotations

import random
from collections.abc import Iterable
from dataclasses import dataclass, field

from core.config import ModelAlias, RouterConfig, RoutingRule, StreamTimeouts, TapgateConfig
from core.errors import RefusedByRule
from core.experiments import Assigned, Experiments
from core.routing import Routes, Target, UnknownModel
from core.rules import Decision, Features, RuleSet
from core.strategies import DEFAULT_OUTPUT_TOKENS, Choice, Need

RULE_ALIAS = "rule:"  # a rule's own deployment list is the alias rule:<name>


def rule_aliases(rules: list[RoutingRule]) -> dict[str, ModelAlias]:
    """The aliases a rule's `deployments` make, for Routes(extra=...)."""
    return {RULE_ALIAS + r.name: ModelAlias(deployments=r.deployments) for r in rules if r.deployments}


def unknown_targets(routes: Routes, config: TapgateConfig) -> list[str]:
    """Rules and variants whose `to` names nothing the router can resolve, as messages for the config's error."""
    wanted = [(f"routing.rules.{n} ({r.name})", r.to) for n, r in enumerate(config.routing.rules) if r.to]
    wanted += [(f"routing.experiments.{name}.variants.{n} ({v.name})", v.to)
               for name, e in config.routing.experiments.items() for n, v in enumerate(e.variants)]
    bad = []
    for where, to in wanted:
        try:
            routes.resolve(to)
        except UnknownModel:
            bad.append(f"{where}: to: {to!r} is not an alias, a provider/model name or a known model")
    return bad


@dataclass(slots=True)
class Routed:
    """The plan for one call and how it was reached."""

    asked: str
    model: str
    decision: Decision | None
    plan: list[Target]
    choices: list[Choice] = field(default_factory=list)
    assigned: Assigned | None = None  # the A/B experiment's variant, when one splits the model

    @property
    def rule(self) -> str | None:
        return self.decision.rule.name if self.decision else None

    @property
    def reason(self) -> str | None:
        return self.decision.reason if self.decision else None

    def attributes(self) -> dict:
        """For the call's root span."""
        return {"rule": self.rule, "rule_reason": self.reason, "routed_as": self.model,
                **({"experiment": self.assigned.experiment, "variant": self.assigned.variant.name}
                   if self.assigned else {}),
                "plan": [t.name for t in self.plan],
                "choices": [c.attributes() for c in self.choices]}

    def explain(self) -> dict:
        """What `tapgate route --explain` and the router's X-Tapgate-Explain answer."""
        return {"model": self.asked, "rule": self.rule, "reason": self.reason or "no rule matched",
                "routed_as": self.model, "plan": [t.name for t in self.plan],
                **({"experiment": self.assigned.experiment, "variant": self.assigned.variant.name}
                   if self.assigned else {}),
                "choices": [c.attributes() for c in self.choices]}


def need_of(features: Features, *, stream: bool, max_tokens: int | None) -> Need:
    return Need(features.input_tokens, max_tokens or DEFAULT_OUTPUT_TOKENS, features.tools, features.images,
                features.json_schema, stream)


def route(routes: Routes, rules: RuleSet, features: Features, model: str, requested_fallbacks: Iterable[str] | None,
          *, stream: bool = False, max_tokens: int | None = None, rng: random.Random | None = None,
          now: float | None = None, experiments: Experiments | None = None) -> Routed:
    """The first matching rule applied to `model`, then the experiment splitting the name it leads to,
    then the plan. Raises RefusedByRule, UnknownModel."""
    decision = rules.decide(features) if len(rules) else None
    target = model
    if decision is not None:
        rule = decision.rule
        if rule.refuse:
            raise RefusedByRule(rule.refuse, rule=rule.name)
        target = rule.to or RULE_ALIAS + rule.name
    assigned = experiments.assign(target, features.customer, features.thread, rng) if experiments else None
    if assigned is not None:
        target = assigned.variant.to
    plan, choices = routes.choose([target, *routes.fallbacks(target, requested_fallbacks)], rng, now,
                                  need_of(features, stream=stream, max_tokens=max_tokens))
    return Routed(model, target, decision, plan, choices, assigned)


@dataclass(frozen=True, slots=True)
class Routing:
    """What routes a call, built once per config: deployments, rules and experiments."""

    routes: Routes
    rules: RuleSet
    experiments: Experiments

    def route(self, features: Features, model: str, requested_fallbacks: Iterable[str] | None, **how) -> Routed:
        return route(self.routes, self.rules, features, model, requested_fallbacks, experiments=self.experiments,
                     **how)


def routing_for(config: TapgateConfig, prices, env: dict[str, str] | None = None) -> Routing:
    """The router's Routes (rule aliases included), rules and experiments from one config. Raises ValueError."""
    routes = Routes(config.router, prices, env, extra=rule_aliases(config.routing.rules))
    if bad := unknown_targets(routes, config):
        raise ValueError("; ".join(bad))
    return Routing(routes, RuleSet(config.routing.rules), Experiments(config.routing.experiments))


def routes_for(config: TapgateConfig, prices, env: dict[str, str] | None = None) -> tuple[Routes, RuleSet]:
    """routing_for's routes and rules."""
    routing = routing_for(config, prices, env)
    return routing.routes, routing.rules


def stream_limits(config: RouterConfig, alias: ModelAlias | None) -> StreamTimeouts:
    """The stream timeouts in force for a call to `alias`: its own fields over the router's."""
    own = alias.stream_timeouts if alias is not None and alias.stream_timeouts is not None else None
    if own is None:
        return config.stream_timeouts
    return config.stream_timeouts.model_copy(update=own.model_dump(exclude_unset=True))
