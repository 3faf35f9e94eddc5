"""Prometheus metrics: every recorded call counted as plain tallies (numbers keyed by label set), turned
into the official client's metric families only when /metrics is scraped, plus the gauges a scrape reads
at that moment (writer backlog, budgets), so operators' Grafana sees the gateway. Counting a call is a
few dict and int operations on the call's path; the client's per-child locks and objects are paid once
per scrape instead."""

from __future__ import annotations

import json
from bisect import bisect_left
from collections.abc import Callable, Iterable
from typing import Any

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily
from prometheus_client.utils import floatToGoString

# Seconds: LLM calls run from a cache hit's milliseconds to a long stream's minutes.
LATENCY_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 20, 40, 80, 160, 320)
TTFT_BUCKETS = (0.025, 0.05, 0.1, 0.25, 0.5, 1, 2, 4, 8, 16)
TOKEN_KINDS = ("input", "output", "cache_read", "cache_write", "reasoning")
TOKEN_FIELDS = tuple(f"{kind}_tokens" for kind in TOKEN_KINDS)
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


class Buckets:
    """A histogram's tally: how many observations fell in each bucket (not cumulative), and their sum."""

    __slots__ = ("bounds", "counts", "sum")

    def __init__(self, bounds: tuple[float, ...]) -> None:
        self.bounds = bounds
        self.counts = [0] * (len(bounds) + 1)  # the last one is +Inf's
        self.sum = 0.0

    def observe(self, value: float) -> None:
        self.counts[bisect_left(self.bounds, value)] += 1  # le: a value on a bound counts in that bucket
        self.sum += value

    def cumulative(self) -> list[tuple[str, float]]:
        out, running = [], 0
        for bound, count in zip((*self.bounds, float("inf")), self.counts, strict=True):
            running += count
            out.append((floatToGoString(bound), running))
        return out


class Tally:
    """One label set's counts, added to by every call that has those labels."""

    __slots__ = ("calls", "tokens", "cost", "latency", "ttft", "cache_hits", "cost_saved", "shadow_cost",
                 "retries", "fallbacks")

    def __init__(self) -> None:
        self.calls = 0
        self.tokens = [0] * len(TOKEN_KINDS)
        self.cost = self.cost_saved = self.shadow_cost = 0.0
        self.latency, self.ttft = Buckets(LATENCY_BUCKETS), Buckets(TTFT_BUCKETS)
        self.cache_hits = self.retries = self.fallbacks = 0


# (attribute, family name, help): the counters every label set has, then those shown once non-zero.
ALWAYS = (("calls", "tapgate_calls", "LLM calls recorded."),
          ("cost", "tapgate_cost_usd", "Cost in US dollars at the price table."))
ONCE_COUNTED = (
    ("cache_hits", "tapgate_cache_hits", "Calls answered from the response cache."),
    ("shadow_cost", "tapgate_shadow_cost_usd", "What calls paid by a subscription login would cost at API prices."),
    ("cost_saved", "tapgate_cost_saved_usd", "What cache hits would have cost."),
    ("retries", "tapgate_retries", "Router attempts beyond the first."),
    ("fallbacks", "tapgate_fallbacks", "Router calls answered by another deployment than the first one tried."),
)


class Metrics:
    """The tallies, fed by `observe(row, call)` (a Recorder listener), and the registry a scrape reads.
    `caller` is "key" (the gateway key id), "customer" or "" (no caller label). `gauges` are callables
    returning metric families, read at each scrape: append one to add a gauge."""

    def __init__(self, caller: str = "", cap: int = 100, models_cap: int = 200) -> None:
        self.caller = caller
        self.callers = CappedLabel(cap)
        self.models = CappedLabel(models_cap)  # model names come from clients: capped as well
        self.gauges: list[Callable[[], Iterable[Any]]] = []
        self.tallies: dict[tuple[str, ...], Tally] = {}
        self.errors: dict[tuple[str, ...], int] = {}  # by the labels plus the error's kind
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(_Families(self))

    def labels(self, row: dict[str, Any]) -> tuple[str, ...]:
        who = self.callers(row.get("key_id") if self.caller == "key" else
                           row.get("customer_identifier") if self.caller == "customer" else None)
        return (row.get("provider") or "", self.models(row.get("model")), row.get("mode") or "",
                row.get("status") or "", who)

    def observe(self, row: dict[str, Any], call: Any = None) -> None:
        """Count one recorded call (a Recorder listener: runs where the call was recorded, in microseconds)."""
        labels = self.labels(row)
        tally = self.tallies.get(labels)
        if tally is None:
            tally = self.tallies[labels] = Tally()
        tally.calls += 1
        tokens = tally.tokens
        for i, field in enumerate(TOKEN_FIELDS):
            if n := row.get(field):
                tokens[i] += n
        if cost := row.get("cost_usd"):
            tally.cost += cost
        if shadow := row.get("shadow_cost_usd"):
            tally.shadow_cost += shadow
        if (duration := row.get("duration_ms")) is not None:
            tally.latency.observe(duration / 1000)
        if (ttft := row.get("ttft_ms")) is not None:
            tally.ttft.observe(ttft / 1000)
        if row.get("status") != "ok":
            key = (*labels, error_kind(row, call))
            self.errors[key] = self.errors.get(key, 0) + 1
        if row.get("cache_hit"):
            tally.cache_hits += 1
            if saved := row.get("cost_saved_usd"):
                tally.cost_saved += saved
        if (attempts := row.get("attempts")) and attempts > 1:  # a fallback takes a second attempt too
            tally.retries += attempts - 1
            if call is not None and len(tried := deployments_tried(call)) > 1 and row.get("routed_to") != tried[0]:
                tally.fallbacks += 1

    def exposition(self) -> bytes:
        """The text format a Prometheus server scrapes."""
        return generate_latest(self.registry)

    def families(self) -> Iterable[Any]:
        """The tallies as the client's metric families (at scrape time), then the gauges."""
        tallies = list(self.tallies.items())  # a snapshot: calls may be counted meanwhile on another thread
        for attr, name, help in ALWAYS:
            family = CounterMetricFamily(name, help, labels=LABELS)
            for labels, tally in tallies:
                family.add_metric(labels, getattr(tally, attr))
            yield family
            if attr == "calls":
                yield self._tokens(tallies)
        for attr, name, help in (("latency", "tapgate_call_duration_seconds", "Whole-call latency."),
                                 ("ttft", "tapgate_time_to_first_token_seconds", "Time to the first chunk of a stream.")):
            family = HistogramMetricFamily(name, help, labels=LABELS)
            for labels, tally in tallies:
                buckets = getattr(tally, attr)
                family.add_metric(labels, buckets.cumulative(), buckets.sum)
            yield family
        errors = CounterMetricFamily("tapgate_errors", "Calls that did not end ok, by kind (the refusal's code, the "
                                     "HTTP status class, client_disconnected).", labels=(*LABELS, "kind"))
        for labels, n in list(self.errors.items()):
            errors.add_metric(labels, n)
        yield errors
        for attr, name, help in ONCE_COUNTED:
            family = CounterMetricFamily(name, help, labels=LABELS)
            for labels, tally in tallies:
                if n := getattr(tally, attr):
                    family.add_metric(labels, n)
            yield family
        for source in self.gauges:
            yield from source()

    @staticmethod
    def _tokens(tallies: list) -> CounterMetricFamily:
        family = CounterMetricFamily("tapgate_tokens", "Tokens by kind (input, output, cache_read, cache_write, "
                                     "reasoning).", labels=(*LABELS, "kind"))
        for labels, tally in tallies:
            for kind, n in zip(TOKEN_KINDS, tally.tokens, strict=True):
                family.add_metric((*labels, kind), n)
        return family


class _Families:
    """The registry's one collector: everything /metrics shows, built when it is asked."""

    def __init__(self, metrics: Metrics) -> None:
        self.metrics = metrics

    def collect(self):
        return self.metrics.families()


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
