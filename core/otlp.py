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

from opentelemetry import trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult
from opentelemetry.sdk.trace.id_generator import IdGenerator, RandomIdGenerator
from opentelemetry.trace import SpanContext, SpanKind, Status, StatusCode, TraceFlags

log = logging.getLogger(__name__)

# gen_ai.provider.name values of the semantic conventions (registry: gen_ai.provider.name); others as named.
PROVIDER_NAMES = {"gemini": "gcp.gemini", "vertex": "gcp.vertex_ai", "azure": "azure.ai.openai", "xai": "x_ai",
                  "mistral": "mistral_ai", "bedrock": "aws.bedrock"}
OPERATIONS = {"embeddings": "embeddings", "embedContent": "embeddings", "completions": "text_completion"}
BODY_LIMIT = 64 * 1024  # a span attribute, not a store: bodies past this are cut


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


class GivenIds(IdGenerator):
    """The store's own ids for the span being built, so a trace in the collector and in the store match."""

    def __init__(self) -> None:
        self.span_id: int | None = None
        self.trace_id: int | None = None
        self.random = RandomIdGenerator()

    def generate_span_id(self) -> int:
        value, self.span_id = self.span_id, None
        return value or self.random.generate_span_id()

    def generate_trace_id(self) -> int:
        value, self.trace_id = self.trace_id, None
        return value or self.random.generate_trace_id()


class Collect(SpanProcessor):
    """Keeps ended spans for the exporting thread to send in one batch."""

    def __init__(self) -> None:
        self.spans: list[ReadableSpan] = []

    def on_end(self, span: ReadableSpan) -> None:
        self.spans.append(span)


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
        self.ids = GivenIds()
        self.collect = Collect()
        self.provider = TracerProvider(resource=Resource.create({"service.name": "tapgate"}), id_generator=self.ids)
        self.provider.add_span_processor(self.collect)
        self.tracer = self.provider.get_tracer("tapgate")
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
        self.collect.spans = []
        for row, parent, attempts, reason in items:
            try:
                self._spans_of(row, parent, attempts, reason)
            except Exception:  # a malformed row is one call's trace lost, not the exporter
                log.exception("tapgate: cannot build the OTLP span of call %s", row.get("id"))
                self.failed += 1
        return self.collect.spans

    def _spans_of(self, row: dict[str, Any], parent_id: str | None, attempts: list[dict], reason: str | None) -> None:
        """The call's span, parented on the caller's traceparent when it sent one, and one per attempt."""
        parent = None
        if parent_id:
            parent = trace.set_span_in_context(trace.NonRecordingSpan(SpanContext(
                int(row["trace_id"], 16), int(parent_id, 16), is_remote=True,
                trace_flags=TraceFlags(TraceFlags.SAMPLED))))
        else:
            self.ids.trace_id = int(row["trace_id"], 16)
        self.ids.span_id = int(row["span_id"], 16)
        start = nanos(row["started_at"])
        end = start + int((row.get("duration_ms") or 0) * 1e6)
        span = self.tracer.start_span(span_name(row), context=parent, kind=SpanKind.CLIENT, start_time=start,
                                      attributes=attributes(row, reason, self.settings.bodies))
        if row.get("status") != "ok":
            span.set_status(Status(StatusCode.ERROR, (row.get("error") or row.get("status") or "")[:1024]))
        for attempt in attempts:
            self._attempt(span, attempt)
        span.end(end_time=end)

    def _attempt(self, parent: Any, attempt: dict) -> None:
        info = json.loads(attempt.get("attributes") or "{}")
        self.ids.span_id = int(attempt["span_id"], 16)
        start = nanos(attempt["started_at"])
        span = self.tracer.start_span(attempt["name"], context=trace.set_span_in_context(parent),
                                      kind=SpanKind.CLIENT, start_time=start, attributes=clean({
                                          "tapgate.attempt": info.get("attempt"),
                                          "tapgate.deployment": info.get("deployment"),
                                          "http.response.status_code": info.get("http.status_code"),
                                          "error.type": info.get("failure")}))
        if attempt.get("status") != "ok":
            span.set_status(Status(StatusCode.ERROR, (info.get("error") or "")[:1024]))
        span.end(end_time=start + int((attempt.get("duration_ms") or 0) * 1e6))

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
        "gen_ai.system": PROVIDER_NAMES.get(provider, provider),  # the older name, still read by many backends
        "gen_ai.request.model": row.get("model"),
        "gen_ai.response.model": row.get("response_model"),
        "gen_ai.usage.input_tokens": row.get("input_tokens"),
        "gen_ai.usage.output_tokens": row.get("output_tokens"),
        "gen_ai.response.finish_reasons": [reason] if reason else None,
        "server.address": row.get("host"),
        "http.response.status_code": row.get("status_code"),
        "error.type": row.get("status") if row.get("status") != "ok" else None,
        "tapgate.mode": row.get("mode"),
        "tapgate.status": row.get("status"),
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
        "tapgate.usage_estimated": bool(row.get("usage_estimated")),
        "tapgate.request_id": row.get("id"),
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
