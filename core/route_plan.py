"""A routed call's way: the routing rule that matched (or none), the model it sends the call to, and the
strategies' plan of deployments with their scores; what `tapgate route --explain` prints and the trace keeps."""

from __future__ import annotations

import random
from collections.abc import Iterable
from dataclasses import dataclass, field

from core.config import ModelAlias, RouterConfig, RoutingRule, StreamTimeouts, TapgateConfig
from core.errors import RefusedByRule
from core.routing import Routes, Target, UnknownModel
from core.rules import Decision, Features, RuleSet
from core.strategies import DEFAULT_OUTPUT_TOKENS, Choice, Need

RULE_ALIAS = "rule:"  # a rule's own deployment list is the alias rule:<name>


def rule_aliases(rules: list[RoutingRule]) -> dict[str, ModelAlias]:
    """The aliases a rule's `deployments` make, for Routes(extra=...)."""
    return {RULE_ALIAS + r.name: ModelAlias(deployments=r.deployments) for r in rules if r.deployments}


def unknown_targets(routes: Routes, rules: list[RoutingRule]) -> list[str]:
    """Rules whose `to` names nothing the router can resolve, as messages for the config's error."""
    bad = []
    for number, rule in enumerate(rules):
        if rule.to:
            try:
                routes.resolve(rule.to)
            except UnknownModel:
                bad.append(f"routing.rules.{number} ({rule.name}): to: {rule.to!r} is not an alias, a "
                           "provider/model name or a known model")
    return bad


@dataclass(slots=True)
class Routed:
    """The plan for one call and how it was reached."""

    asked: str
    model: str
    decision: Decision | None
    plan: list[Target]
    choices: list[Choice] = field(default_factory=list)

    @property
    def rule(self) -> str | None:
        return self.decision.rule.name if self.decision else None

    @property
    def reason(self) -> str | None:
        return self.decision.reason if self.decision else None

    def attributes(self) -> dict:
        """For the call's root span."""
        return {"rule": self.rule, "rule_reason": self.reason, "routed_as": self.model,
                "plan": [t.name for t in self.plan],
                "choices": [c.attributes() for c in self.choices]}

    def explain(self) -> dict:
        """What `tapgate route --explain` and the router's X-Tapgate-Explain answer."""
        return {"model": self.asked, "rule": self.rule, "reason": self.reason or "no rule matched",
                "routed_as": self.model, "plan": [t.name for t in self.plan],
                "choices": [c.attributes() for c in self.choices]}


def need_of(features: Features, *, stream: bool, max_tokens: int | None) -> Need:
    return Need(features.input_tokens, max_tokens or DEFAULT_OUTPUT_TOKENS, features.tools, features.images,
                features.json_schema, stream)


def route(routes: Routes, rules: RuleSet, features: Features, model: str, requested_fallbacks: Iterable[str] | None,
          *, stream: bool = False, max_tokens: int | None = None, rng: random.Random | None = None,
          now: float | None = None) -> Routed:
    """The first matching rule applied to `model`, then the plan. Raises RefusedByRule, UnknownModel."""
    decision = rules.decide(features) if len(rules) else None
    target = model
    if decision is not None:
        rule = decision.rule
        if rule.refuse:
            raise RefusedByRule(rule.refuse, rule=rule.name)
        target = rule.to or RULE_ALIAS + rule.name
    plan, choices = routes.choose([target, *routes.fallbacks(target, requested_fallbacks)], rng, now,
                                  need_of(features, stream=stream, max_tokens=max_tokens))
    return Routed(model, target, decision, plan, choices)


def routes_for(config: TapgateConfig, prices, env: dict[str, str] | None = None) -> tuple[Routes, RuleSet]:
    """The router's Routes (rule aliases included) and compiled rules from one config. Raises ValueError."""
    rules = config.routing.rules
    routes = Routes(config.router, prices, env, extra=rule_aliases(rules))
    if bad := unknown_targets(routes, rules):
        raise ValueError("; ".join(bad))
    return routes, RuleSet(rules)


def stream_limits(config: RouterConfig, alias: ModelAlias | None) -> StreamTimeouts:
    """The stream timeouts in force for a call to `alias`: its own fields over the router's."""
    own = alias.stream_timeouts if alias is not None and alias.stream_timeouts is not None else None
    if own is None:
        return config.stream_timeouts
    return config.stream_timeouts.model_copy(update=own.model_dump(exclude_unset=True))
