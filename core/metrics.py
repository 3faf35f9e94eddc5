"""Prometheus metrics: every recorded call counted into the official client's collectors, and the
gauges a scrape reads at that moment (writer backlog, budgets), so operators' Grafana sees the gateway."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

# Seconds: LLM calls run from a cache hit's milliseconds to a long stream's minutes.
LATENCY_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 20, 40, 80, 160, 320)
TTFT_BUCKETS = (0.025, 0.05, 0.1, 0.25, 0.5, 1, 2, 4, 8, 16)
TOKEN_KINDS = ("input", "output", "cache_read", "cache_write", "reasoning")
OTHER = "other"  # the label value of every caller past the cardinality cap
LABELS = ("provider", "model", "mode", "status", "caller")


class CappedLabel:
    """A label whose distinct values are capped: the first `cap` values seen keep their name, later ones
    are counted under "other", so one label cannot grow the series without bound."""

    def __init__(self, cap: int) -> None:
        self.cap = cap
        self.seen: set[str] = set()

    def __call__(self, value: str | None) -> str:
        if not value:
            return ""
        if value in self.seen:
            return value
        if len(self.seen) < self.cap:
            self.seen.add(value)
            return value
        return OTHER


class Metrics:
    """The collectors, fed by `observe(row, call)` (a Recorder listener). `caller` is "key" (the
    gateway key id), "customer" or "" (no caller label); `gauges` are read at each scrape."""

    def __init__(self, caller: str = "", cap: int = 100, models_cap: int = 200) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.caller = caller
        self.callers = CappedLabel(cap)
        self.models = CappedLabel(models_cap)  # model names come from clients: capped as well
        self.gauges: list[Callable[[], Iterable[GaugeMetricFamily]]] = []
        r = self.registry
        self.calls = Counter("tapgate_calls", "LLM calls recorded.", LABELS, registry=r)
        self.tokens = Counter("tapgate_tokens", "Tokens by kind (input, output, cache_read, cache_write, "
                              "reasoning).", (*LABELS, "kind"), registry=r)
        self.cost = Counter("tapgate_cost_usd", "Cost in US dollars at the price table.", LABELS, registry=r)
        self.latency = Histogram("tapgate_call_duration_seconds", "Whole-call latency.", LABELS,
                                 buckets=LATENCY_BUCKETS, registry=r)
        self.ttft = Histogram("tapgate_time_to_first_token_seconds", "Time to the first chunk of a stream.",
                              LABELS, buckets=TTFT_BUCKETS, registry=r)
        self.errors = Counter("tapgate_errors", "Calls that did not end ok, by kind (the refusal's code, "
                              "the HTTP status class, client_disconnected).", (*LABELS, "kind"), registry=r)
        self.cache_hits = Counter("tapgate_cache_hits", "Calls answered from the response cache.", LABELS,
                                  registry=r)
        self.shadow_cost = Counter("tapgate_shadow_cost_usd", "What calls paid by a subscription login would "
                                   "cost at API prices.", LABELS, registry=r)
        self.cost_saved = Counter("tapgate_cost_saved_usd", "What cache hits would have cost.", LABELS, registry=r)
        self.retries = Counter("tapgate_retries", "Router attempts beyond the first.", LABELS, registry=r)
        self.fallbacks = Counter("tapgate_fallbacks", "Router calls answered by another deployment than the "
                                 "first one tried.", LABELS, registry=r)
        self.registry.register(_Gauges(self.gauges))
        self._children: dict[tuple[str, ...], tuple] = {}  # per label set: the children every call touches

    def children(self, labels: tuple[str, ...]) -> tuple:
        """(calls, cost, latency, ttft, tokens by kind) for one label set, looked up once: the client's
        labels() takes a lock and builds a key on every call."""
        found = self._children.get(labels)
        if found is None:
            found = self._children[labels] = (
                self.calls.labels(*labels), self.cost.labels(*labels), self.latency.labels(*labels),
                self.ttft.labels(*labels), {kind: self.tokens.labels(*labels, kind) for kind in TOKEN_KINDS})
        return found

    def labels(self, row: dict[str, Any]) -> tuple[str, ...]:
        who = self.callers(row.get("key_id") if self.caller == "key" else
                           row.get("customer_identifier") if self.caller == "customer" else None)
        return (row.get("provider") or "", self.models(row.get("model")), row.get("mode") or "",
                row.get("status") or "", who)

    def observe(self, row: dict[str, Any], call: Any = None) -> None:
        """Count one recorded call (a Recorder listener: runs where the call was recorded, in microseconds)."""
        labels = self.labels(row)
        calls, costs, latency, ttft_seconds, tokens = self.children(labels)
        calls.inc()
        for kind, counter in tokens.items():
            if n := row.get(f"{kind}_tokens"):
                counter.inc(n)
        if cost := row.get("cost_usd"):
            costs.inc(cost)
        if shadow := row.get("shadow_cost_usd"):
            self.shadow_cost.labels(*labels).inc(shadow)
        if (duration := row.get("duration_ms")) is not None:
            latency.observe(duration / 1000)
        if (ttft := row.get("ttft_ms")) is not None:
            ttft_seconds.observe(ttft / 1000)
        if row.get("status") != "ok":
            self.errors.labels(*labels, error_kind(row, call)).inc()
        if row.get("cache_hit"):
            self.cache_hits.labels(*labels).inc()
            if saved := row.get("cost_saved_usd"):
                self.cost_saved.labels(*labels).inc(saved)
        if (attempts := row.get("attempts")) and attempts > 1:
            self.retries.labels(*labels).inc(attempts - 1)
        if call is not None and len(tried := deployments_tried(call)) > 1 and row.get("routed_to") != tried[0]:
            self.fallbacks.labels(*labels).inc()

    def exposition(self) -> bytes:
        """The text format a Prometheus server scrapes."""
        return generate_latest(self.registry)


def error_kind(row: dict[str, Any], call: Any) -> str:
    """What went wrong, in few values: a refusal's code, the disconnect, else the status class."""
    if (refusal := getattr(call, "refusal", None)) is not None and refusal.code:
        return str(refusal.code)
    if row.get("status") in ("refused", "client_disconnected"):
        return row["status"]
    code = row.get("status_code")
    return f"http_{code // 100}xx" if isinstance(code, int) else "no_response"


def deployments_tried(call: Any) -> list[str]:
    """The router's deployments in the order its attempts went to them (the send stage's attempt spans),
    each once."""
    names = []
    for span in getattr(call, "spans", ()):
        if not span.get("name", "").startswith("attempt "):
            continue
        try:
            names.append(json.loads(span["attributes"])["deployment"])
        except (KeyError, TypeError, ValueError):
            continue
    return list(dict.fromkeys(names))


def gauge(name: str, help: str, labels: Iterable[str] = ()) -> GaugeMetricFamily:
    return GaugeMetricFamily(name, help, labels=list(labels))


class _Gauges:
    """A custom collector: asks each gauge source at scrape time (never on a call's path)."""

    def __init__(self, sources: list[Callable[[], Iterable[GaugeMetricFamily]]]) -> None:
        self.sources = sources

    def describe(self) -> list:
        return []

    def collect(self):
        for source in self.sources:
            yield from source()


def writer_gauges(storage: Any) -> Callable[[], Iterable]:
    """The store's writer: records journalled and not yet committed, and records lost for good."""

    def collect():
        writer = getattr(storage, "writer", None)
        pending = writer.pending()[0] if writer is not None else 0
        lost = writer.lost if writer is not None else 0
        depth = gauge("tapgate_writer_queue_depth", "Records journalled and not yet committed to the store.")
        depth.add_metric([], pending)
        dropped = CounterMetricFamily("tapgate_writer_dropped_rows", "Records that could not be stored and are lost.")
        dropped.add_metric([], lost)
        return [depth, dropped, *writer_state(writer)]

    return collect


def writer_state(writer: Any) -> list:
    """The journal's bytes waiting, and whether the writer reaches its store (PostgreSQL connected;
    SQLite not stalled), so an outage and its backlog show on a graph."""
    size = gauge("tapgate_writer_queue_bytes", "Journal bytes not yet committed to the store.")
    size.add_metric([], writer.pending()[1] if writer is not None else 0)
    up = gauge("tapgate_writer_connected", "1 when the store's writer can write to its store (PostgreSQL "
               "connected, SQLite not stalled), else 0.", ("store",))
    if writer is not None:
        store = "postgresql" if hasattr(writer, "connected") else "sqlite"
        up.add_metric([store], int(getattr(writer, "connected", getattr(writer, "stalled_since", None) is None)))
    return [size, up]


def budget_gauges(admission: Any, cap: int) -> Callable[[], Iterable]:
    """Every capped budget in force: what is spent of it and its cap, at most `cap` budgets."""

    def collect():
        spent = gauge("tapgate_budget_spent", "What a budget's current period has spent (its unit).",
                      ("budget", "unit"))
        limit = gauge("tapgate_budget_cap", "A budget's cap (its unit).", ("budget", "unit"))
        now = admission.ledger.now()
        shown = 0
        for (scope, label), budget in admission.in_force().items():
            if budget.cap is None:
                continue
            if shown >= cap:
                break
            shown += 1
            name = f"{scope[0]} {scope[1]} {label}".replace("  ", " ")
            used, _, _ = admission.ledger.standing(scope, budget, now)
            spent.add_metric([name, budget.unit], used)
            limit.add_metric([name, budget.unit], budget.cap)
        return [spent, limit]

    return collect


def shared_cache_gauges(caching: Any) -> Callable[[], Iterable]:
    """The response cache's round trips to Redis by outcome (hit, miss, error: each error a miss), and
    its stores still on their way there; nothing while the cache is not shared."""

    def collect():
        shared = getattr(caching, "shared", None)
        if shared is None:
            return []
        outcomes = CounterMetricFamily("tapgate_cache_redis", "The shared response cache in Redis, by outcome: hit, "
                                       "miss, wait, took_over, gave_up, error, skipped, stored, too_large, dropped.",
                                       labels=["outcome"])
        for outcome, n in shared.counts.items():
            outcomes.add_metric([outcome], n)
        pending = gauge("tapgate_cache_redis_pending", "Cache entries and lock releases not yet written to Redis.")
        pending.add_metric([], shared.pending)
        return [outcomes, pending]

    return collect
