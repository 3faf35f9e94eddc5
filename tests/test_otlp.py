"""core/otlp.py: rows to GenAI spans with the SDK, parented on the caller's trace; a stuck exporter
never holds up the submitting side, and what it cannot take is counted."""

from __future__ import annotations

import threading
from types import SimpleNamespace

import pytest
from opentelemetry.sdk.trace.export import SpanExportResult
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from core.otlp import ExportSettings, OtlpExport, parse_headers

TRACE, SPAN, PARENT = "0af7651916cd43dd8448eb211c80319c", "b7ad6b7169203331", "00f067aa0ba902b7"


def row(**over):
    base = {"id": "r1", "trace_id": TRACE, "span_id": SPAN, "started_at": "2026-01-02T03:04:05.000Z",
            "duration_ms": 1500.0, "mode": "router", "provider": "anthropic", "endpoint": "messages",
            "model": "claude-sonnet-4-5", "response_model": "claude-sonnet-4-5-20250929", "status": "ok",
            "status_code": 200, "input_tokens": 12, "output_tokens": 7, "cost_usd": 0.001,
            "customer_identifier": "acme", "thread_identifier": "t-1", "cache_hit": 0, "attempts": 2,
            "request_body": '{"secret-prompt": 1}', "response_body": "answer"}
    return {**base, **over}


def call(parent=None, attempts=(), reason=None):
    state = SimpleNamespace(output=SimpleNamespace(finish_reason=reason))
    return SimpleNamespace(parent_span_id=parent, spans=list(attempts), parser=SimpleNamespace(state=state))


@pytest.fixture
def memory():
    exporter = InMemorySpanExporter()
    exports = []
    yield exporter, exports
    for e in exports:
        e.stop()


def export(memory, **settings) -> OtlpExport:
    exporter, exports = memory
    e = OtlpExport(ExportSettings(endpoint="http://127.0.0.1:1/v1/traces", **settings), exporter)
    exports.append(e)
    return e


def test_genai_attributes_and_ids(memory):
    e = export(memory)
    e.submit(row(), call(reason="end_turn"))
    e.flush()
    (span,) = memory[0].get_finished_spans()
    assert span.name == "chat claude-sonnet-4-5"
    assert f"{span.context.trace_id:032x}" == TRACE and f"{span.context.span_id:016x}" == SPAN
    assert span.parent is None
    a = span.attributes
    assert a["gen_ai.operation.name"] == "chat" and a["gen_ai.provider.name"] == "anthropic"
    assert a["gen_ai.request.model"] == "claude-sonnet-4-5"
    assert a["gen_ai.response.model"] == "claude-sonnet-4-5-20250929"
    assert (a["gen_ai.usage.input_tokens"], a["gen_ai.usage.output_tokens"]) == (12, 7)
    assert a["gen_ai.response.finish_reasons"] == ("end_turn",)
    assert (a["tapgate.cost_usd"], a["tapgate.customer"], a["tapgate.thread"]) == (0.001, "acme", "t-1")
    assert (a["tapgate.cache_hit"], a["tapgate.attempts"]) == (False, 2)
    assert "tapgate.request.body" not in a and "tapgate.response.body" not in a  # bodies only when asked
    assert span.end_time - span.start_time == 1_500_000_000


def test_parented_on_the_callers_traceparent_with_attempt_children(memory):
    e = export(memory, bodies=True)
    attempt = {"span_id": "1111111111111111", "name": "attempt openai/gpt", "started_at": "2026-01-02T03:04:05.100Z",
               "duration_ms": 10.0, "status": "error",
               "attributes": '{"attempt": 1, "deployment": "openai/gpt", "failure": "status", "error": "500"}'}
    e.submit(row(provider="gemini", endpoint="embedContent", status="error", error="boom"), call(PARENT, [attempt]))
    e.flush()
    spans = {s.name: s for s in memory[0].get_finished_spans()}
    main, child = spans["embeddings claude-sonnet-4-5"], spans["attempt openai/gpt"]
    assert f"{main.parent.span_id:016x}" == PARENT and main.parent.is_remote
    assert f"{main.context.trace_id:032x}" == TRACE
    assert child.parent.span_id == main.context.span_id and child.attributes["tapgate.deployment"] == "openai/gpt"
    assert main.attributes["gen_ai.provider.name"] == "gcp.gemini"
    assert main.attributes["gen_ai.operation.name"] == "embeddings"
    assert main.status.status_code.name == "ERROR" and child.status.status_code.name == "ERROR"
    assert main.attributes["tapgate.request.body"] == '{"secret-prompt": 1}'


class Stuck:
    """An exporter that holds its first export until released (a collector that never answers)."""

    def __init__(self):
        self.entered, self.release, self.batches = threading.Event(), threading.Event(), []

    def export(self, spans):
        self.entered.set()
        self.release.wait()
        self.batches.append(len(spans))
        return SpanExportResult.FAILURE

    def shutdown(self):
        self.release.set()


def test_a_stuck_collector_never_holds_the_caller_and_drops_are_counted():
    stuck = Stuck()
    e = OtlpExport(ExportSettings(endpoint="x", queue_size=3, batch_size=1), stuck)
    e.submit(row(), call())
    assert stuck.entered.wait(10)  # the exporting thread is now inside export(), held
    for _ in range(5):  # the submitting side returns at once: three queued, two over the bound
        e.submit(row(), call())
    assert (len(e.queue), e.overflowed) == (3, 2)
    stuck.release.set()
    e.stop()
    assert e.failed == 4 and e.dropped == 6 and e.exported == 0  # every export failed: all counted


def test_headers():
    assert parse_headers("Authorization=Bearer x, x-team = a=b") == {"authorization": "Bearer x", "x-team": "a=b"}
    with pytest.raises(ValueError, match="'nope'"):
        parse_headers("nope")


def test_grpc_export_to_a_loopback_collector():
    """tapgate_otlp_protocol=grpc: the official gRPC exporter, received by a loopback gRPC collector
    that decodes with the official types."""
    from concurrent import futures

    import grpc
    from opentelemetry.proto.collector.trace.v1 import trace_service_pb2, trace_service_pb2_grpc

    received = []

    class Collector(trace_service_pb2_grpc.TraceServiceServicer):
        def Export(self, request, context):
            received.extend(s for rs in request.resource_spans for ss in rs.scope_spans for s in ss.spans)
            return trace_service_pb2.ExportTraceServiceResponse()

    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    trace_service_pb2_grpc.add_TraceServiceServicer_to_server(Collector(), server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    e = OtlpExport(ExportSettings(endpoint=f"http://127.0.0.1:{port}", protocol="grpc", headers={"x-k": "v"}))
    try:
        e.submit(row(), call(PARENT))
        e.flush()
        assert e.exported == 1 and e.dropped == 0
        (span,) = received
        assert span.trace_id.hex() == TRACE and span.parent_span_id.hex() == PARENT
        assert span.name == "chat claude-sonnet-4-5"
    finally:
        e.stop()
        server.stop(0)
