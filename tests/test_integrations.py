"""The integration files in docs/integrations/: the Grafana dashboard asks only for metrics the gateway
exposes, the Datasette canned queries run on a real store, the collector snippet is YAML."""

from __future__ import annotations

import json
import re
from pathlib import Path
from types import SimpleNamespace

from prometheus_client.parser import text_string_to_metric_families
from ruamel.yaml import YAML

from addons.telemetry import Telemetry
from core.metrics import Metrics, budget_gauges, writer_gauges
from core.schema import open_db

DOCS = Path(__file__).resolve().parents[1] / "docs" / "integrations"


def exposed() -> set[str]:
    """Every sample name /metrics has once one call of each kind was counted and every gauge is there."""
    m = Metrics(caller="key")
    m.observe({"provider": "openai", "model": "gpt", "mode": "router", "status": "ok", "input_tokens": 1,
               "output_tokens": 1, "cost_usd": 0.1, "duration_ms": 10.0, "ttft_ms": 5.0, "cache_hit": 1,
               "cost_saved_usd": 0.1, "attempts": 2, "shadow_cost_usd": 0.2, "key_id": "k", "routed_to": "b"},
              SimpleNamespace(refusal=None, spans=[{"name": f"attempt {d}", "attributes": json.dumps({"deployment": d})}
                                                   for d in "ab"]))
    m.observe({"provider": "openai", "model": "gpt", "mode": "router", "status": "error", "status_code": 500})
    budget = SimpleNamespace(cap=1.0, unit="usd")
    admission = SimpleNamespace(ledger=SimpleNamespace(now=lambda: None, standing=lambda *a: (0.5, 0, None)),
                                in_force=lambda: {(("global", ""), "usd/day"): budget})
    telemetry = Telemetry()
    telemetry.export = SimpleNamespace(depth=0, exported=3, dropped=0)
    m.gauges += [writer_gauges(SimpleNamespace(writer=SimpleNamespace(pending=lambda: (0, 0), lost=0))),
                 budget_gauges(admission, 10), telemetry.gauges]
    text = m.exposition().decode()
    return {s.name for f in text_string_to_metric_families(text) for s in f.samples}


def test_grafana_dashboard_asks_for_exposed_metrics():
    dashboard = json.loads((DOCS / "grafana-dashboard.json").read_text())
    names = exposed()
    exprs = [t["expr"] for p in dashboard["panels"] for t in p["targets"]]
    assert len(exprs) >= 12
    for expr in exprs:
        for metric in re.findall(r"\btapgate_[a-z_]+", expr):
            assert metric in names, f"{metric} in {expr!r} is not exposed"


def test_datasette_canned_queries_run_on_a_store(tmp_path):
    metadata = YAML(typ="safe").load((DOCS / "datasette-metadata.yml").read_text())
    db = open_db(tmp_path / "tapgate.db")
    db["requests"].insert({"id": "r1", "started_at": "2026-01-01T00:00:00.000Z", "client": "Claude Code",
                           "repo": "proj", "branch": "main", "program": "claude", "cost_usd": 0.5, "attempts": 2,
                           "status": "ok"})
    queries = metadata["databases"]["tapgate"]["queries"]
    assert {"spend_by_client", "spend_by_repo", "errors", "trace"} <= set(queries)
    for query in queries.values():
        params = {p: "2000-01-01" if p == "since" else "x" for p in re.findall(r":(\w+)", query["sql"])}
        db.execute(query["sql"], params).fetchall()  # raises on a column or view that does not exist
    rows = db.execute(queries["spend_by_repo"]["sql"], {"since": "2000"}).fetchall()
    assert rows[0][:3] == ("proj", "main", "claude")


def test_collector_snippet_receives_otlp():
    config = YAML(typ="safe").load((DOCS / "otel-collector.yaml").read_text())
    assert set(config["receivers"]["otlp"]["protocols"]) == {"http", "grpc"}
    assert config["service"]["pipelines"]["traces"]["receivers"] == ["otlp"]
