"""Telemetry: the `tapgate_otlp_*` options, and core/otlp.py's exporter started, swapped and stopped
with them; every recorded call is handed to it (a Recorder listener that only queues)."""

from __future__ import annotations

import logging
from urllib.parse import urlsplit

from mitmproxy import ctx, exceptions
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

from core.otlp import ExportSettings, OtlpExport, parse_headers

log = logging.getLogger(__name__)
OPTIONS = {"tapgate_otlp_endpoint", "tapgate_otlp_protocol", "tapgate_otlp_headers", "tapgate_otlp_bodies"}


class Telemetry:
    def __init__(self) -> None:
        self.export: OtlpExport | None = None

    def load(self, loader) -> None:
        loader.add_option("tapgate_otlp_endpoint", str, "",
                          "Export every call's spans (OpenTelemetry GenAI conventions) to this OTLP endpoint: "
                          "http://collector:4318 (/v1/traces is added when no path is given) or, with grpc, "
                          "http://collector:4317. Empty: no export.")
        loader.add_option("tapgate_otlp_protocol", str, "http/protobuf", "OTLP protocol of tapgate_otlp_endpoint.",
                          choices=["http/protobuf", "grpc"])
        loader.add_option("tapgate_otlp_headers", str, "",
                          "Headers sent with every export, name=value pairs separated by commas (as "
                          "OTEL_EXPORTER_OTLP_HEADERS), e.g. an API key of the tracing backend.")
        loader.add_option("tapgate_otlp_bodies", bool, False,
                          "Put request and response bodies on exported spans (tapgate.request.body, "
                          "tapgate.response.body), cut at 64 KB. Off: spans carry no prompt or answer.")

    def configure(self, updated: set[str]) -> None:
        if not updated & OPTIONS:
            return
        endpoint = ctx.options.tapgate_otlp_endpoint.strip()
        settings = None
        if endpoint:
            url = urlsplit(endpoint)
            if url.scheme not in ("http", "https") or not url.netloc:
                raise exceptions.OptionsError(f"tapgate_otlp_endpoint must be an http(s) URL, got {endpoint!r}")
            protocol = ctx.options.tapgate_otlp_protocol
            if protocol == "http/protobuf" and url.path in ("", "/"):
                endpoint = endpoint.rstrip("/") + "/v1/traces"
            try:
                headers = parse_headers(ctx.options.tapgate_otlp_headers)
            except ValueError as e:
                raise exceptions.OptionsError(f"tapgate_otlp_headers: {e}") from None
            settings = ExportSettings(endpoint, protocol, headers, ctx.options.tapgate_otlp_bodies)
        old, self.export = self.export, (OtlpExport(settings) if settings else None)
        if old is not None:
            old.stop()
        if settings:
            log.info("tapgate: exporting spans over OTLP (%s) to %s", settings.protocol, endpoint)

    def submit(self, row, call) -> None:
        if self.export is not None:
            self.export.submit(row, call)

    def gauges(self):
        """For /metrics: the exporter's backlog, spans exported, spans dropped."""
        export = self.export
        if export is None:
            return []
        depth = GaugeMetricFamily("tapgate_otlp_queue_depth", "Calls waiting to be exported over OTLP.")
        depth.add_metric([], export.depth)
        sent = CounterMetricFamily("tapgate_otlp_exported_spans", "Spans the OTLP collector accepted.")
        sent.add_metric([], export.exported)
        dropped = CounterMetricFamily("tapgate_otlp_dropped_spans", "Spans dropped: the export queue was full, "
                                      "or the collector failed or refused them.")
        dropped.add_metric([], export.dropped)
        return [depth, sent, dropped]

    def done(self) -> None:
        if self.export is not None:
            self.export.stop()
            self.export = None
