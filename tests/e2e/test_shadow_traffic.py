"""Shadow traffic through a real mitmdump and the official SDKs, in both modes: the client has its answer
while the shadow is still being answered (the mock holds the shadow's first byte 3 s), and the shadow row
links to the original's trace and row, charged to nobody's budget."""

from __future__ import annotations

import json

import anthropic
import openai
import pytest
from harness import admin, configured_gateway, query, router_url, wait_rows
from support import until

MASTER = "sk-tapgate-master-shadow"
MSG = [{"role": "user", "content": "What is the capital of the UK?"}]


def config(mock: int) -> str:
    base = f"http://127.0.0.1:{mock}"
    return f"""
router:
  master_key_env: TG_SHADOW_MASTER
  first_byte_timeout: 10
  providers:
    openai: {{base_url: "{base}/v1"}}
    anthropic: {{base_url: "{base}"}}
    gemini: {{base_url: "{base}"}}
routing:
  shadow:
    try-gemini:
      model: ["gpt-4o*", "claude-*"]
      to: gemini/gemini-2.5-flash
      percent: 100
"""


@pytest.fixture(scope="module")
def shadowing(mock, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("shadow")
    process, port = configured_gateway(mock, tmp, config(mock), env={"TG_SHADOW_MASTER": MASTER})
    yield router_url(process), tmp / "t.db", port, tmp / "conf" / "mitmproxy-ca-cert.pem"
    assert process.stop() == 0, "\n".join(process.lines[-30:])


@pytest.fixture(autouse=True)
def slow_shadow(mock):
    admin(mock, "POST", "/_mock/reset")
    admin(mock, "POST", "/_mock/program", {"path_contains": "generateContent", "times": 1,
                                           "fault": "slow-first-byte:3000"})


def call(shadowing, monkeypatch, mode: str, dialect: str, customer: str) -> None:
    base = shadowing[0]
    if mode == "passthrough":  # the SDK's own host, through the proxy: what shell-init sets up
        monkeypatch.setenv("HTTPS_PROXY", f"http://127.0.0.1:{shadowing[2]}")
        monkeypatch.setenv("SSL_CERT_FILE", str(shadowing[3]))
    tag = {"X-Tapgate-Customer-Identifier": customer}
    if dialect == "openai":
        c = openai.OpenAI(api_key=MASTER if mode == "router" else "sk-test-shadow", max_retries=0,
                          base_url=base if mode == "router" else None, default_headers=tag)
        assert c.chat.completions.create(model="gpt-4o-mini", messages=MSG).choices[0].message.content
    else:
        c = anthropic.Anthropic(api_key=MASTER if mode == "router" else "sk-ant-test-shadow", max_retries=0,
                                base_url=base.removesuffix("/v1") if mode == "router" else None, default_headers=tag)
        with c.messages.stream(model="claude-sonnet-4-5", max_tokens=50, messages=MSG) as s:
            assert s.get_final_message().content


@pytest.mark.parametrize("dialect", ["openai", "anthropic"])
@pytest.mark.parametrize("mode", ["router", "passthrough"])
def test_a_shadow_runs_after_the_client_has_its_answer_and_links_to_it(shadowing, mock, monkeypatch, customer,
                                                                       mode, dialect):
    call(shadowing, monkeypatch, mode, dialect, customer)
    # The client has its answer; the shadow's request has reached the mock and is still held there.
    shadowed = until(lambda: [r for r in admin(mock, "GET", "/_mock/requests") if "generateContent" in r["path"]],
                     what="the shadow request")
    assert shadowed[0]["connection_open"] is True
    (original,) = wait_rows(shadowing[1], "SELECT * FROM requests WHERE customer_identifier = ?", (customer,))
    assert (original["mode"], original["status"]) == (mode, "ok")
    assert not query(shadowing[1], "SELECT id FROM requests WHERE json_extract(metadata, '$.shadow_of') = ?",
                     (original["id"],))  # recorded only once its answer arrives
    (shadow,) = wait_rows(shadowing[1], "SELECT * FROM requests WHERE json_extract(metadata, '$.shadow_of') = ?",
                          (original["id"],))
    assert (shadow["mode"], shadow["status"], shadow["model"]) == ("shadow", "ok", "gemini/gemini-2.5-flash")
    assert shadow["trace_id"] == original["trace_id"] and shadow["routed_to"] == "gemini/gemini-2.5-flash"
    assert shadow["customer_identifier"] is None and shadow["key_id"] is None  # no customer's budget
    assert shadow["cost_usd"] > 0 and shadow["output_tokens"]
    assert json.loads(shadow["metadata"]) == {"shadow": "try-gemini", "shadow_of": original["id"]}
    (root,) = query(shadowing[1], "SELECT parent_span_id FROM spans WHERE span_id = ?", (shadow["span_id"],))
    assert root["parent_span_id"] == original["span_id"]
    sent = json.loads(shadowed[0]["body"])
    assert "capital of the UK" in json.dumps(sent["contents"])  # the client's question, in Gemini's shape
