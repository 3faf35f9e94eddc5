"""OTLP export: every recorded call becomes OpenTelemetry spans (GenAI semantic conventions plus tapgate's
attributes) sent to the operator's collector, so tapgate's traces join the ones they already keep.

The Recorder listener only appends to a bounded queue; one thread builds the spans with the SDK and
exports them in batches. A collector that is down or slow fills the queue, and what does not fit is
dropped and counted: a call never waits on it."""

from __future__ import annotations

import collections
import json
import logging
import threading
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult
from opentelemetry.sdk.util.instrumentation import InstrumentationScope
from opentelemetry.trace import SpanContext, SpanKind, Status, StatusCode, TraceFlags

log = logging.getLogger(__name__)

# gen_ai.provider.name values of the semantic conventions (registry: gen_ai.provider.name); others as named.
PROVIDER_NAMES = {"gemini": "gcp.gemini", "vertex": "gcp.vertex_ai", "azure": "azure.ai.openai", "xai": "x_ai",
                  "mistral": "mistral_ai", "bedrock": "aws.bedrock"}
OPERATIONS = {"embeddings": "embeddings", "embedContent": "embeddings", "completions": "text_completion"}
BODY_LIMIT = 64 * 1024  # a span attribute, not a store: bodies past this are cut
SAMPLED = TraceFlags(TraceFlags.SAMPLED)


@dataclass
class ExportSettings:
    endpoint: str
    protocol: str = "http/protobuf"  # or "grpc"
    headers: dict[str, str] = field(default_factory=dict)
    bodies: bool = False
    queue_size: int = 4096
    batch_size: int = 512
    timeout: float = 10.0


def parse_headers(text: str) -> dict[str, str]:
    """`k=v,k2=v2`, as OTEL_EXPORTER_OTLP_HEADERS. Raises ValueError naming the bad pair (never its value)."""
    headers = {}
    for pair in filter(None, (p.strip() for p in text.split(","))):
        name, eq, value = pair.partition("=")
        if not eq or not name.strip():
            raise ValueError(f"expected name=value pairs separated by commas, got a pair named {name.strip()!r}")
        headers[name.strip().lower()] = value.strip()
    return headers


def make_exporter(settings: ExportSettings) -> SpanExporter:
    """The official OTLP exporter for the protocol asked for."""
    if settings.protocol == "grpc":
        from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter as GrpcExporter

        return GrpcExporter(endpoint=settings.endpoint, headers=tuple(settings.headers.items()) or None,
                            timeout=settings.timeout, insecure=settings.endpoint.startswith("http://"))
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter as HttpExporter

    return HttpExporter(endpoint=settings.endpoint, headers=settings.headers or None, timeout=settings.timeout)


class OtlpExport:
    """A Recorder listener (`submit`) and the thread that exports; `dropped` counts spans that never
    reached the collector (queue full, export failed), `exported` those it accepted."""

    def __init__(self, settings: ExportSettings, exporter: SpanExporter | None = None) -> None:
        self.settings = settings
        self.exporter = exporter or make_exporter(settings)
        self.queue: collections.deque = collections.deque()
        self.overflowed = 0  # counted by the calls' thread only
        self.failed = 0  # counted by the exporting thread only
        self.exported = 0
        self.resource = Resource.create({"service.name": "tapgate"})
        self.scope = InstrumentationScope("tapgate")
        self.wake = threading.Event()
        self.flushing = threading.Lock()  # one batch built at a time (the thread, or a test calling flush)
        self.stopping = False
        self.thread = threading.Thread(target=self._run, name="tapgate-otlp", daemon=True)
        self.thread.start()

    # -- the call's side: append and return --------------------------------------------------------

    def submit(self, row: dict[str, Any], call: Any = None) -> None:
        if len(self.queue) >= self.settings.queue_size:
            self.overflowed += 1 + len(getattr(call, "spans", ()))
            return
        self.queue.append((row, getattr(call, "parent_span_id", None), list(getattr(call, "spans", ())),
                           finish_reason(call)))
        if len(self.queue) >= self.settings.batch_size and not self.wake.is_set():
            self.wake.set()

    # -- the exporting thread ------------------------------------------------------------------------

    def _run(self) -> None:
        while not self.stopping:
            self.wake.wait(1.0)
            self.wake.clear()
            self.flush()
        self.flush()

    def flush(self) -> None:
        """Export what is queued, a batch at a time (the exporting thread; tests call it directly)."""
        with self.flushing:
            self._flush()

    def _flush(self) -> None:
        while self.queue:
            items = [self.queue.popleft() for _ in range(min(self.settings.batch_size, len(self.queue)))]
            spans = self._build(items)
            try:
                result = self.exporter.export(spans)
            except Exception as e:  # an exporter bug must not stop the thread
                log.debug("tapgate: OTLP export failed: %s", e)
                result = SpanExportResult.FAILURE
            if result is SpanExportResult.SUCCESS:
                self.exported += len(spans)
            else:
                self.failed += len(spans)

    def _build(self, items: list) -> list[ReadableSpan]:
        spans: list[ReadableSpan] = []
        for row, parent, attempts, reason in items:
            try:
                spans += self._spans_of(row, parent, attempts, reason)
            except Exception:  # a malformed row is one call's trace lost, not the exporter
                log.exception("tapgate: cannot build the OTLP span of call %s", row.get("id"))
                self.failed += 1
        return spans

    def _spans_of(self, row: dict[str, Any], parent_id: str | None, attempts: list[dict],
                  reason: str | None) -> list[ReadableSpan]:
        """The call's span, parented on the caller's traceparent when it sent one, and one per attempt.
        Built as the SDK's finished spans directly, with the store's ids: a tracer would make new ids and
        validate every attribute again, for spans that are already over."""
        trace_id = int(row["trace_id"], 16)
        context = SpanContext(trace_id, int(row["span_id"], 16), is_remote=False, trace_flags=SAMPLED)
        parent = SpanContext(trace_id, int(parent_id, 16), is_remote=True, trace_flags=SAMPLED) if parent_id else None
        start = nanos(row["started_at"])
        status = (Status(StatusCode.ERROR, (row.get("error") or row.get("status") or "")[:1024])
                  if row.get("status") != "ok" else Status(StatusCode.UNSET))
        spans = [self._span(span_name(row), context, parent, attributes(row, reason, self.settings.bodies), status,
                            start, start + int((row.get("duration_ms") or 0) * 1e6))]
        for attempt in attempts:
            info = json.loads(attempt.get("attributes") or "{}")
            begun = nanos(attempt["started_at"])
            failed = attempt.get("status") != "ok"
            spans.append(self._span(
                attempt["name"], SpanContext(trace_id, int(attempt["span_id"], 16), False, SAMPLED), context,
                clean({"tapgate.attempt": info.get("attempt"), "tapgate.deployment": info.get("deployment"),
                       "http.response.status_code": info.get("http.status_code"), "error.type": info.get("failure")}),
                Status(StatusCode.ERROR, (info.get("error") or "")[:1024]) if failed else Status(StatusCode.UNSET),
                begun, begun + int((attempt.get("duration_ms") or 0) * 1e6)))
        return spans

    def _span(self, name: str, context: SpanContext, parent: SpanContext | None, attrs: dict[str, Any],
              status: Status, start: int, end: int) -> ReadableSpan:
        return ReadableSpan(name, context, parent, self.resource, attrs, kind=SpanKind.CLIENT, status=status,
                            start_time=start, end_time=end, instrumentation_scope=self.scope)

    @property
    def dropped(self) -> int:
        return self.overflowed + self.failed

    def stop(self, timeout: float = 5.0) -> None:
        """Export what is queued (waiting at most `timeout` seconds), then stop."""
        self.stopping = True
        self.wake.set()
        self.thread.join(timeout)
        self.exporter.shutdown()


def nanos(iso_text: str) -> int:
    return int(datetime.fromisoformat(iso_text.replace("Z", "+00:00")).timestamp() * 1e9)


def operation(row: dict[str, Any]) -> str:
    return OPERATIONS.get(row.get("endpoint") or "", "chat")


def span_name(row: dict[str, Any]) -> str:
    """`{operation} {model}`, as the GenAI conventions name a client span."""
    return f"{operation(row)} {row.get('model') or ''}".strip()


def clean(attrs: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in attrs.items() if v is not None}


def attributes(row: dict[str, Any], reason: str | None, bodies: bool) -> dict[str, Any]:
    provider = row.get("provider") or ""
    attrs = {
        "gen_ai.operation.name": operation(row),
        "gen_ai.provider.name": PROVIDER_NAMES.get(provider, provider),
        "gen_ai.request.model": row.get("model"),
        "gen_ai.response.model": row.get("response_model"),
        "gen_ai.usage.input_tokens": row.get("input_tokens"),
        "gen_ai.usage.output_tokens": row.get("output_tokens"),
        "gen_ai.response.finish_reasons": (reason,) if reason else None,
        "server.address": row.get("host"),
        "http.response.status_code": row.get("status_code"),
        "error.type": row.get("status") if row.get("status") != "ok" else None,
        "tapgate.mode": row.get("mode"),
        "tapgate.cost_usd": row.get("cost_usd"),
        "tapgate.cost_saved_usd": row.get("cost_saved_usd"),
        "tapgate.shadow_cost_usd": row.get("shadow_cost_usd"),
        "tapgate.customer": row.get("customer_identifier"),
        "tapgate.thread": row.get("thread_identifier"),
        "tapgate.key_id": row.get("key_id"),
        "tapgate.cache_hit": bool(row["cache_hit"]) if row.get("cache_hit") is not None else None,
        "tapgate.attempts": row.get("attempts"),
        "tapgate.routed_to": row.get("routed_to"),
        "tapgate.ttft_ms": row.get("ttft_ms"),
        "tapgate.usage_estimated": True if row.get("usage_estimated") else None,
    }
    for name in ("client", "program", "repo", "branch"):
        attrs[f"tapgate.{name}"] = row.get(name)
    if bodies:
        attrs["tapgate.request.body"] = (row.get("request_body") or None) and row["request_body"][:BODY_LIMIT]
        attrs["tapgate.response.body"] = (row.get("response_body") or None) and row["response_body"][:BODY_LIMIT]
    return clean(attrs)


def finish_reason(call: Any) -> str | None:
    """Why the answer stopped, where the call's stream parser saw it."""
    parser = getattr(call, "parser", None)
    state = getattr(parser, "state", None)
    return getattr(getattr(state, "output", None), "finish_reason", None)
