"""OTLP wire: compact records (core/otlp.py) straight to the bytes of an ExportTraceServiceRequest, the
same spans, attributes, resource and scope that core/otlp_spans.py's SDK path gives the official encoder.

The SDK path builds a ReadableSpan and then a protobuf message per span, attribute and value: about 58 µs
of the worker's CPU a call, which a saturated 2-core machine takes from the gateway. Here each span is
written in protobuf's wire format directly, a few µs: what repeats from call to call (the name, the
derived attributes and the labels of calls of one shape; a token count seen before) is encoded once and
remembered, in bounded memos; the resource and scope come from one span encoded by the official encoder
when the worker starts, so they are the SDK's own. The batch is handed to the official exporters'
transport (core/otlp_spans.py, core/otlp_grpc.py), which retries and compresses as before; the
receivers decode it with the official message types, and tests/test_otlp_wire.py checks that it
decodes to the SDK path's request."""

from __future__ import annotations

import json
import operator
import struct
from dataclasses import dataclass
from typing import Any

from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.proto.trace.v1 import trace_pb2

from core.otlp import FIELDS
from core.otlp_spans import LABELS, MEASURES, SpanBuilder, body_attributes, clean, derived, nanos, span_name

# Span's fields (opentelemetry/proto/trace/v1/trace.proto) as tag bytes: (number << 3) | wire type.
TRACE_ID, SPAN_ID, PARENT_ID, NAME = b"\x0a\x10", b"\x12\x08", b"\x22\x08", b"\x2a"
KIND_CLIENT = b"\x30" + bytes([trace_pb2.Span.SPAN_KIND_CLIENT])
START, END, ATTRIBUTE, STATUS = b"\x39", b"\x41", b"\x4a", b"\x7a"
FLAGS = b"\x85\x01"  # field 16, fixed32
HAS_IS_REMOTE = trace_pb2.SpanFlags.SPAN_FLAGS_CONTEXT_HAS_IS_REMOTE_MASK
IS_REMOTE = trace_pb2.SpanFlags.SPAN_FLAGS_CONTEXT_IS_REMOTE_MASK
LOCAL_FLAGS = FLAGS + struct.pack("<I", HAS_IS_REMOTE)
REMOTE_FLAGS = FLAGS + struct.pack("<I", HAS_IS_REMOTE | IS_REMOTE)
STATUS_UNSET = STATUS + b"\x00"  # the SDK sends an empty Status message, not none
STATUS_ERROR_CODE = b"\x18\x02"  # Status.code = STATUS_CODE_ERROR
fixed64 = struct.Struct("<Q").pack
double = struct.Struct("<d").pack
INT64 = 1 << 63
SHORT = [bytes((n,)) for n in range(128)]  # lengths under 128 are one byte

AT = {name: i for i, name in enumerate(FIELDS)}
# The text derived() and span_name() read, then the labels: with the two flags and the finish reason, what
# a call's name, derived attributes and labels depend on, encoded once for the calls that share it.
TEXTS = ("endpoint", "model", "provider", "status")
texts_of = operator.itemgetter(*(AT[field] for field in TEXTS), *(AT[field] for _, field in LABELS))
MEMO_SIZE, MEMO_BYTES = 8192, 256  # encodings remembered: most attributes repeat from call to call


@dataclass
class Encoded:
    """A batch as the exporters send it: the serialized request and the spans in it."""

    payload: bytes
    spans: int


def varint(n: int) -> bytes:
    if n < 0x80:
        return SHORT[n]
    out = bytearray()
    while n >= 0x80:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


def delimited(tag: bytes, payload: bytes) -> bytes:
    n = len(payload)
    return tag + (SHORT[n] if n < 0x80 else varint(n)) + payload


def any_value(value: Any) -> bytes:
    """An AnyValue message's bytes, choosing the field as the official encoder does (bool before int)."""
    if value is True or value is False:
        return b"\x10\x01" if value else b"\x10\x00"
    if isinstance(value, str):
        return delimited(b"\x0a", value.encode())
    if isinstance(value, int):
        if not -INT64 <= value < INT64:
            raise ValueError(f"{value} does not fit an OTLP int64 attribute")
        return b"\x18" + varint(value & 0xFFFFFFFFFFFFFFFF)
    if isinstance(value, float):
        return b"\x21" + double(value)
    if isinstance(value, (list, tuple)):  # ArrayValue, its values AnyValue messages
        return delimited(b"\x2a", b"".join(delimited(b"\x0a", any_value(v)) for v in value))
    raise TypeError(f"cannot encode a {type(value).__name__} as an OTLP attribute")


def attribute(key: str, value: Any) -> bytes:
    """A span's attributes field: a KeyValue message."""
    return delimited(ATTRIBUTE, delimited(b"\x0a", key.encode()) + delimited(b"\x12", any_value(value)))


def remember(memo: dict, known: Any, encoded: bytes) -> bytes:
    """`encoded`, kept under `known` unless it is long (bodies, long errors)."""
    if len(encoded) <= MEMO_BYTES:
        if len(memo) >= MEMO_SIZE:  # bounded: values that seldom repeat cost a clear now and then
            memo.clear()
        memo[known] = encoded
    return encoded


def double_prefix(key: str) -> bytes:
    """An attribute's bytes up to its double value, which is always 8 bytes: a measure needs no memo."""
    return attribute(key, 0.0)[:-8]


# The measures, read from the record's values: (attribute, index, its bytes before a double value).
MEASURES_AT = tuple((name, AT[field], double_prefix(name)) for name, field in MEASURES)


class WireEncoder:
    """Records to serialized spans, then a batch of them to one request under the SDK's resource and scope."""

    def __init__(self, bodies: bool = False) -> None:
        self.bodies = bodies
        self.memo: dict[tuple, bytes] = {}  # (key, class, value) -> the encoded attribute
        self.shapes: dict[tuple, tuple[bytes, bytes]] = {}  # see `_shape`
        builder = SpanBuilder(bodies)
        template = encode_spans(builder.spans([[None, "1" * 32, "1" * 16, "2026-01-01T00:00:00Z"]
                                               + [None] * (len(FIELDS) - 4), None, [], None]))
        resource_spans, scope_spans = template.resource_spans[0], template.resource_spans[0].scope_spans[0]
        self.resource_head = trace_pb2.ResourceSpans(  # the resource and schema_url, without spans
            resource=resource_spans.resource, schema_url=resource_spans.schema_url).SerializeToString()
        self.scope_head = trace_pb2.ScopeSpans(scope=scope_spans.scope, schema_url=scope_spans.schema_url).SerializeToString()

    def spans(self, record: list) -> list[bytes]:
        """The call's span and its attempts' spans, as SpanBuilder.spans makes them, each a Span message."""
        values, parent_id, attempts, reason = record
        if len(values) != len(FIELDS):
            raise ValueError(f"a record of {len(values)} values, not {len(FIELDS)}")
        trace = TRACE_ID + int(values[AT["trace_id"]], 16).to_bytes(16)
        own = int(values[AT["span_id"]], 16).to_bytes(8)
        start = nanos(values[AT["started_at"]])
        end = start + int((values[AT["duration_ms"]] or 0) * 1e6)
        status = values[AT["status"]]
        cache_hit = values[AT["cache_hit"]]
        shape = (texts_of(values), None if cache_hit is None else bool(cache_hit), bool(values[AT["usage_estimated"]]),
                 reason)
        name, known_attributes = self.shapes.get(shape) or self._shape(shape)
        parts = [trace, SPAN_ID, own]
        if parent_id:
            parts += (PARENT_ID, int(parent_id, 16).to_bytes(8))
        parts += (name, KIND_CLIENT, START, fixed64(start), END, fixed64(end), known_attributes)
        memo = self.memo
        for key, i, before_double in MEASURES_AT:
            value = values[i]
            if value.__class__ is float:  # costs and times: seldom the same twice
                parts += (before_double, double(value))
            elif value is not None:
                known = (key, value.__class__, value)  # the class too: True == 1 == 1.0 as keys
                parts.append(memo.get(known) or remember(memo, known, attribute(key, value)))
        if self.bodies:
            row = {"request_body": values[AT["request_body"]], "response_body": values[AT["response_body"]]}
            parts += [attribute(k, v) for k, v in clean(body_attributes(row)).items()]
        parts += (self._error(values[AT["error"]] or status or "") if status != "ok" else STATUS_UNSET,
                  REMOTE_FLAGS if parent_id else LOCAL_FLAGS)
        out = [b"".join(parts)]
        for attempt in attempts:
            info = json.loads(attempt.get("attributes") or "{}")
            begun = nanos(attempt["started_at"])
            out.append(self._span(
                trace, int(attempt["span_id"], 16).to_bytes(8), own, attempt["name"],
                begun, begun + int((attempt.get("duration_ms") or 0) * 1e6),
                clean({"tapgate.attempt": info.get("attempt"), "tapgate.deployment": info.get("deployment"),
                       "http.response.status_code": info.get("http.status_code"), "error.type": info.get("failure")}),
                self._error(info.get("error") or "") if attempt.get("status") != "ok" else STATUS_UNSET,
                LOCAL_FLAGS))
        return out

    def _shape(self, shape: tuple) -> tuple[bytes, bytes]:
        """The span's name field, and its derived attributes then its labels, for the calls sharing `shape`:
        (TEXTS' and LABELS' values, cache hit, usage estimated, finish reason)."""
        texts, cache_hit, estimated, reason = shape
        # Only these fields: if derived() read one more, the round-trip tests would see it missing here.
        row = {**dict(zip(TEXTS, texts[:len(TEXTS)], strict=True)), "cache_hit": cache_hit, "usage_estimated": estimated}
        name = span_name(row)
        encoded = (delimited(NAME, name.encode()) if name else b"",
                   b"".join([attribute(k, v) for k, v in clean(derived(row, reason)).items()]
                            + [attribute(k, v) for (k, _), v in zip(LABELS, texts[len(TEXTS):], strict=True) if v is not None]))
        if all(v is None or v.__class__ is str for v in (*texts, reason)):  # text compares exactly, 1 == True
            if len(self.shapes) >= MEMO_SIZE:
                self.shapes.clear()
            self.shapes[shape] = encoded
        return encoded

    def request(self, spans: list[bytes]) -> bytes:
        """One ResourceSpans holding one ScopeSpans holding the spans."""
        scope_spans = self.scope_head + b"".join([delimited(b"\x12", span) for span in spans])
        return delimited(b"\x0a", self.resource_head + delimited(b"\x12", scope_spans))

    def _span(self, trace: bytes, span_id: bytes, parent: bytes | None, name: str, start: int, end: int,
              attrs: dict[str, Any], status: bytes, flags: bytes) -> bytes:
        """A Span message with these attributes (an attempt's; the call's own are built in `spans`)."""
        memo = self.memo
        parts = [trace, SPAN_ID, span_id]
        if parent:
            parts += (PARENT_ID, parent)
        if name:
            parts.append(delimited(NAME, name.encode()))
        parts += (KIND_CLIENT, START, fixed64(start), END, fixed64(end))
        for key, value in attrs.items():
            known = (key, value.__class__, value)
            parts.append(memo.get(known) or remember(memo, known, attribute(key, value)))
        parts += (status, flags)
        return b"".join(parts)

    @staticmethod
    def _error(message: str) -> bytes:
        """An error Status message, its description cut as SpanBuilder cuts it."""
        message = message[:1024]
        return delimited(STATUS, (delimited(b"\x12", message.encode()) if message else b"") + STATUS_ERROR_CODE)
