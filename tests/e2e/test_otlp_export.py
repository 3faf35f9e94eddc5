"""OTLP export from a real gateway to a loopback collector that decodes with the official protobuf
types: GenAI attributes, the caller's traceparent as parent, both doors; a collector that does not answer
or is not there never holds up a call, and what it misses is counted on /metrics."""

from __future__ import annotations

import os
import socket
import urllib.request

import openai
import pytest
from harness import router_url, start_gateway
from prometheus_client.parser import text_string_to_metric_families
from receivers import OtlpReceiver, attrs
from support import until

MASTER = "sk-tapgate-master-otlp"
TRACE, PARENT = "4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7"
LOOPBACK = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def gateway(mock, tmp, endpoint: str, *extra: str):
    (tmp / "tapgate.yaml").write_text(f"""
router:
  master_key_env: TG_OTLP_MASTER
  providers:
    openai: {{base_url: "http://127.0.0.1:{mock}/v1", api_key_env: TG_OTLP_OPENAI_KEY}}
""")
    os.environ.update(TG_OTLP_MASTER=MASTER, TG_OTLP_OPENAI_KEY="sk-provider-otlp")
    try:
        process, port = start_gateway(mock, tmp / "conf", tmp / "t.db", "--set", f"tapgate_config={tmp / 'tapgate.yaml'}",
                                      "--set", f"tapgate_otlp_endpoint={endpoint}", *extra)
    finally:
        del os.environ["TG_OTLP_MASTER"], os.environ["TG_OTLP_OPENAI_KEY"]
    return process, port


@pytest.fixture(scope="module")
def collector():
    with OtlpReceiver() as receiver:
        yield receiver


@pytest.fixture(scope="module")
def exporting(mock, collector, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("otlp")
    process, port = gateway(mock, tmp, collector.url, "--set", "tapgate_otlp_headers=x-collector-token=tok-1")
    yield router_url(process), port, tmp / "conf" / "mitmproxy-ca-cert.pem", process
    assert process.stop() == 0, "\n".join(process.lines[-30:])


def routed(base: str, customer: str, **kw):
    client = openai.OpenAI(base_url=base, api_key=MASTER, max_retries=0)
    return client.chat.completions.create(model="openai/gpt-4o-mini", messages=[{"role": "user", "content": "hi"}],
                                          extra_body={"customer_identifier": customer}, **kw)


def test_router_call_exported_with_genai_attributes_under_the_callers_trace(exporting, collector):
    base = exporting[0]
    routed(base, "otlp-router", extra_headers={"traceparent": f"00-{TRACE}-{PARENT}-01"})
    resource, span = collector.span(lambda s: attrs(s).get("tapgate.customer") == "otlp-router")
    a = attrs(span)
    assert span.trace_id.hex() == TRACE and span.parent_span_id.hex() == PARENT
    assert span.name == "chat openai/gpt-4o-mini"
    assert a["gen_ai.operation.name"] == "chat" and a["gen_ai.provider.name"] == "openai"
    assert a["gen_ai.request.model"] == "openai/gpt-4o-mini" and a["gen_ai.response.model"].startswith("gpt-4o")
    assert a["gen_ai.usage.input_tokens"] > 0 and a["gen_ai.usage.output_tokens"] > 0
    assert a["tapgate.cost_usd"] > 0 and a["tapgate.attempts"] == 1 and a["tapgate.mode"] == "router"
    assert "tapgate.request.body" not in a  # bodies are off unless tapgate_otlp_bodies
    assert {kv.key: kv.value.string_value for kv in resource.attributes}["service.name"] == "tapgate"
    assert collector.headers[-1]["x-collector-token"] == "tok-1"
    attempt = collector.span(lambda s: s.name == "attempt openai/gpt-4o-mini" and s.parent_span_id == span.span_id)
    assert attrs(attempt[1])["tapgate.deployment"] == "openai/gpt-4o-mini"


def test_passthrough_call_exported(exporting, collector, monkeypatch):
    _, port, ca, _ = exporting
    monkeypatch.setenv("HTTPS_PROXY", f"http://127.0.0.1:{port}")  # this module's gateway, not the session's
    monkeypatch.setenv("SSL_CERT_FILE", str(ca))
    client = openai.OpenAI(api_key="sk-client-otlp", max_retries=0)
    client.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}],
                                   extra_headers={"x-tapgate-customer-identifier": "otlp-pass"})
    _, span = collector.span(lambda s: attrs(s).get("tapgate.customer") == "otlp-pass")
    a = attrs(span)
    assert a["tapgate.mode"] == "passthrough" and a["gen_ai.request.model"] == "gpt-4o-mini"
    assert a["gen_ai.usage.input_tokens"] > 0 and not span.parent_span_id


def test_a_collector_that_does_not_answer_holds_up_no_call(exporting, collector):
    base = exporting[0]
    collector.arrived.clear()
    collector.hold.set()
    try:
        routed(base, "otlp-held-1")
        assert collector.arrived.wait(30)  # the gateway's export is now waiting on the collector
        for i in range(3):  # and calls still go through, answered while that export hangs
            assert routed(base, f"otlp-held-{i + 2}").choices[0].message.content
        assert not collector.release.is_set()
    finally:
        collector.hold.clear()
        collector.release.set()
    collector.span(lambda s: attrs(s).get("tapgate.customer") == "otlp-held-4")


def dropped(base: str) -> float:
    with LOOPBACK.open(base.removesuffix("/v1") + "/metrics", timeout=10) as resp:
        text = resp.read().decode()
    return sum(s.value for f in text_string_to_metric_families(text) for s in f.samples
               if s.name == "tapgate_otlp_dropped_spans_total")


def test_a_collector_that_is_down_fails_no_call_and_drops_are_counted(mock, tmp_path):
    process, _ = gateway(mock, tmp_path, f"http://127.0.0.1:{closed_port()}")
    try:
        base = router_url(process)
        assert routed(base, "otlp-down").choices[0].message.content
        assert until(lambda: dropped(base) >= 1, timeout=60, what="the failed export counted")
    finally:
        assert process.stop() == 0, "\n".join(process.lines[-30:])
