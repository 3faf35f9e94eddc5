"""The official gRPC span exporter fed batches already encoded (core/otlp_wire.py). Its own module so
that grpc is imported only by a worker configured for it (tapgate_otlp_protocol=grpc)."""

from __future__ import annotations

from collections.abc import Sequence

from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.sdk.trace.export import SpanExportResult


class GrpcEncodedExporter(OTLPSpanExporter):
    """The exporter's own export loop (metadata, deadline, retries), given a request parsed from the
    encoded batch instead of one it encodes from SDK spans (which `export` still takes)."""

    def _translate_data(self, data):
        if isinstance(data, Sequence):
            return super()._translate_data(data)
        return ExportTraceServiceRequest.FromString(data.payload)

    def _count_data(self, data) -> int:
        return len(data) if isinstance(data, Sequence) else data.spans

    def export_encoded(self, batch) -> SpanExportResult:
        return self._export(batch)
