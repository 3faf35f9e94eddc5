"""core/otlp.py, core/otlp_spans.py and core/otlp_worker.py: rows to GenAI spans with the SDK, parented on
the caller's trace; the worker process exports them to a real loopback collector; a stuck collector never
holds up the submitting side, what it cannot take is counted, a dead worker is started again."""

from __future__ import annotations

import os
import signal
from types import SimpleNamespace

import orjson
import pytest
from receivers import OtlpReceiver, attrs
from support import until

from core.otlp import ExportSettings, OtlpExport, compact, parse_headers
from core.otlp_spans import SpanBuilder

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


def built(r, c, bodies=False):
    """The spans the worker builds for one submitted call, through the record's JSON line."""
    item = (r, c.parent_span_id, list(c.spans), c.parser.state.output.finish_reason)
    return SpanBuilder(bodies).spans(orjson.loads(orjson.dumps(compact(item, bodies))))


def test_genai_attributes_and_ids():
    (span,) = built(row(), call(reason="end_turn"))
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


def test_bodies_are_not_even_sent_to_the_worker_unless_asked():
    item = (row(), None, [], None)
    assert b"secret-prompt" not in orjson.dumps(compact(item, bodies=False))
    long = row(request_body="x" * 100_000)
    assert len(compact((long, None, [], None), bodies=True)[0][-2]) == 64 * 1024  # cut at 64 KB


def test_parented_on_the_callers_traceparent_with_attempt_children():
    attempt = {"span_id": "1111111111111111", "name": "attempt openai/gpt", "started_at": "2026-01-02T03:04:05.100Z",
               "duration_ms": 10.0, "status": "error",
               "attributes": '{"attempt": 1, "deployment": "openai/gpt", "failure": "status", "error": "500"}'}
    spans = built(row(provider="gemini", endpoint="embedContent", status="error", error="boom"),
                  call(PARENT, [attempt]), bodies=True)
    spans = {s.name: s for s in spans}
    main, child = spans["embeddings claude-sonnet-4-5"], spans["attempt openai/gpt"]
    assert f"{main.parent.span_id:016x}" == PARENT and main.parent.is_remote
    assert f"{main.context.trace_id:032x}" == TRACE
    assert child.parent.span_id == main.context.span_id and child.attributes["tapgate.deployment"] == "openai/gpt"
    assert main.attributes["gen_ai.provider.name"] == "gcp.gemini"
    assert main.attributes["gen_ai.operation.name"] == "embeddings"
    assert main.status.status_code.name == "ERROR" and child.status.status_code.name == "ERROR"
    assert main.attributes["tapgate.request.body"] == '{"secret-prompt": 1}'


@pytest.fixture
def collector():
    with OtlpReceiver() as receiver:
        yield receiver


@pytest.fixture
def exports():
    made = []
    yield made
    for e in made:
        e.stop()


def exporter(exports, collector, **settings) -> OtlpExport:
    e = OtlpExport(ExportSettings(endpoint=f"{collector.url}/v1/traces", **settings))
    exports.append(e)
    return e


def test_the_worker_process_exports_to_the_collector(exports, collector):
    e = exporter(exports, collector, headers={"x-collector-token": "tok-1"})
    e.submit(row(), call(PARENT, reason="end_turn"))
    assert e.flush()
    _, span = collector.span(lambda s: True)
    assert span.trace_id.hex() == TRACE and span.parent_span_id.hex() == PARENT
    assert attrs(span)["gen_ai.response.finish_reasons"] == ["end_turn"]
    assert collector.headers[-1]["x-collector-token"] == "tok-1"
    assert (e.exported, e.dropped, e.depth) == (1, 0, 0)
    assert e.worker.proc.pid != os.getpid()


def test_a_stuck_collector_never_holds_the_caller_and_drops_are_counted(exports, collector):
    e = exporter(exports, collector, queue_size=3, batch_size=1)  # the worker holds one batch: one call
    collector.hold.set()
    e.submit(row(), call())
    e.wake.set()
    assert collector.arrived.wait(30)  # the worker's export is now waiting on the collector
    for _ in range(5):  # the submitting side returns at once: three queued, two over the bound
        e.submit(row(), call())
    assert (len(e.queue), e.overflowed, e.depth, e.worker.calls) == (3, 2, 4, 1)
    collector.hold.clear()
    collector.release.set()
    e.stop()
    assert (e.exported, e.dropped, e.depth) == (4, 2, 0)  # the held ones went through once released


def test_a_worker_that_dies_is_started_again_and_its_calls_counted(exports, collector):
    e = exporter(exports, collector)
    e.submit(row(), call())
    assert e.flush() and e.exported == 1
    first = e.worker
    collector.hold.set()
    e.submit(row(), call())
    e.wake.set()
    assert collector.arrived.wait(30)
    first.proc.send_signal(signal.SIGKILL)  # dies holding a call
    until(lambda: e.failed == 1, what="the dead worker's call counted")
    collector.hold.clear()
    collector.release.set()
    e.submit(row(customer_identifier="after"), call())
    assert e.flush()
    assert e.worker is not first and e.started == 2 and e.exported == 2
    collector.span(lambda s: attrs(s).get("tapgate.customer") == "after")


def test_a_call_that_cannot_be_encoded_is_counted_and_its_batch_still_goes(exports, collector):
    e = exporter(exports, collector)
    e.submit(row(input_tokens=2**70), call())  # past JSON's 64-bit integers
    e.submit(row(customer_identifier="fine"), call())
    assert e.flush()
    assert (e.exported, e.failed) == (1, 1)
    collector.span(lambda s: attrs(s).get("tapgate.customer") == "fine")


def test_stop_exports_what_is_queued(exports, collector):
    e = exporter(exports, collector)
    for i in range(20):
        e.submit(row(customer_identifier=f"c{i}"), call())
    e.stop()
    assert (e.exported, e.dropped) == (20, 0)
    assert {attrs(collector.span(lambda s: True)[1])["tapgate.customer"] for _ in range(20)} == {f"c{i}" for i in range(20)}
    assert e.worker.proc.returncode == 0


def test_headers():
    assert parse_headers("Authorization=Bearer x, x-team = a=b") == {"authorization": "Bearer x", "x-team": "a=b"}
    with pytest.raises(ValueError, match="'nope'"):
        parse_headers("nope")


def test_grpc_export_to_a_loopback_collector(exports):
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
    exports.append(e)
    try:
        e.submit(row(), call(PARENT))
        assert e.flush()
        assert e.exported == 1 and e.dropped == 0
        (span,) = received
        assert span.trace_id.hex() == TRACE and span.parent_span_id.hex() == PARENT
        assert span.name == "chat claude-sonnet-4-5"
    finally:
        e.stop()
        server.stop(0)
