"""Metrics: the Prometheus options, and the collectors every recorded call is counted into (served at
GET /metrics on the router's port by addons/router/observability.py)."""

from __future__ import annotations

from mitmproxy import ctx

from core.metrics import Metrics as Collectors
from core.metrics import budget_gauges, writer_gauges

OPTIONS = {"tapgate_metrics", "tapgate_metrics_caller", "tapgate_metrics_caller_cap"}


class Metrics:
    """A Recorder listener (`observe`); `sources` are more gauges read at each scrape (OTLP drops)."""

    def __init__(self, store, spend) -> None:
        self.store = store
        self.spend = spend
        self.collectors: Collectors | None = None
        self.sources: list = []

    def load(self, loader) -> None:
        loader.add_option("tapgate_metrics", bool, True,
                          "Serve Prometheus metrics at GET /metrics on the router's port (tapgate_router).")
        loader.add_option("tapgate_metrics_caller", str, "",
                          "Label metrics with the caller too: key (the gateway key id), customer (the customer "
                          "identifier), or empty for neither.", choices=["", "key", "customer"])
        loader.add_option("tapgate_metrics_caller_cap", int, 100,
                          "The most distinct callers (and budgets) metrics name; later ones count as \"other\".")

    def configure(self, updated: set[str]) -> None:
        if updated & OPTIONS:
            if not ctx.options.tapgate_metrics:
                self.collectors = None
                return
            cap = max(ctx.options.tapgate_metrics_caller_cap, 0)
            collectors = Collectors(ctx.options.tapgate_metrics_caller, cap)
            collectors.gauges += [writer_gauges(self.store), budget_gauges(self.spend, cap), *self.sources]
            self.collectors = collectors

    def observe(self, row, call) -> None:
        if self.collectors is not None:
            self.collectors.observe(row, call)
