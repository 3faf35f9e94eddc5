"""OTLP spans: one recorded call (as core/otlp.py's compact record) becomes OpenTelemetry spans with the
GenAI semantic conventions plus tapgate's attributes, and the official exporter that sends them. Runs in
the export worker process (core/otlp_worker.py), never on the gateway's GIL.

The worker encodes with core/otlp_wire.py, which reuses the attributes here; SpanBuilder, the SDK's
spans, is the reference its tests compare with (and what a reader of the conventions can follow)."""

from __future__ import annotations

import json
import logging
from datetime import datetime
from typing import Any

from opentelemetry.exporter.otlp.proto.http._common import RequestPayloadTooLargeError, _is_request_too_large
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter as HttpExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult
from opentelemetry.sdk.util.instrumentation import InstrumentationScope
from opentelemetry.semconv.attributes.http_attributes import HTTP_RESPONSE_STATUS_CODE
from opentelemetry.trace import SpanContext, SpanKind, Status, StatusCode, TraceFlags

from core.otlp import FIELDS, ExportSettings

# gen_ai.provider.name values of the semantic conventions (registry: gen_ai.provider.name); others as named.
PROVIDER_NAMES = {"gemini": "gcp.gemini", "vertex": "gcp.vertex_ai", "azure": "azure.ai.openai", "xai": "x_ai",
                  "mistral": "mistral_ai", "bedrock": "aws.bedrock"}
OPERATIONS = {"embeddings": "embeddings", "embedContent": "embeddings", "completions": "text_completion"}
SAMPLED = TraceFlags(TraceFlags.SAMPLED)
log = logging.getLogger("tapgate.otlp_worker")


def make_exporter(settings: ExportSettings) -> SpanExporter:
    """The official OTLP exporter for the protocol asked for, able to send a batch already encoded
    (`export_encoded`, core/otlp_wire.py) through its own transport: endpoint, headers, timeout, retries."""
    if settings.protocol == "grpc":  # grpc is imported only when asked for: 80 ms and 20 MB in the worker
        from core.otlp_grpc import GrpcEncodedExporter

        return GrpcEncodedExporter(endpoint=settings.endpoint, headers=tuple(settings.headers.items()) or None,
                                   timeout=settings.timeout, insecure=settings.endpoint.startswith("http://"))
    return HttpEncodedExporter(endpoint=settings.endpoint, headers=settings.headers or None, timeout=settings.timeout)


class HttpEncodedExporter(HttpExporter):
    """OTLPSpanExporter.export from its encoding on: the size limit, the exporter's own metrics, and its
    client's POST with compression and retries."""

    def export_encoded(self, batch) -> SpanExportResult:
        if self._shutdown:
            return SpanExportResult.FAILURE
        with self._metrics.export_operation(batch.spans) as result:
            if _is_request_too_large(batch.payload, self._max_request_size):
                log.warning("tapgate: dropping an OTLP batch of %d bytes, over the exporter's limit of %d",
                            len(batch.payload), self._max_request_size)
                result.error = RequestPayloadTooLargeError(f"{len(batch.payload)} bytes")
                return SpanExportResult.FAILURE
            sent = self._client.export(batch.payload)
            if not sent.success:
                result.error = sent.error
                if sent.status_code is not None:
                    result.error_attrs = {HTTP_RESPONSE_STATUS_CODE: sent.status_code}
                return SpanExportResult.FAILURE
        return SpanExportResult.SUCCESS


class SpanBuilder:
    """Records to the SDK's finished spans, with the store's ids: a tracer would make new ids and validate
    every attribute again, for spans that are already over."""

    def __init__(self, bodies: bool = False) -> None:
        self.bodies = bodies
        self.resource = Resource.create({"service.name": "tapgate"})
        self.scope = InstrumentationScope("tapgate")

    def spans(self, record: list) -> list[ReadableSpan]:
        """The call's span, parented on the caller's traceparent when it sent one, and one per attempt.
        `record` is [row values in FIELDS' order, parent span id, the call's spans, finish reason]."""
        values, parent_id, attempts, reason = record
        row = dict(zip(FIELDS, values, strict=True))
        trace_id = int(row["trace_id"], 16)
        context = SpanContext(trace_id, int(row["span_id"], 16), is_remote=False, trace_flags=SAMPLED)
        parent = SpanContext(trace_id, int(parent_id, 16), is_remote=True, trace_flags=SAMPLED) if parent_id else None
        start = nanos(row["started_at"])
        status = (Status(StatusCode.ERROR, (row.get("error") or row.get("status") or "")[:1024])
                  if row.get("status") != "ok" else Status(StatusCode.UNSET))
        spans = [self._span(span_name(row), context, parent, attributes(row, reason, self.bodies), status,
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


def nanos(iso_text: str) -> int:
    return int(datetime.fromisoformat(iso_text.replace("Z", "+00:00")).timestamp() * 1e9)


def operation(row: dict[str, Any]) -> str:
    return OPERATIONS.get(row.get("endpoint") or "", "chat")


def span_name(row: dict[str, Any]) -> str:
    """`{operation} {model}`, as the GenAI conventions name a client span."""
    return f"{operation(row)} {row.get('model') or ''}".strip()


def clean(attrs: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in attrs.items() if v is not None}


# The attributes that copy a row's field as it is, when it is set: (attribute, field). Labels are text
# that repeats from call to call (the worker encodes them once, core/otlp_wire.py); measures are numbers.
LABELS = (("gen_ai.request.model", "model"), ("gen_ai.response.model", "response_model"),
          ("server.address", "host"), ("tapgate.mode", "mode"), ("tapgate.customer", "customer_identifier"),
          ("tapgate.thread", "thread_identifier"), ("tapgate.key_id", "key_id"), ("tapgate.routed_to", "routed_to"),
          ("tapgate.client", "client"), ("tapgate.program", "program"), ("tapgate.repo", "repo"),
          ("tapgate.branch", "branch"))
MEASURES = (("gen_ai.usage.input_tokens", "input_tokens"), ("gen_ai.usage.output_tokens", "output_tokens"),
            ("http.response.status_code", "status_code"), ("tapgate.cost_usd", "cost_usd"),
            ("tapgate.cost_saved_usd", "cost_saved_usd"), ("tapgate.shadow_cost_usd", "shadow_cost_usd"),
            ("tapgate.attempts", "attempts"), ("tapgate.ttft_ms", "ttft_ms"))
COPIED = LABELS + MEASURES


def derived(row: dict[str, Any], reason: str | None) -> dict[str, Any]:
    """The call span's attributes computed from the row (None: not sent); then come COPIED's and the bodies."""
    provider, status, cache_hit = row.get("provider") or "", row.get("status"), row.get("cache_hit")
    return {
        "gen_ai.operation.name": operation(row),
        "gen_ai.provider.name": PROVIDER_NAMES.get(provider, provider),
        "gen_ai.response.finish_reasons": (reason,) if reason else None,
        "error.type": status if status != "ok" else None,
        "tapgate.cache_hit": bool(cache_hit) if cache_hit is not None else None,
        "tapgate.usage_estimated": True if row.get("usage_estimated") else None,
    }


def body_attributes(row: dict[str, Any]) -> dict[str, Any]:
    """Only with tapgate_otlp_bodies."""
    return {"tapgate.request.body": row.get("request_body") or None,
            "tapgate.response.body": row.get("response_body") or None}


def attributes(row: dict[str, Any], reason: str | None, bodies: bool) -> dict[str, Any]:
    """The call span's attributes: GenAI semantic conventions and tapgate's."""
    attrs = derived(row, reason)
    attrs.update((name, row.get(field)) for name, field in COPIED)
    if bodies:
        attrs.update(body_attributes(row))
    return clean(attrs)
