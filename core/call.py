"""The request model: one LLM call as the gateway saw it, and the rows it becomes in the store."""

from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from core.errors import Refusal
from core.keys import GatewayKey
from core.tagging import Tags, new_span_id
from providers.base import RequestFacts, Route, Usage
from providers.stream import StreamParser

# Roughly four characters a token: only for calls whose usage never arrived (a cut stream).
CHARS_PER_TOKEN = 4


def iso(ts: float) -> str:
    """UTC ISO-8601 with milliseconds: sorts as text, reads in sqlite3 and Datasette."""
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def ms(start: float | None, end: float | None) -> float | None:
    if start is None or end is None:
        return None
    return round((end - start) * 1000, 3)


@dataclass(frozen=True, slots=True)
class Caller:
    """Who is calling, as the identify stage found it: a gateway key, the router's master key, or
    nobody named. `key_id` names the caller on the row (a gateway key, else the provider key's
    fingerprint the door saw)."""

    key: GatewayKey | None = None
    key_id: str | None = None
    master: bool = False


@dataclass(slots=True)
class CacheRecord:
    """The cache stage's record on the call: its key, whether it was answered from the cache, whether
    it is the call identical ones wait for, and what the stored call used (what a hit saved)."""

    key: str | None = None
    hit: bool = False
    leader: bool = False
    ttl: float = 0.0
    # A hit: the usage of the call that stored the entry, whatever the rendered answer shows.
    usage: Usage | None = None


@dataclass(slots=True)
class RoutingRecord:
    """The router's send stage's record: the deployment that answered (or was tried last), how many
    attempts it took, a span per attempt, and notes for the trace (parameters dropped in translation).
    The route the client asked for stays on the call; this is where the call went."""

    deployment: str | None = None
    route: Route | None = None  # the deployment's provider and endpoint (prices, the row's provider)
    host: str | None = None
    model: str | None = None  # the deployment's model, which prices are looked up under
    attempts: int | None = None
    # The routing rule that matched and why (core/rules.py), and how the plan was chosen (strategies,
    # candidates' scores; core/route_plan.py), for the row and the root span.
    rule: str | None = None
    rule_reason: str | None = None
    plan: dict[str, Any] = field(default_factory=dict)
    # An A/B experiment (routing.experiments): its name and the variant this call got.
    experiment: str | None = None
    variant: str | None = None


@dataclass(repr=False)
class Call:
    """One call, split by owner. The door makes what the client asked (ids, trace, the route asked
    for, host and path) and, once the body is read, `facts`, `body`, `headers`; each stage then owns
    its record: `caller` (identify), `tags` (tag), `reservation` (admit), `cache` (cache), `routing`
    and `spans` (send), `status` (record). `answered_by` says who answered: the provider, the
    gateway itself (`refusal`), or the cache. Lives in flow.metadata["tapgate"] until the flow ends."""

    id: str
    trace_id: str
    span_id: str
    parent_span_id: str | None
    started: float
    mode: str
    route: Route  # what the client asked for: never rewritten (routing.route is where it went)
    host: str
    path: str
    facts: RequestFacts = field(default_factory=RequestFacts)
    # The client's parsed body, lowercased headers, and X-Tapgate-Params object as sent.
    body: Any = None
    headers: dict[str, str] = field(default_factory=dict)
    caller: Caller = field(default_factory=Caller)
    tags: Tags = field(default_factory=Tags)
    # The admit stage: what the call booked in the ledger before it went upstream, and the cheaper
    # model a downgrade rule sends it as (the router).
    reservation: Any = None
    downgraded_to: str | None = None
    cache: CacheRecord = field(default_factory=CacheRecord)
    routing: RoutingRecord = field(default_factory=RoutingRecord)
    # "provider", "gateway" (a refusal) or "cache"; None while the call is on its way.
    answered_by: str | None = None
    refusal: Refusal | None = None
    # Sending (passthrough): the gateway asked this stream for usage the client did not ask for.
    injected_usage: bool = False
    upstream_started: float | None = None
    # The prompt reached a provider (passthrough: handed upstream; router: an attempt went out), so a
    # call that ends without usage, a client gone before the first byte included, is still charged.
    prompt_sent: bool = False
    upstream_span_id: str = field(default_factory=new_span_id)
    first_chunk: float | None = None
    parser: StreamParser | None = None
    # Spans the stages add beside the root and upstream ones (cache lookup, router attempts).
    spans: list[dict[str, Any]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    # The record stage: bodies kept or not (Respan's disable_log), the request body as stored, and
    # the row's status once recorded.
    keep_bodies: bool = True
    request_body: str | None = None
    recorded: bool = False
    status: str | None = None
    # The credentials this call carried or was sent with (the client's key, the deployments' keys):
    # scrubbed from whatever the provider sends back before it is stored or shown. Never stored.
    secrets: list[str] = field(default_factory=list)
    # Router calls rendered from a stored prompt (Respan's `prompt` field): which, and which version.
    prompt_id: str | None = None
    prompt_version: int | None = None
    # The input_policies stage's record: the call's guardrails (core/policies/engine.py CallGuard), or
    # None when no policy applies; the doors run its answer side, the record reads its reports.
    guard: Any = None
    # Who made it: the client its User-Agent names, and `tapgate run`'s tags (program, cwd, repo, branch).
    client: str | None = None
    run: dict[str, str] = field(default_factory=dict)
    # Authenticated by a subscription login (not billed per token): priced as shadow_cost_usd, not cost_usd.
    subscription: bool = False

    def __repr__(self) -> str:
        # Short on purpose: mitmproxy formats flow.metadata for filters (~meta) and views on every flow.
        return f"Call({self.id} {self.provider} {self.route.endpoint})"

    @property
    def provider(self) -> str:
        return self.answering_route.provider.name

    @property
    def answering_route(self) -> Route:
        """The route of whoever answers: the deployment a routed call went to, else the one asked."""
        return self.routing.route or self.route

    @property
    def model(self) -> str | None:
        """The model the call is sent as: a downgrade's, else the one asked for (body or URL)."""
        return self.downgraded_to or self.facts.model or self.route.path_model

    @property
    def refused(self) -> bool:
        """The gateway answered without sending anything upstream: the row's status is `refused`."""
        return self.refusal is not None and self.refusal.refused

    def refuse(self, refusal: Refusal) -> None:
        """The gateway answers the call itself; nothing of it went upstream when `refusal.refused`."""
        self.refusal, self.answered_by = refusal, "gateway"
        if refusal.key is not None:
            self.caller = Caller(refusal.key, refusal.key.id)
        if refusal.refused:
            self.upstream_started, self.prompt_sent = None, False

    def mark_first_chunk(self) -> None:
        if self.first_chunk is None:
            self.first_chunk = time.time()

    def estimate(self, output_chars: int) -> Usage:
        """Usage from sizes, for a call that ended before the provider reported it."""
        return Usage(
            input_tokens=math.ceil(self.facts.prompt_chars / CHARS_PER_TOKEN),
            output_tokens=math.ceil(output_chars / CHARS_PER_TOKEN),
        )

    def rows(
        self,
        *,
        ended: float,
        status_code: int | None,
        status: str,
        error: str | None,
        usage: Usage,
        usage_estimated: bool,
        cost_usd: float | None,
        response_model: str | None,
        response_body: str | None,
        cost_saved: float | None = None,
        shadow_cost: float | None = None,
    ) -> tuple[dict[str, Any], list[dict[str, Any]]]:
        """The `requests` row and its `spans` rows."""
        ttft = ms(self.started, self.first_chunk) if self.facts.stream or self.route.path_stream else None
        request = {
            "id": self.id,
            "trace_id": self.trace_id,
            "span_id": self.span_id,
            "started_at": iso(self.started),
            "duration_ms": ms(self.started, ended),
            "ttft_ms": ttft,
            "mode": self.mode,
            "provider": self.provider,
            "endpoint": self.route.endpoint,
            "host": self.routing.host or self.host,
            "path": self.path,
            "model": self.facts.model,
            "response_model": response_model,
            "stream": int(self.facts.stream or self.route.path_stream),
            "status_code": status_code,
            "status": status,
            "error": error,
            "input_tokens": usage.input_tokens,
            "output_tokens": usage.output_tokens,
            "cache_read_tokens": usage.cache_read_tokens,
            "cache_write_tokens": usage.cache_write_tokens,
            "reasoning_tokens": usage.reasoning_tokens,
            "usage_estimated": int(usage_estimated),
            "cost_usd": cost_usd,
            "shadow_cost_usd": shadow_cost,
            "customer_identifier": self.tags.customer_identifier,
            "thread_identifier": self.tags.thread_identifier,
            "metadata": json.dumps(self.tags.metadata, ensure_ascii=False, default=str),
            "key_id": self.caller.key_id,
            "routed_to": self.routing.deployment,
            "cache_hit": int(self.cache.hit) if self.cache.key else None,
            "cost_saved_usd": cost_saved,
            "attempts": self.routing.attempts,
            "rule": self.routing.rule,
            "rule_reason": self.routing.rule_reason,
            "experiment": self.routing.experiment,
            "variant": self.routing.variant,
            "client": self.client,
            **{tag: self.run.get(tag) for tag in ("program", "cwd", "repo", "branch")},
            "request_body": self.request_body,
            "response_body": response_body,
            "prompt_id": self.prompt_id,
            "prompt_version": self.prompt_version,
            "policies": json.dumps([r.as_dict() for r in self.guard.reports]) if self.guard is not None else None,
        }
        span_status = "ok" if status == "ok" else "error"
        spans = [
            {
                "span_id": self.span_id,
                "trace_id": self.trace_id,
                "parent_span_id": self.parent_span_id,
                "request_id": self.id,
                "name": f"{self.mode} {self.provider} {self.route.endpoint}",
                "started_at": iso(self.started),
                "duration_ms": ms(self.started, ended),
                "status": span_status,
                "attributes": json.dumps(
                    {"model": self.facts.model, "stream": request["stream"], "customer": self.tags.customer_identifier,
                     **({"notes": self.notes} if self.notes else {}),
                     **({"routing": self.routing.plan} if self.routing.plan else {})},
                    default=str,
                ),
            }
        ]
        spans += self.spans
        if self.guard is not None:
            spans += policy_spans(self, self.guard.reports)
        if self.upstream_started is not None:
            spans.append(
                {
                    "span_id": self.upstream_span_id,
                    "trace_id": self.trace_id,
                    "parent_span_id": self.span_id,
                    "request_id": self.id,
                    "name": f"upstream {self.routing.host or self.host}",
                    "started_at": iso(self.upstream_started),
                    "duration_ms": ms(self.upstream_started, ended),
                    "status": span_status,
                    "attributes": json.dumps(
                        {
                            "http.status_code": status_code,
                            "ttft_ms": ttft,
                            "response_model": response_model,
                            "error": error,
                            "injected_include_usage": self.injected_usage,
                        }
                    ),
                }
            )
        return request, spans


def policy_spans(call: Call, reports: list) -> list[dict[str, Any]]:
    """A `policy <name>` span per policy that ran on either side: detectors, action, outcome, counts per
    type and rule ids (never the matched text), the judge's verdict, and the time it took."""
    return [{
        "span_id": new_span_id(), "trace_id": call.trace_id, "parent_span_id": call.span_id, "request_id": call.id,
        "name": f"policy {r.policy}", "started_at": iso(r.started or call.started), "duration_ms": round(r.ms, 3),
        "status": "error" if r.outcome == "blocked" else "ok",
        "attributes": json.dumps({"on": r.on, "detectors": r.detectors, "action": r.action, "outcome": r.outcome,
                                  "counts": r.counts, "rules": r.rules, **({"judge": r.judge} if r.judge else {})}),
    } for r in reports]
