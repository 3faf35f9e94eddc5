"""core/metrics.py: calls counted into the official client's collectors, read back with its text parser."""

from __future__ import annotations

import json
from types import SimpleNamespace

from prometheus_client.parser import text_string_to_metric_families

from core.metrics import OTHER, CappedLabel, Metrics, budget_gauges, writer_gauges


def row(**over):
    base = {"provider": "openai", "model": "gpt-4o-mini", "mode": "router", "status": "ok", "status_code": 200,
            "input_tokens": 10, "output_tokens": 5, "cache_read_tokens": 2, "cost_usd": 0.5, "duration_ms": 1500.0,
            "ttft_ms": 200.0, "key_id": "k1", "customer_identifier": "acme", "attempts": 1, "routed_to": None}
    return {**base, **over}


def samples(metrics: Metrics) -> dict[tuple, float]:
    out = {}
    for family in text_string_to_metric_families(metrics.exposition().decode()):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def value(found, name, **labels):
    return sum(v for (n, ls), v in found.items() if n == name and all(dict(ls).get(k) == x for k, x in labels.items()))


def attempt(deployment):
    return {"name": f"attempt {deployment}", "attributes": json.dumps({"deployment": deployment})}


def test_calls_tokens_cost_latency_ttft():
    m = Metrics()
    m.observe(row())
    m.observe(row(cost_usd=0.25, ttft_ms=None))
    found = samples(m)
    assert value(found, "tapgate_calls_total", provider="openai", model="gpt-4o-mini", mode="router") == 2
    assert value(found, "tapgate_tokens_total", kind="input") == 20
    assert value(found, "tapgate_tokens_total", kind="cache_read") == 4
    assert value(found, "tapgate_tokens_total", kind="reasoning") == 0
    assert value(found, "tapgate_cost_usd_total") == 0.75
    assert value(found, "tapgate_call_duration_seconds_count") == 2
    assert value(found, "tapgate_call_duration_seconds_bucket", le="2.5") == 2
    assert value(found, "tapgate_call_duration_seconds_bucket", le="1.0") == 0
    assert value(found, "tapgate_time_to_first_token_seconds_count") == 1


def test_errors_by_kind_cache_hits_retries_fallbacks():
    m = Metrics()
    m.observe(row(status="refused", status_code=429), SimpleNamespace(refusal=SimpleNamespace(code="budget_exceeded"), spans=[]))
    m.observe(row(status="error", status_code=502), SimpleNamespace(refusal=None, spans=[]))
    m.observe(row(status="client_disconnected", status_code=None), None)
    m.observe(row(cache_hit=1, cost_usd=0.0, cost_saved_usd=0.3))
    m.observe(row(attempts=3, routed_to="anthropic/claude"),
              SimpleNamespace(refusal=None, spans=[{"name": "cache lookup", "attributes": "{}"}, attempt("openai/gpt"),
                                                   attempt("openai/gpt"), attempt("anthropic/claude")]))
    found = samples(m)
    assert value(found, "tapgate_errors_total", kind="budget_exceeded") == 1
    assert value(found, "tapgate_errors_total", kind="http_5xx") == 1
    assert value(found, "tapgate_errors_total", kind="client_disconnected") == 1
    assert value(found, "tapgate_cache_hits_total") == 1
    assert value(found, "tapgate_cost_saved_usd_total") == 0.3
    assert value(found, "tapgate_retries_total") == 2
    assert value(found, "tapgate_fallbacks_total") == 1


def test_caller_label_is_capped():
    m = Metrics(caller="customer", cap=2)
    for who in ("a", "b", "c", "d", "a"):
        m.observe(row(customer_identifier=who))
    found = samples(m)
    callers = {dict(ls)["caller"] for (n, ls) in found if n == "tapgate_calls_total"}
    assert callers == {"a", "b", OTHER}
    assert value(found, "tapgate_calls_total", caller=OTHER) == 2
    assert value(found, "tapgate_calls_total", caller="a") == 2


def test_no_caller_label_unless_asked():
    m = Metrics()
    m.observe(row(customer_identifier="acme", key_id="k9"))
    assert {dict(ls)["caller"] for (n, ls) in samples(m) if n == "tapgate_calls_total"} == {""}


def test_capped_label():
    label = CappedLabel(1)
    assert (label("x"), label("y"), label("x"), label(None)) == ("x", OTHER, "x", "")


def test_writer_and_budget_gauges_read_at_scrape():
    writer = SimpleNamespace(pending=lambda: (7, 700), lost=3)
    budget = SimpleNamespace(cap=10.0, unit="usd", period="month")
    ledger = SimpleNamespace(now=lambda: None, standing=lambda scope, b, now: (4.5, 0.0, None))
    admission = SimpleNamespace(ledger=ledger, in_force=lambda: {(("key", "k1"), "usd/month"): budget,
                                                                 (("global", ""), "soft"): SimpleNamespace(cap=None)})
    m = Metrics()
    m.gauges += [writer_gauges(SimpleNamespace(writer=writer)), budget_gauges(admission, 10)]
    found = samples(m)
    assert value(found, "tapgate_writer_queue_depth") == 7
    assert value(found, "tapgate_writer_dropped_rows_total") == 3
    assert value(found, "tapgate_budget_spent", budget="key k1 usd/month", unit="usd") == 4.5
    assert value(found, "tapgate_budget_cap", budget="key k1 usd/month") == 10.0
    writer.lost = 5
    assert value(samples(m), "tapgate_writer_dropped_rows_total") == 5


def test_histograms_count_a_value_on_a_bound_in_that_bucket():
    """As prometheus_client's own Histogram: le is "less than or equal"; buckets are cumulative."""
    m = Metrics()
    m.observe(row(duration_ms=1000.0, ttft_ms=None))
    m.observe(row(duration_ms=400_000.0, ttft_ms=None))  # past the last bound: only +Inf
    found = samples(m)
    assert value(found, "tapgate_call_duration_seconds_bucket", le="0.5") == 0
    assert value(found, "tapgate_call_duration_seconds_bucket", le="1.0") == 1
    assert value(found, "tapgate_call_duration_seconds_bucket", le="320.0") == 1
    assert value(found, "tapgate_call_duration_seconds_bucket", le="+Inf") == 2
    assert value(found, "tapgate_call_duration_seconds_sum") == 401.0
