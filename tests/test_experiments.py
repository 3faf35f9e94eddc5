"""A/B experiments: the split holds within 2 points over 1,000 customers, each keeps its variant (also
after a restart); experiments after rules in the plan; `spend --by variant` and `compare variants`."""

from __future__ import annotations

import json
import random
from collections import Counter
from datetime import UTC, datetime

import pytest
from known_store import at, request

from cli.compare import percentile
from cli.main import main
from core.config import Experiment, TapgateConfig
from core.experiments import Experiments, bucket, pick
from core.route_plan import routing_for
from core.rules import features_of
from core.schema import open_db
from providers.pricing import PriceTable

SPLIT = {"model": "smart", "variants": [{"name": "sonnet", "to": "anthropic/claude-sonnet-4-5", "percent": 30},
                                        {"name": "mini", "to": "openai/gpt-4o-mini", "percent": 70}]}


def experiments(**extra) -> Experiments:
    return Experiments({"sonnet-vs-mini": Experiment.model_validate({**SPLIT, **extra})})


def test_the_split_holds_over_1000_customers_and_each_keeps_its_variant():
    split = experiments()
    customers = [f"customer-{i}" for i in range(1000)]
    first = {c: split.assign("smart", c, None).variant.name for c in customers}
    share = Counter(first.values())["sonnet"] / len(customers) * 100
    assert abs(share - 30) <= 2, share
    assert all(split.assign("smart", c, "any-thread").variant.name == first[c] for c in reversed(customers))
    again = experiments()  # a restart: the hash's choice again, for all but the few moved to correct the split
    kept = sum(again.assign("smart", c, None).variant.name == first[c] for c in customers)
    hashed = sum(pick(split.by_model["smart"].experiment.variants, bucket("sonnet-vs-mini", c)).name == first[c]
                 for c in customers)
    assert kept >= 950 and hashed >= 950, (kept, hashed)
    assert split.assign("other-model", "customer-1", None) is None


@pytest.mark.parametrize("percent", [10, 50, 90])
def test_other_splits_hold_too(percent):
    split = experiments(variants=[{**SPLIT["variants"][0], "percent": percent},
                                  {**SPLIT["variants"][1], "percent": 100 - percent}])
    got = Counter(split.assign("smart", f"c{i}", None).variant.name for i in range(1000))
    assert abs(got["sonnet"] / 10 - percent) <= 2


def test_sticky_by_thread_and_per_call():
    by_thread = experiments(sticky="thread")
    assert len({by_thread.assign("smart", f"cust-{i}", "thread-7").variant.name for i in range(50)}) == 1
    per_call = experiments(sticky="call")
    rng = random.Random(4)
    got = Counter(per_call.assign("smart", "same-customer", None, rng).variant.name for _ in range(1000))
    assert abs(got["sonnet"] / 10 - 30) <= 2  # per call: drawn, and kept to the split too
    no_customer = Counter(experiments().assign("smart", None, None, rng).variant.name for _ in range(200))
    assert len(no_customer) == 2  # without a customer to stick to, each call is drawn


@pytest.mark.parametrize("bad, error", [
    ({"variants": [{"name": "a", "to": "x", "percent": 60}, {"name": "b", "to": "y", "percent": 30}]}, "add up to 90"),
    ({"variants": [{"name": "a", "to": "x", "percent": 50}, {"name": "a", "to": "y", "percent": 50}]}, "unique"),
    ({"variants": [{"name": "a", "to": "x", "percent": 100}]}, "at least 2"),
    ({"sticky": "user"}, "customer"),
])
def test_config_errors(bad, error):
    with pytest.raises(ValueError, match=error):
        Experiment.model_validate({**SPLIT, **bad})


def test_an_experiment_splits_the_model_a_rule_sent_the_call_to():
    config = TapgateConfig.model_validate({
        "router": {"models": {"smart": [{"provider": "openai", "model": "gpt-4o"}]}},
        "routing": {"rules": [{"name": "code", "match": {"keywords": ["refactor"]}, "to": "smart"}],
                    "experiments": {"sonnet-vs-mini": SPLIT}}})
    routing = routing_for(config, PriceTable.load(), env={})
    body = {"model": "gpt-4o", "messages": [{"role": "user", "content": "refactor this"}]}
    seen = Counter()
    for i in range(200):
        routed = routing.route(features_of(body, customer=f"c{i}"), "gpt-4o", None, now=0)
        assert routed.rule == "code" and routed.assigned.experiment == "sonnet-vs-mini"
        assert [t.name for t in routed.plan] == [routed.assigned.variant.to]
        assert routed.attributes()["variant"] == routed.assigned.variant.name
        seen[routed.assigned.variant.name] += 1
    assert set(seen) == {"sonnet", "mini"}
    plain = routing.route(features_of({"model": "gpt-4o", "messages": []}), "gpt-4o", None, now=0)
    assert plain.assigned is None and [t.name for t in plain.plan] == ["openai/gpt-4o"]


def test_a_variant_to_an_unknown_model_is_a_config_error():
    config = TapgateConfig.model_validate({"routing": {"experiments": {"x": {**SPLIT, "variants": [
        {"name": "a", "to": "no-such-model", "percent": 50}, {"name": "b", "to": "gpt-4o", "percent": 50}]}}}})
    with pytest.raises(ValueError, match=r"routing\.experiments\.x\.variants\.0 \(a\): to: 'no-such-model'"):
        routing_for(config, PriceTable.load(), env={})


@pytest.fixture
def store(tmp_path):
    path = tmp_path / "t.db"
    db = open_db(path)
    now = datetime.now(UTC)
    rows = []
    for i in range(20):  # sonnet: 20 calls, 100..1050 ms, 2 errors; mini: 10 calls of 50 ms, no error
        rows.append(request(id=f"s{i:02d}", started_at=at(now, minutes=i), duration_ms=100.0 + 50 * i,
                            cost_usd=0.01, status="error" if i < 2 else "ok", mode="router",
                            experiment="sonnet-vs-mini", variant="sonnet"))
    for i in range(10):
        rows.append(request(id=f"m{i:02d}", started_at=at(now, minutes=i), duration_ms=50.0, cost_usd=0.001,
                            mode="router", experiment="sonnet-vs-mini", variant="mini"))
    rows.append(request(id="plain", started_at=at(now, minutes=1)))
    db["requests"].insert_all(rows)
    db.close()
    return path


def test_compare_variants_and_spend_by_variant(store, capsys):
    assert main(["compare", "variants", "--db", str(store), "--json"]) == 0
    got = {r["variant"]: r for r in map(json.loads, capsys.readouterr().out.splitlines())}
    sonnet, mini = got["sonnet"], got["mini"]
    assert (sonnet["calls"], sonnet["error_rate"], sonnet["p50_ms"], sonnet["p95_ms"]) == (20, 0.1, 550.0, 1000.0)
    assert sonnet["cost_usd"] == pytest.approx(0.2) and sonnet["cost_per_call_usd"] == pytest.approx(0.01)
    assert (mini["calls"], mini["error_rate"], mini["p50_ms"], mini["p95_ms"]) == (10, 0.0, 50.0, 50.0)
    assert main(["compare", "variants", "--db", str(store), "--experiment", "nope"]) == 0
    assert "no calls in an experiment named nope" in capsys.readouterr().out
    assert main(["compare", "variants", "--db", str(store)]) == 0
    assert "sonnet" in capsys.readouterr().out
    assert main(["spend", "--db", str(store), "--by", "variant", "--json"]) == 0
    spend = {r["variant"]: r for r in map(json.loads, capsys.readouterr().out.splitlines())}
    assert spend["sonnet-vs-mini/sonnet"]["requests"] == 20 and spend["sonnet-vs-mini/mini"]["requests"] == 10
    assert spend[None]["requests"] == 1  # calls in no experiment


def test_percentile_nearest_rank():
    assert percentile([], 50) is None
    assert percentile([3.0, 1.0, 2.0], 50) == 2.0 and percentile(list(map(float, range(1, 101))), 95) == 95.0
