"""Route: the router's send stage. The model (or alias) becomes a plan of deployments; the call is
translated for each deployment in turn and sent along the plan with retries and failover
(core/dispatch.py), every attempt a span. Its answer (whole, or a stream holding its first chunk) goes
back to the door, which relays it in the client's dialect."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from pydantic import ValidationError

from core.call import Call, iso, ms
from core.clock import Clock
from core.config import Configured, RetryPolicy, StreamTimeouts
from core.continuation import Resume, resumer
from core.dispatch import Attempt, Dispatch, Timeouts
from core.errors import BadRequest, RefusedByRule
from core.experiments import Experiments
from core.route_plan import Routed as Planned
from core.route_plan import Routing, stream_limits
from core.routing import Routes, Target, UnknownModel
from core.rules import RuleSet, features_of
from core.sending import Answer, Upstream
from core.tagging import new_span_id
from providers.base import Route as ProviderRoute
from providers.chat import InvalidRequest, UnsupportedParam, UpstreamRequest


@dataclass(frozen=True, slots=True)
class Routed:
    """What only a routed call carries: the client's front (its dialect), the OpenAI chat body the
    router works in, the client's own body and API headers (for deployments of its dialect), the
    notes translating it made, and the OpenAI endpoint relayed as is (embeddings, responses) if any."""

    front: Any
    chat_body: dict[str, Any]
    native_body: dict[str, Any]
    native_headers: dict[str, str]
    notes: list[str]
    as_is: str | None
    wants_usage: bool  # a stream's client asked for the final usage chunk


@dataclass(frozen=True, slots=True)
class Sent:
    """The send stage's answer: the deployment's answer and the request that got it."""

    answer: Answer
    request: UpstreamRequest
    same_dialect: bool  # the deployment speaks the client's dialect: its answer is relayed as is
    deadline: float
    limits: StreamTimeouts = field(default_factory=StreamTimeouts)  # the router's, or the alias's
    resume: Resume | None = None  # continues a broken stream on the next deployment (continue_on_failure)


class RouteCall:
    name = "send"

    def __init__(self, settings: Configured, routes: Routes, upstream: Upstream, clock: Clock,
                 routing: Routing | None = None) -> None:
        """`routing`: the rules and experiments (core/route_plan.py) applied before `routes` orders the
        deployments; none when not given."""
        self.settings, self.routes, self.upstream, self.clock = settings, routes, upstream, clock
        self.routing = routing or Routing(routes, RuleSet([]), Experiments({}))

    def resolve(self, model: str) -> tuple[ProviderRoute, str]:
        """The first deployment a model routes to, for pricing its reservation; raises UnknownModel. A
        name only an A/B experiment knows is priced as its first variant."""
        try:
            target = self.routes.resolve(model)[0]
        except UnknownModel:
            if (split := self.routing.experiments.by_model.get(model)) is None:
                raise
            target = self.routes.resolve(split.experiment.variants[0].to)[0]
        return ProviderRoute(target.endpoint.provider, "chat.completions"), target.model

    async def __call__(self, call: Call, ask) -> Sent:
        routed: Routed = ask.routed
        config = self.settings.config.router
        fields = ask.fields
        planned = self.plan(call, ask)
        plan = planned.plan
        if routed.as_is:
            plan = [t for t in plan if routed.as_is in t.endpoint.relays]
            if not plan:
                raise BadRequest(f"/v1/{routed.as_is} is served by OpenAI-compatible deployments only; no "
                                 f"deployment of {call.model!r} is one.", param="model")
        aim(call, plan[0])
        policy = retry_policy(config.retry, fields.get("retry_params"))
        deadline = self.clock.now() + config.timeout
        translated: dict[str, tuple[UpstreamRequest, bool]] = {}
        limits = stream_limits(config, self.routes.models.get(planned.model))
        # A stream that may be continued on another deployment is translated even for one of the
        # client's dialect: the follower may speak another (core/continuation.py).
        continuing = call.facts.stream and limits.continue_on_failure and not routed.as_is

        def prepare(target: Target, chat_body: dict | None = None) -> tuple[UpstreamRequest, bool]:
            translated[target.name] = sending = self._prepare(call, routed, target, chat_body, continuing)
            call.prompt_sent = True
            if target.key:
                call.secrets.append(target.key)  # its error may echo the key: scrubbed before anyone sees it
            return sending[0], bool(routed.as_is) or sending[1]

        first_byte = limits.first_token if call.facts.stream and limits.first_token else config.first_byte_timeout
        dispatch = Dispatch(self.upstream, self.routes.cooling, self.clock, stats=self.routes.stats)
        send = dict(policy=policy, deadline=deadline, timeouts=Timeouts(config.connect_timeout, first_byte),
                    on_attempt=lambda a: attempted(call, a))
        answer = await dispatch.send(plan, prepare, stream=call.facts.stream, **send)
        aim(call, answer.target)
        request, same_dialect = translated[answer.target.name]
        call.notes += request.notes
        call.answered_by = "provider"
        resume = resumer(dispatch, plan, prepare, routed.chat_body, prompt_chars=call.facts.prompt_chars,
                         note=call.notes.append, **send) if continuing else None
        return Sent(answer, request, same_dialect, deadline, limits, resume)

    def plan(self, call: Call, ask) -> Planned:
        """The call's routing rule, experiment variant and plan, noted on its routing record.
        Raises RefusedByRule."""
        key, tags = call.caller.key, call.tags
        features = features_of(ask.routed.chat_body, metadata=tags.metadata, customer=tags.customer_identifier,
                               key_id=key.id if key else None, key_name=key.name if key else None,
                               headers=ask.headers, thread=tags.thread_identifier)
        try:
            planned = self.routing.route(features, call.model, ask.fields.get("fallback_models"),
                                         stream=call.facts.stream, max_tokens=call.facts.max_tokens,
                                         now=self.clock.now())
        except RefusedByRule as e:
            call.routing.rule, call.routing.rule_reason = e.rule, "refused"
            raise
        record = call.routing
        record.rule, record.rule_reason, record.plan = planned.rule, planned.reason, planned.attributes()
        if planned.assigned:
            record.experiment, record.variant = planned.assigned.experiment, planned.assigned.variant.name
        return planned

    def _prepare(self, call: Call, routed: Routed, target: Target, chat_body: dict | None = None,
                 translate: bool = False) -> tuple[UpstreamRequest, bool]:
        """The request in the deployment's dialect: the client's own when they share one (only the
        model changed) unless `translate`, the OpenAI body for endpoints relayed as is, else a
        translation (of `chat_body` when given: a continuation)."""
        config = self.settings.config.router
        same_dialect = target.endpoint.provider is routed.front.native and not translate
        chat_body = routed.chat_body if chat_body is None else chat_body
        try:
            if same_dialect:
                return UpstreamRequest(f"/v1/{routed.front.endpoint}", {**routed.native_body, "model": target.model},
                                       routed.native_headers), True
            if routed.as_is:
                return UpstreamRequest(f"/{routed.as_is}", {**routed.chat_body, "model": target.model}), False
            request = target.endpoint.adapter.chat_request(chat_body, target.model, stream=call.facts.stream,
                                                           unsupported=config.unsupported_params)
        except (InvalidRequest, UnsupportedParam) as e:
            raise BadRequest(f"{target.name}: {e}", param=e.param) from None
        request.notes = routed.notes + request.notes
        return request, False


def aim(call: Call, target: Target) -> None:
    """Point the call at a deployment: prices, provider and host in the row are that deployment's."""
    routing = call.routing
    routing.route = ProviderRoute(target.endpoint.provider, call.route.endpoint)
    routing.model, routing.deployment = target.model, target.name
    routing.host = urlsplit(target.base_url).netloc


def attempted(call: Call, attempt: Attempt) -> None:
    """Each attempt becomes a span; the row names the last deployment tried, the one that answered if any did."""
    target, result, failure = attempt.target, attempt.result, attempt.failure
    aim(call, target)
    call.routing.attempts = (call.routing.attempts or 0) + 1
    call.spans.append({
        "span_id": new_span_id(), "trace_id": call.trace_id, "parent_span_id": call.span_id,
        "request_id": call.id, "name": f"attempt {target.name}",  # the dashboard counts retries and fallbacks by name
        "started_at": iso(attempt.at), "duration_ms": ms(attempt.started, attempt.ended),
        "status": "error" if failure else "ok",
        "attributes": json.dumps({
            "attempt": call.routing.attempts, "deployment": target.name, "base_url": target.base_url,
            "http.status_code": result.status,
            "error": failure.describe(target.name) if failure else None,
            "failure": failure.kind if failure else None,
        }),
    })


def retry_policy(config: RetryPolicy, params: dict | None) -> RetryPolicy:
    """Respan's retry_params from the request, over config's."""
    if not params:
        return config
    try:
        return RetryPolicy.model_validate({**config.model_dump(), **params})
    except ValidationError as e:
        err = e.errors()[0]
        where = ".".join(str(p) for p in err["loc"])
        raise BadRequest(f"retry_params.{where}: {err['msg']}", param=f"retry_params.{where}") from None
