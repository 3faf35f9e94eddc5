"""The router port's operational endpoints on a real gateway: /health/live, /health/ready with its
reasons, and /metrics read by the official client's text parser and scraped by a real Prometheus."""

from __future__ import annotations

import json
import os
import socket
import urllib.error
import urllib.parse
import urllib.request

import openai
import pytest
from harness import Process, router_url, start_gateway, wait_rows
from prometheus_client.parser import text_string_to_metric_families
from services import require
from support import until

MASTER = "sk-tapgate-master-obs"
LOOPBACK = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # never through a proxy


def get(url: str) -> tuple[int, bytes, str]:
    try:
        with LOOPBACK.open(url, timeout=10) as resp:
            return resp.status, resp.read(), resp.headers.get("content-type", "")
    except urllib.error.HTTPError as e:
        return e.code, e.read(), e.headers.get("content-type", "")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def observed(mock, tmp_path_factory):
    """A gateway whose router has one deployment with its key and one whose key variable is unset."""
    tmp = tmp_path_factory.mktemp("observed")
    (tmp / "tapgate.yaml").write_text(f"""
router:
  master_key_env: TG_OBS_MASTER
  providers:
    openai: {{base_url: "http://127.0.0.1:{mock}/v1", api_key_env: TG_OBS_OPENAI_KEY}}
  models:
    fast:
      deployments: [{{provider: openai, model: gpt-4o-mini}}]
    keyless:
      deployments: [{{provider: groq, model: llama-3.1-8b-instant, api_key_env: TG_OBS_UNSET_KEY}}]
""")
    os.environ.update(TG_OBS_MASTER=MASTER, TG_OBS_OPENAI_KEY="sk-provider-obs")
    os.environ.pop("TG_OBS_UNSET_KEY", None)
    try:
        process, _ = start_gateway(mock, tmp / "conf", tmp / "t.db", "--set", f"tapgate_config={tmp / 'tapgate.yaml'}",
                                   "--set", "tapgate_metrics_caller=customer", "--set", "tapgate_metrics_caller_cap=2")
    finally:
        del os.environ["TG_OBS_MASTER"], os.environ["TG_OBS_OPENAI_KEY"]
    base = router_url(process).removesuffix("/v1")
    yield base, tmp / "t.db", process
    assert process.stop() == 0, "\n".join(process.lines[-30:])


def test_live_and_ready(gateway):
    base = router_url(gateway.process).removesuffix("/v1")
    status, body, ctype = get(base + "/health/live")
    assert (status, json.loads(body), ctype) == (200, {"status": "live"}, "application/json; charset=utf-8")
    status, body, _ = get(base + "/health/ready")
    assert status == 200, body
    assert json.loads(body) == {"status": "ready", "checks": {"store": {"ok": True}, "router": {"ok": True},
                                                              "deployment_keys": {"ok": True}}}


def test_not_ready_names_the_unset_key_and_warns_at_start(observed):
    base, _, process = observed
    status, body, _ = get(base + "/health/ready")
    assert status == 503
    checks = json.loads(body)["checks"]
    assert checks["deployment_keys"]["ok"] is False
    assert "TG_OBS_UNSET_KEY" in checks["deployment_keys"]["reason"]
    assert checks["store"] == {"ok": True} and checks["router"] == {"ok": True}
    assert process.wait_for(r"router deployment \S+ has no key: TG_OBS_UNSET_KEY is not set")


def metric(text: str, name: str, **labels) -> float:
    return sum(s.value for f in text_string_to_metric_families(text) for s in f.samples
               if s.name == name and all(s.labels.get(k) == v for k, v in labels.items()))


def call(base: str, customer: str, stream: bool = False) -> None:
    client = openai.OpenAI(base_url=base + "/v1", api_key=MASTER, max_retries=0)
    body = dict(model="fast", messages=[{"role": "user", "content": "hi"}], extra_body={"customer_identifier": customer})
    if stream:
        list(client.chat.completions.create(stream=True, stream_options={"include_usage": True}, **body))
    else:
        client.chat.completions.create(**body)


def test_metrics_count_calls_with_capped_customer_label(observed):
    base, db, _ = observed
    for customer, stream in (("obs-a", False), ("obs-b", True), ("obs-c", False), ("obs-d", False)):
        call(base, customer, stream)
    wait_rows(db, "SELECT id FROM requests WHERE customer_identifier LIKE 'obs-%'", count=4)
    status, body, ctype = get(base + "/metrics")
    assert status == 200 and ctype.startswith("text/plain; version=")
    text = body.decode()
    assert metric(text, "tapgate_calls_total", provider="openai", model="fast", mode="router", status="ok") == 4
    assert metric(text, "tapgate_calls_total", caller="obs-a") == 1
    assert metric(text, "tapgate_calls_total", caller="other") == 2  # the cap is 2 customers
    assert metric(text, "tapgate_tokens_total", kind="input") > 0
    assert metric(text, "tapgate_tokens_total", kind="output") > 0
    assert metric(text, "tapgate_call_duration_seconds_count") == 4
    assert metric(text, "tapgate_time_to_first_token_seconds_count") == 1
    assert "tapgate_writer_queue_depth" in text and "tapgate_writer_dropped_rows_total 0.0" in text


def test_metrics_count_refusals_by_kind(observed):
    base, _, _ = observed
    with pytest.raises(openai.NotFoundError):
        openai.OpenAI(base_url=base + "/v1", api_key=MASTER, max_retries=0).chat.completions.create(
            model="no-such-model", messages=[{"role": "user", "content": "hi"}])
    text = get(base + "/metrics")[1].decode()  # recorded (and counted) before the error was answered
    assert metric(text, "tapgate_errors_total", kind="model_not_found", status="refused") == 1


def test_prometheus_scrapes_the_router(observed, tmp_path):
    binary = require("prometheus", "apt-get install prometheus")
    base, _, _ = observed
    call(base, "obs-prom")
    target = urllib.parse.urlsplit(base).netloc
    (tmp_path / "prometheus.yml").write_text(
        "global: {scrape_interval: 1s}\n"
        f"scrape_configs: [{{job_name: tapgate, static_configs: [{{targets: ['{target}']}}]}}]\n")
    port = free_port()
    prometheus = Process.start([binary, f"--config.file={tmp_path / 'prometheus.yml'}",
                                f"--storage.tsdb.path={tmp_path / 'data'}", f"--web.listen-address=127.0.0.1:{port}"])
    try:
        prometheus.wait_for("Server is ready to receive web requests", timeout=60)

        def calls() -> float | None:
            q = urllib.parse.quote('sum(tapgate_calls_total{job="tapgate",mode="router"})')
            status, body, _ = get(f"http://127.0.0.1:{port}/api/v1/query?query={q}")
            result = json.loads(body)["data"]["result"] if status == 200 else []
            return float(result[0]["value"][1]) if result else None

        assert until(calls, timeout=30, what="Prometheus to scrape tapgate") >= 1
        q = urllib.parse.quote('up{job="tapgate"}')
        assert json.loads(get(f"http://127.0.0.1:{port}/api/v1/query?query={q}")[1])["data"]["result"][0]["value"][1] == "1"
    finally:
        prometheus.stop()
