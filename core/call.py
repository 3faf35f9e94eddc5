"""The request model: one LLM call as the gateway saw it, and the rows it becomes in the store."""

from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from core.tagging import new_span_id
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


@dataclass(repr=False)
class Call:
    """Everything recorded about one call; lives in flow.metadata["tapgate"] until the flow ends."""

    id: str
    trace_id: str
    span_id: str
    parent_span_id: str | None
    started: float
    mode: str
    route: Route
    host: str
    path: str
    facts: RequestFacts = field(default_factory=RequestFacts)
    customer_identifier: str | None = None
    thread_identifier: str | None = None
    metadata: dict[str, Any] = field(default_factory=dict)
    key_id: str | None = None
    request_body: str | None = None
    # The gateway asked this stream for usage the client did not ask for.
    injected_usage: bool = False
    upstream_started: float | None = None
    # The prompt reached a provider (passthrough: handed upstream; router: an attempt went out), so a
    # call that ends without usage, a client gone before the first byte included, is still charged.
    prompt_sent: bool = False
    upstream_span_id: str = field(default_factory=new_span_id)
    first_chunk: float | None = None
    parser: StreamParser | None = None
    recorded: bool = False
    # Respan's per-customer budget sent with the call (X-Tapgate-Params customer_params).
    customer_params: dict[str, Any] = field(default_factory=dict)
    # The gateway answered the call itself and why (budget_exceeded, rate_limited, ...).
    refused: str | None = None
    # What the call booked in the ledger before it went upstream (core/admission.py).
    reservation: Any = None
    # Router calls: the deployment model prices are looked up under (the client may have sent an alias).
    priced_as: str | None = None
    # Router calls: which deployment answered, after how many attempts, one span per attempt, and
    # notes for the trace (parameters dropped in translation).
    routed_to: str | None = None
    attempts: int | None = None
    attempt_spans: list[dict[str, Any]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    keep_bodies: bool = True
    # The response cache: this call's key, whether it was answered from the cache, whether it is
    # the one identical calls wait for; `status` is the row's status once recorded.
    cache_key: str | None = None
    cache_hit: bool = False
    cache_leader: bool = False
    cache_ttl: float = 0.0
    # A hit: the usage of the call that stored the entry (what the hit saved), whatever the rendered
    # answer shows (a stream rendered from a whole answer carries no usage the client did not ask for).
    cached_usage: Usage | None = None
    status: str | None = None
    # The client's parsed body, lowercased headers and X-Tapgate-Params object as sent (the cache reads them).
    body: Any = None
    headers: dict[str, str] = field(default_factory=dict)
    params: dict[str, Any] = field(default_factory=dict)
    # The credentials this call carried or was sent with (the client's key, the deployments' keys):
    # scrubbed from whatever the provider sends back before it is stored or shown. Never stored.
    secrets: list[str] = field(default_factory=list)

    def __repr__(self) -> str:
        # Short on purpose: mitmproxy formats flow.metadata for filters (~meta) and views on every flow.
        return f"Call({self.id} {self.provider} {self.route.endpoint})"

    @property
    def provider(self) -> str:
        return self.route.provider.name

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
            "host": self.host,
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
            "customer_identifier": self.customer_identifier,
            "thread_identifier": self.thread_identifier,
            "metadata": json.dumps(self.metadata, ensure_ascii=False, default=str),
            "key_id": self.key_id,
            "routed_to": self.routed_to,
            "cache_hit": int(self.cache_hit) if self.cache_key else None,
            "cost_saved_usd": cost_saved,
            "attempts": self.attempts,
            "request_body": self.request_body,
            "response_body": response_body,
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
                    {"model": self.facts.model, "stream": request["stream"], "customer": self.customer_identifier,
                     **({"notes": self.notes} if self.notes else {})},
                    default=str,
                ),
            }
        ]
        spans += self.attempt_spans
        if self.upstream_started is not None:
            spans.append(
                {
                    "span_id": self.upstream_span_id,
                    "trace_id": self.trace_id,
                    "parent_span_id": self.span_id,
                    "request_id": self.id,
                    "name": f"upstream {self.host}",
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
