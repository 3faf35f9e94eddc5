"""Routing rules, strategies and stream limits through a real mitmdump and the official SDKs, against the
loopback mock: a rule's choice and reason on the row and root span, a refusal in each client's dialect, the
router's X-Tapgate-Explain, and a stalled or cut stream ending in an error the SDK raises."""

from __future__ import annotations

import json

import anthropic
import openai
import pytest
from harness import admin, configured_gateway, query, router_url, wait_rows

MASTER = "sk-tapgate-master-rules"
MSG = [{"role": "user", "content": "hi"}]
TOOLS = [{"type": "function", "function": {"name": "run", "parameters": {"type": "object", "properties": {}}}}]


def config(mock: int) -> str:
    base = f"http://127.0.0.1:{mock}"
    return f"""
router:
  master_key_env: TG_RULES_MASTER
  connect_timeout: 0.5
  first_byte_timeout: 5
  timeout: 20
  retry: {{num_retries: 0}}
  providers:
    openai: {{base_url: "{base}/v1"}}
    anthropic: {{base_url: "{base}"}}
    gemini: {{base_url: "{base}"}}
  models:
    coder:
      strategy: lowest-cost
      deployments:
        - {{provider: anthropic, model: claude-sonnet-4-5}}
        - {{provider: openai, model: gpt-4o-mini}}
    steady:
      stream_timeouts: {{stall: 0.5}}
      deployments: [{{provider: openai, model: gpt-4o-mini}}]
    steady-claude:
      stream_timeouts: {{stall: 0.5}}
      deployments: [{{provider: anthropic, model: claude-sonnet-4-5}}]
routing:
  rules:
    - name: no-credentials
      match: {{user_regex: "password\\\\s*[:=]"}}
      refuse: Please do not send credentials to a model.
    - name: code
      match: {{keywords: [refactor], tools: true}}
      to: coder
    - name: beta
      match: {{headers: {{X-Channel: "^beta$"}}}}
      deployments: [{{provider: gemini, model: gemini-2.5-flash}}]
  experiments:
    ab:
      model: ab-test
      sticky: customer
      variants:
        - {{name: claude, to: anthropic/claude-sonnet-4-5, percent: 50}}
        - {{name: mini, to: openai/gpt-4o-mini, percent: 50}}
"""


@pytest.fixture(scope="module")
def router(mock, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("rules")
    process, _ = configured_gateway(mock, tmp, config(mock), env={"TG_RULES_MASTER": MASTER})
    yield router_url(process), tmp / "t.db", process
    assert process.stop() == 0, "\n".join(process.lines[-30:])


@pytest.fixture(autouse=True)
def clean_mock(mock):
    admin(mock, "POST", "/_mock/reset")


def oai(router) -> openai.OpenAI:
    return openai.OpenAI(base_url=router[0], api_key=MASTER, max_retries=0)


def claude(router) -> anthropic.Anthropic:
    return anthropic.Anthropic(base_url=router[0].removesuffix("/v1"), api_key=MASTER, max_retries=0)


def row(router, customer: str) -> dict:
    return wait_rows(router[1], "SELECT * FROM requests WHERE customer_identifier = ?", (customer,))[0]


@pytest.mark.parametrize("stream", [False, True], ids=["whole", "stream"])
def test_a_rule_sends_the_call_to_its_alias_and_says_why(router, customer, stream):
    kw = dict(model="gpt-4o", messages=[{"role": "user", "content": "please refactor this"}], tools=TOOLS,
              extra_body={"customer_identifier": customer})
    if stream:
        assert list(oai(router).chat.completions.create(stream=True, **kw))
    else:
        assert oai(router).chat.completions.create(**kw).choices
    r = row(router, customer)
    assert (r["rule"], r["status"], r["model"]) == ("code", "ok", "gpt-4o")
    assert "keyword 'refactor'" in r["rule_reason"] and "tools present" in r["rule_reason"]
    assert r["routed_to"] == "openai/gpt-4o-mini"  # coder is lowest-cost: gpt-4o-mini is cheaper than claude
    (span,) = query(router[1], "SELECT attributes FROM spans WHERE span_id = ?", (r["span_id"],))
    routing = json.loads(span["attributes"])["routing"]
    assert routing["rule"] == "code" and routing["routed_as"] == "coder"
    (choice,) = routing["choices"]
    assert choice["strategy"] == "lowest-cost"
    assert choice["scores"]["openai/gpt-4o-mini"] < choice["scores"]["anthropic/claude-sonnet-4-5"]


def test_a_header_rule_with_its_own_deployments(router, customer):
    oai(router).chat.completions.create(model="gpt-4o", messages=MSG, extra_headers={"X-Channel": "beta"},
                                        extra_body={"customer_identifier": customer})
    r = row(router, customer)
    assert (r["rule"], r["routed_to"]) == ("beta", "gemini/gemini-2.5-flash")


def test_a_refusing_rule_answers_in_each_clients_dialect(router, mock, customer):
    secret = [{"role": "user", "content": "my password: hunter2"}]
    with pytest.raises(openai.PermissionDeniedError) as e:
        oai(router).chat.completions.create(model="gpt-4o", messages=secret,
                                            extra_body={"customer_identifier": customer})
    assert e.value.response.json()["error"]["code"] == "refused_by_rule"
    assert "do not send credentials" in e.value.message
    r = row(router, customer)
    assert (r["status"], r["status_code"], r["rule"], r["rule_reason"]) == ("refused", 403, "no-credentials", "refused")
    with pytest.raises(anthropic.PermissionDeniedError) as e:
        claude(router).messages.create(model="claude-sonnet-4-5", max_tokens=10, messages=secret)
    assert e.value.response.json()["type"] == "error" and "credentials" in e.value.message
    assert admin(mock, "GET", "/_mock/requests") == []  # nothing reached a provider


def test_x_tapgate_explain_answers_the_plan_and_sends_nothing(router, mock):
    raw = oai(router).chat.completions.with_raw_response.create(
        model="gpt-4o", messages=[{"role": "user", "content": "refactor"}], tools=TOOLS,
        extra_headers={"X-Tapgate-Explain": "1"})
    explained = raw.http_response.json()
    assert (explained["rule"], explained["routed_as"]) == ("code", "coder")
    assert explained["plan"] == ["openai/gpt-4o-mini", "anthropic/claude-sonnet-4-5"]
    assert admin(mock, "GET", "/_mock/requests") == []


def test_a_stalled_stream_ends_with_an_error_the_openai_sdk_raises(router, mock, customer):
    admin(mock, "POST", "/_mock/program", {"path_contains": "/chat/completions", "times": 1, "chunk_delay_ms": 2000})
    with pytest.raises(openai.APIError, match="stalled"):
        list(oai(router).chat.completions.create(model="steady", messages=MSG, stream=True,
                                                 extra_body={"customer_identifier": customer}))
    r = row(router, customer)
    assert r["status"] == "upstream_error" and "stalled: no event for 0.5 s" in r["error"]


def test_a_stalled_stream_ends_with_an_error_the_anthropic_sdk_raises(router, mock, customer):
    """Same dialect: the provider's bytes are relayed as they are, and the stall is told in its own shape."""
    admin(mock, "POST", "/_mock/program", {"path_contains": "/v1/messages", "times": 1, "chunk_delay_ms": 2000})
    with pytest.raises(anthropic.APIError, match="stalled"):
        with claude(router).messages.stream(model="steady-claude", max_tokens=50, messages=MSG,
                                            extra_body={"customer_identifier": customer}) as s:
            list(s)
    assert row(router, customer)["status"] == "upstream_error"


def test_a_cut_same_dialect_stream_is_not_a_silent_success(router, mock, customer):
    admin(mock, "POST", "/_mock/program", {"path_contains": "/chat/completions", "times": 1, "fault": "cut"})
    with pytest.raises(openai.APIError, match="stream broke"):
        list(oai(router).chat.completions.create(model="openai/gpt-4o-mini", messages=MSG, stream=True,
                                                 extra_body={"customer_identifier": customer}))
    assert row(router, customer)["status"] == "upstream_error"


def test_an_experiment_splits_customers_and_each_keeps_its_variant(router, customer):
    targets = {"claude": "anthropic/claude-sonnet-4-5", "mini": "openai/gpt-4o-mini"}
    for i in range(8):
        for _ in range(2):
            oai(router).chat.completions.create(model="ab-test", messages=MSG,
                                                extra_body={"customer_identifier": f"{customer}-{i}"})
    rows = wait_rows(router[1], "SELECT * FROM requests WHERE customer_identifier LIKE ? ORDER BY customer_identifier",
                     (f"{customer}-%",), count=16)
    by_customer: dict[str, set] = {}
    for r in rows:
        assert r["experiment"] == "ab" and r["routed_to"] == targets[r["variant"]] and r["status"] == "ok"
        by_customer.setdefault(r["customer_identifier"], set()).add(r["variant"])
    assert all(len(v) == 1 for v in by_customer.values())  # sticky
    assert {v for vs in by_customer.values() for v in vs} == {"claude", "mini"}  # both arms used
