"""core/otlp_wire.py: the worker's direct encoding decodes, with the official protobuf types, to exactly the
request the official encoder makes from the SDK path's spans (core/otlp_spans.py) for the same record."""

from __future__ import annotations

import orjson
import pytest
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.sdk.trace.export import SpanExportResult
from receivers import OtlpReceiver
from test_otlp import PARENT, call, row

from core import otlp_wire
from core.otlp import compact
from core.otlp_spans import HttpEncodedExporter, SpanBuilder
from core.otlp_wire import Encoded, WireEncoder

ATTEMPT = {"span_id": "1111111111111111", "name": "attempt openai/gpt", "started_at": "2026-01-02T03:04:05.100Z",
           "duration_ms": 10.0, "status": "error",
           "attributes": '{"attempt": 1, "deployment": "openai/gpt", "http.status_code": 500, "failure": "status", '
                         '"error": "upstream said 500"}'}
GOOD_ATTEMPT = {**ATTEMPT, "span_id": "2222222222222222", "status": "ok", "attributes": '{"attempt": 2}'}


def record(r, c, bodies=False):
    """A submitted call as the worker reads it, through the record's JSON line."""
    item = (r, c.parent_span_id, list(c.spans), c.parser.state.output.finish_reason)
    return orjson.loads(orjson.dumps(compact(item, bodies)))


def both(records, bodies=False):
    """(the official encoder's request from SDK spans, the direct encoding decoded by the official types)."""
    builder, encoder = SpanBuilder(bodies), WireEncoder(bodies)
    sdk = encode_spans([span for r in records for span in builder.spans(r)])
    direct = encoder.request([span for r in records for span in encoder.spans(r)])
    return sdk, ExportTraceServiceRequest.FromString(direct)


CASES = {
    "plain": (row(), call(reason="end_turn")),
    "parented, attempts, error": (row(provider="gemini", endpoint="embedContent", status="error", error="boom " * 300),
                                  call(PARENT, [ATTEMPT, GOOD_ATTEMPT])),
    "odd values": (row(input_tokens=-5, output_tokens=2**63 - 1, cost_usd=0.0, cache_hit=1, usage_estimated=1,
                       customer_identifier="café ☕ " + "x" * 200, model="", ttft_ms=12.5, host="api.example"),
                   call(reason="length")),
    "status not ok, no error text": (row(status="refused", error=None), call()),
}


@pytest.mark.parametrize("bodies", [False, True])
@pytest.mark.parametrize("case", CASES)
def test_the_direct_encoding_equals_the_sdk_paths(case, bodies):
    sdk, direct = both([record(*CASES[case], bodies=bodies)], bodies)
    assert direct == sdk
    spans = direct.resource_spans[0].scope_spans[0].spans
    assert len(spans) == 1 + len(CASES[case][1].spans)  # not vacuous: the spans are there
    assert spans[0].attributes


def test_a_batch_is_one_resource_and_scope_like_the_sdks():
    records = [record(row(customer_identifier=f"c{i}", input_tokens=i), call(reason="stop")) for i in range(50)]
    sdk, direct = both(records)
    assert direct == sdk
    assert len(direct.resource_spans) == 1 and len(direct.resource_spans[0].scope_spans[0].spans) == 50
    resource = {a.key for a in direct.resource_spans[0].resource.attributes}
    assert {"service.name", "telemetry.sdk.name"} <= resource
    assert direct.resource_spans[0].scope_spans[0].scope.name == "tapgate"


def test_remembered_encodings_serve_later_calls_exactly():
    """One encoder for all the cases, twice over: the second pass is served from what it remembered."""
    records = [record(*case, bodies=True) for case in CASES.values()] * 2
    sdk, direct = both(records, bodies=True)
    assert direct == sdk


def test_calls_of_one_shape_but_values_that_compare_equal_are_encoded_each_as_itself():
    """1 == True == 1.0: a label or flag of another type must not be served another call's encoding."""
    records = [record(row(thread_identifier=v, cache_hit=hit), call(reason="stop"))
               for v in (1, True, 1.0, "1") for hit in (1, True, 0, None)]
    sdk, direct = both(records)
    assert direct == sdk
    threads = [a.value.WhichOneof("value") for s in direct.resource_spans[0].scope_spans[0].spans
               for a in s.attributes if a.key == "tapgate.thread"]
    assert threads == ["int_value"] * 4 + ["bool_value"] * 4 + ["double_value"] * 4 + ["string_value"] * 4


def test_remembered_attributes_keep_their_type():
    """True == 1 == 1.0 as dict keys: the memo must not hand an int the bool's encoding."""
    encoder = WireEncoder()
    values = [True, 1, 1.0, "1"]
    spans = [encoder._span(b"\x0a\x10" + bytes(16), bytes(8), None, "s", 0, 1, {"k": v}, otlp_wire.STATUS_UNSET,
                           otlp_wire.LOCAL_FLAGS) for v in values]
    decoded = ExportTraceServiceRequest.FromString(encoder.request(spans)).resource_spans[0].scope_spans[0].spans
    assert [s.attributes[0].value.WhichOneof("value") for s in decoded] == [
        "bool_value", "int_value", "double_value", "string_value"]


def test_the_memo_is_bounded_and_skips_long_values(monkeypatch):
    monkeypatch.setattr(otlp_wire, "MEMO_SIZE", 10)
    encoder = WireEncoder(bodies=True)
    for i in range(30):
        encoder.spans(record(row(customer_identifier=f"c{i}", request_body="b" * 1000), call(), bodies=True))
    assert 0 < len(encoder.memo) <= 10
    assert not any(len(v) > otlp_wire.MEMO_BYTES for v in encoder.memo.values())


def test_an_int_past_int64_is_refused_not_wrapped():
    with pytest.raises(ValueError, match="int64"):
        WireEncoder().spans(record(row(input_tokens=2**63), call()))


def test_a_batch_over_the_exporters_size_limit_fails_without_sending():
    encoder = WireEncoder()
    payload = encoder.request(encoder.spans(record(row(), call())))
    with OtlpReceiver() as collector:
        exporter = HttpEncodedExporter(endpoint=f"{collector.url}/v1/traces", max_request_size=len(payload), timeout=5)
        try:
            assert exporter.export_encoded(Encoded(payload + b"\x00", 1)) is SpanExportResult.FAILURE
            assert not collector.arrived.is_set()
            assert exporter.export_encoded(Encoded(payload, 1)) is SpanExportResult.SUCCESS
            assert collector.arrived.is_set()
        finally:
            exporter.shutdown()


def test_a_refused_batch_is_a_failure_the_worker_counts():
    encoder = WireEncoder()
    payload = encoder.request(encoder.spans(record(row(), call())))
    with OtlpReceiver() as collector:
        exporter = HttpEncodedExporter(endpoint=f"{collector.url}/not-traces", timeout=5)  # answered 404
        try:
            assert exporter.export_encoded(Encoded(payload, 1)) is SpanExportResult.FAILURE
            assert collector.arrived.is_set()
        finally:
            exporter.shutdown()
