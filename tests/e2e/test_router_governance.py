"""The router with gateway keys, budgets, cooldown, load balancing and model downgrade, on its own
gateway so that its cooldowns and spend stay out of the other router tests."""

from __future__ import annotations

import asyncio
import io
import json
import time
import urllib.error
import urllib.request
import uuid
from collections import Counter
from contextlib import redirect_stdout

import anthropic
import openai
import pytest
from harness import admin, query, router_url, start_gateway, wait_rows
from specs import ANTHROPIC_ERROR, OPENAI_ERROR, conforms

from cli.main import main

MASTER = "sk-governance-master"
MSG = [{"role": "user", "content": "hi"}]


def config(mock: int) -> str:
    base = f"http://127.0.0.1:{mock}"
    return f"""
customers:
  down:
    budgets: [{{unit: requests, period: day, cap: 4}}]
    downgrade: [{{above: 0.5, model: "openai/gpt-4o", to: "openai/gpt-4o-mini"}}]
  thrice:
    budgets: [{{unit: requests, period: day, cap: 3}}]
router:
  master_key: {MASTER}
  retry: {{num_retries: 0}}
  cooldown: {{failures: 2, seconds: 1}}
  unsupported_params: refuse
  extra_params: [repetition_penalty]
  providers:
    openai: {{base_url: "{base}/v1"}}
    anthropic: {{base_url: "{base}"}}
  models:
    flaky:
      deployments: [{{provider: openai, model: gpt-4.1}}]
      fallback_models: [anthropic/claude-sonnet-4-5]
    failover:
      deployments: [{{provider: openai, model: gpt-4.1-mini}}]
      fallback_models: [anthropic/claude-sonnet-4-5]
    balanced:
      - {{provider: openai, model: gpt-4o-mini, weight: 3}}
      - {{provider: openai, model: gpt-4o, weight: 1}}
    keyless:
      deployments: [{{provider: openai, model: gpt-4o-mini, api_key_env: TAPGATE_TEST_UNSET_KEY}}]
    doomed:
      deployments: [{{provider: openai, model: gpt-4.1-nano}}]
      fallback_models: [anthropic/claude-haiku-4-5]
"""


@pytest.fixture(scope="module")
def gov(mock, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("router-gov")
    (tmp / "tapgate.yaml").write_text(config(mock))
    db = tmp / "t.db"
    process, _ = start_gateway(mock, tmp / "conf", db, "--set", f"tapgate_config={tmp / 'tapgate.yaml'}")
    keys = {}
    for name, flags in {"ten": ("--budget", "10requests/day"), "mini": ("--models", "*gpt-4o-mini"),
                        "gone": (), "cheap": ("--budget", "2requests/day", "--downgrade",
                                              "0.5:anthropic/*=openai/gpt-4o-mini")}.items():
        with redirect_stdout(io.StringIO()) as printed:
            assert main(["keys", "create", "--db", str(db), "--name", name, "--json", *flags]) == 0
        made = json.loads(printed.getvalue())
        keys[name] = made["id"], made["secret"]
    with redirect_stdout(io.StringIO()):
        assert main(["keys", "revoke", keys["gone"][0], "--db", str(db)]) == 0
    process.wait_for(r"tapgate: 4 gateway keys")
    yield router_url(process), db, process, keys
    assert process.stop() == 0, "\n".join(process.lines[-30:])


@pytest.fixture(autouse=True)
def clean_mock(mock):
    admin(mock, "POST", "/_mock/reset")


def chat(gov, model: str, key: str = MASTER, **extra):
    c = openai.OpenAI(base_url=gov[0], api_key=key, max_retries=0)
    return c.chat.completions.create(model=model, messages=MSG, **extra)


def rows(gov, where: str, params: tuple, count: int = 1) -> list[dict]:
    return wait_rows(gov[1], f"SELECT * FROM requests WHERE {where} ORDER BY started_at", params, count)


def test_a_failing_deployment_cools_down_and_a_probe_brings_it_back(gov, mock):
    tag = f"cool-{uuid.uuid4().hex[:6]}"
    admin(mock, "POST", "/_mock/program", {"path_contains": "/chat/completions", "times": 2, "status": 500})
    for _ in range(2):  # two failures in a row: openai/gpt-4.1 cools down for a second
        chat(gov, "flaky", extra_body={"customer_identifier": tag})
    chat(gov, "flaky", extra_body={"customer_identifier": tag})
    got = rows(gov, "customer_identifier = ?", (tag,), 3)
    assert [(r["routed_to"], r["attempts"]) for r in got] == [("anthropic/claude-sonnet-4-5", 2)] * 2 + [
        ("anthropic/claude-sonnet-4-5", 1)]  # the third call skipped the cooling deployment
    assert sum("/chat/completions" in r["path"] for r in admin(mock, "GET", "/_mock/requests")) == 2
    deadline = time.monotonic() + 10
    while True:  # once the second is over, one call probes it and, as it answers, it is back
        chat(gov, "flaky", extra_body={"customer_identifier": tag})
        last = rows(gov, "customer_identifier = ?", (tag,), len(got) + 1)[-1]
        got.append(last)
        if last["routed_to"] == "openai/gpt-4.1":
            break
        assert time.monotonic() < deadline, "the cooled deployment was never probed"
    chat(gov, "flaky", extra_body={"customer_identifier": tag})
    assert rows(gov, "customer_identifier = ?", (tag,), len(got) + 1)[-1]["routed_to"] == "openai/gpt-4.1"


def test_an_alias_splits_traffic_by_weight(gov):
    tag = f"lb-{uuid.uuid4().hex[:6]}"

    async def burst():
        async with openai.AsyncOpenAI(base_url=gov[0], api_key=MASTER, max_retries=0) as c:
            await asyncio.gather(*(c.chat.completions.create(model="balanced", messages=MSG,
                                                             extra_body={"customer_identifier": tag})
                                   for _ in range(200)))

    asyncio.run(burst())
    split = Counter(r["routed_to"] for r in rows(gov, "customer_identifier = ?", (tag,), 200))
    # Weights 3:1: 150 of 200 expected, binomial sd 6.1; 120..180 is ±4.9 sd (one false failure in
    # about a million runs), still far from an even split (100) or a reversed one (50).
    assert 120 <= split["openai/gpt-4o-mini"] <= 180, split


def test_gateway_keys_as_bearer_tokens(gov):
    key_id, secret = gov[3]["mini"]
    assert chat(gov, "openai/gpt-4o-mini", secret).choices
    assert rows(gov, "key_id = ?", (key_id,))[0]["status"] == "ok"
    with pytest.raises(openai.PermissionDeniedError) as e:
        chat(gov, "anthropic/claude-sonnet-4-5", secret)
    conforms("openai", OPENAI_ERROR, e.value.response.json())
    assert e.value.response.json()["error"]["code"] == "model_not_allowed"
    with pytest.raises(openai.AuthenticationError, match="revoked"):
        chat(gov, "openai/gpt-4o-mini", gov[3]["gone"][1])


def test_the_x_tapgate_key_header_names_the_key_as_in_passthrough(gov):
    """An app set up for passthrough sends its gateway key as X-Tapgate-Key beside a provider key."""
    key_id, secret = gov[3]["mini"]
    tag = f"xkey-{uuid.uuid4().hex[:6]}"  # this call's row, not an earlier test's under the same key
    assert chat(gov, "openai/gpt-4o-mini", "sk-a-provider-key",
                extra_headers={"X-Tapgate-Key": secret, "X-Tapgate-Customer-Identifier": tag}).choices
    assert [r["status"] for r in rows(gov, "key_id = ? AND customer_identifier = ?", (key_id, tag))] == ["ok"]
    with pytest.raises(openai.AuthenticationError, match="revoked"):
        chat(gov, "openai/gpt-4o-mini", MASTER, extra_headers={"X-Tapgate-Key": gov[3]["gone"][1]})


def test_concurrent_calls_never_pass_a_keys_cap(gov):
    """100 calls at once on a key with room for 10: exactly 10 are answered, 90 refused before upstream."""
    key_id, secret = gov[3]["ten"]

    async def burst():
        async with openai.AsyncOpenAI(base_url=gov[0], api_key=secret, max_retries=0) as c:
            return await asyncio.gather(*(c.chat.completions.create(model="openai/gpt-4o", messages=MSG)
                                          for _ in range(100)), return_exceptions=True)

    results = asyncio.run(burst())
    refused = [r for r in results if isinstance(r, openai.RateLimitError)]
    assert len(refused) == 90 and sum(not isinstance(r, Exception) for r in results) == 10
    assert refused[0].response.json()["error"]["code"] == "budget_exceeded"
    got = rows(gov, "key_id = ?", (key_id,), 100)
    assert Counter(r["status"] for r in got) == {"ok": 10, "refused": 90}


def test_a_failed_over_call_counts_once(gov, mock):
    """Two calls fail on their first deployment and are answered by the fallback (which then cools
    the first down, so the third goes straight to the fallback): three calls use up a three-request
    budget, and the fourth is refused, in Anthropic's shape on /v1/messages."""
    admin(mock, "POST", "/_mock/program", {"path_contains": "/chat/completions", "times": 2, "status": 503})
    for _ in range(3):
        chat(gov, "failover", extra_body={"customer_identifier": "thrice"})
    got = rows(gov, "customer_identifier = 'thrice'", (), 3)
    assert [r["attempts"] for r in got] == [2, 2, 1]
    c = anthropic.Anthropic(base_url=gov[0].removesuffix("/v1"), api_key=MASTER, max_retries=0)
    with pytest.raises(anthropic.RateLimitError) as e:
        c.messages.create(model="failover", max_tokens=10, messages=MSG, extra_body={"customer_identifier": "thrice"})
    assert e.value.response.json()["error"]["type"] == "rate_limit_error"
    assert "3 requests of 3 requests per day" in e.value.response.json()["error"]["message"]


def test_unsupported_parameters_refused_when_config_says_so(gov):
    with pytest.raises(openai.BadRequestError) as e:
        chat(gov, "anthropic/claude-sonnet-4-5", logprobs=True)
    body = e.value.response.json()
    conforms("openai", OPENAI_ERROR, body)
    assert body["error"]["param"] == "logprobs" and "anthropic/claude-sonnet-4-5" in body["error"]["message"]
    assert chat(gov, "openai/gpt-4o-mini", logprobs=True).choices  # OpenAI itself takes it


def test_model_downgrade_past_a_share_of_the_budget(gov):
    asked = [chat(gov, "openai/gpt-4o", extra_body={"customer_identifier": "down"}) for _ in range(3)]
    got = rows(gov, "customer_identifier = 'down'", (), 3)
    assert [r["routed_to"] for r in got] == ["openai/gpt-4o", "openai/gpt-4o", "openai/gpt-4o-mini"]
    assert all(r["model"] == "openai/gpt-4o" for r in got) and asked[2].choices
    (root,) = query(gov[1], "SELECT attributes FROM spans WHERE request_id = ? AND parent_span_id IS NULL",
                    (got[2]["id"],))
    assert "downgraded openai/gpt-4o to openai/gpt-4o-mini" in json.loads(root["attributes"])["notes"][0]
    key_id, secret = gov[3]["cheap"]
    chat(gov, "anthropic/claude-sonnet-4-5", secret)
    chat(gov, "anthropic/claude-sonnet-4-5", secret)
    assert [r["routed_to"] for r in rows(gov, "key_id = ?", (key_id,), 2)] == [
        "anthropic/claude-sonnet-4-5", "openai/gpt-4o-mini"]


def test_a_revoked_keys_refusal_is_recorded_with_its_id_and_body(gov):
    key_id, secret = gov[3]["gone"]
    marker = f"revoked-{uuid.uuid4().hex[:6]}"
    with pytest.raises(openai.AuthenticationError, match="revoked"):
        chat(gov, "openai/gpt-4o-mini", secret, user=marker)
    (r,) = rows(gov, "key_id = ? AND request_body LIKE ?", (key_id, f"%{marker}%"))
    assert (r["status"], r["status_code"], r["model"], r["mode"]) == ("refused", 401, "openai/gpt-4o-mini", "router")


def post(url: str, body: dict, headers: dict) -> tuple[int, dict]:
    """A raw POST straight to the router (no SDK, no proxy): (status, JSON body)."""
    req = urllib.request.Request(url, json.dumps(body).encode(), {"content-type": "application/json", **headers})
    try:
        with urllib.request.build_opener(urllib.request.ProxyHandler({})).open(req, timeout=10) as answer:
            return answer.status, json.loads(answer.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


def test_messages_401_speaks_of_the_header_it_was_sent_as_anthropic_does(gov):
    """Claude Code and curl send x-api-key; the anthropic SDK (2.x) sends a Bearer token. Each hears
    of its own header, with Anthropic's authentication_error."""
    url = gov[0] + "/messages"
    body = {"model": "anthropic/claude-sonnet-4-5", "max_tokens": 10, "messages": MSG}
    for headers, named in (({"x-api-key": "sk-wrong"}, "in the x-api-key header"), ({}, "in the x-api-key header"),
                           ({"authorization": "Bearer sk-wrong"}, "as the Bearer token")):
        status, answer = post(url, body, {"anthropic-version": "2023-06-01", **headers})
        assert status == 401
        conforms("anthropic", ANTHROPIC_ERROR, answer)
        error = answer["error"]
        assert error["type"] == "authentication_error" and named in error["message"], headers
    front = anthropic.Anthropic(base_url=gov[0].removesuffix("/v1"), api_key="sk-wrong", max_retries=0)
    with pytest.raises(anthropic.AuthenticationError):
        front.messages.create(**body)


def test_a_deployment_without_its_key_is_a_warning_and_a_500_never_a_call(gov, mock):
    process = gov[2]
    process.wait_for(r"router deployment openai/gpt-4o-mini has no key: TAPGATE_TEST_UNSET_KEY is not set")
    with pytest.raises(openai.InternalServerError) as e:
        chat(gov, "keyless", extra_body={"customer_identifier": "keyless"})
    assert e.value.status_code == 500 and e.value.code == "provider_key_missing"
    assert "TAPGATE_TEST_UNSET_KEY is not set" in e.value.message
    assert admin(mock, "GET", "/_mock/requests") == []  # nothing went upstream without a key
    (r,) = rows(gov, "customer_identifier = 'keyless'", ())
    assert (r["status"], r["routed_to"]) == ("error", "openai/gpt-4o-mini")


def test_fields_the_gateway_does_not_know_stay_at_the_gateway(gov, mock):
    tag = f"unknown-{uuid.uuid4().hex[:6]}"
    chat(gov, "openai/gpt-4o-mini", extra_body={"api_base": "http://attacker.example", "base_url": "http://x.example",
                                                "repetition_penalty": 1.1, "customer_identifier": tag})
    (sent,) = admin(mock, "GET", "/_mock/requests")
    body = json.loads(sent["body"])
    assert "api_base" not in body and "base_url" not in body
    assert body["repetition_penalty"] == 1.1  # router.extra_params lets it through
    (r,) = rows(gov, "customer_identifier = ?", (tag,))
    (root,) = query(gov[1], "SELECT attributes FROM spans WHERE request_id = ? AND parent_span_id IS NULL", (r["id"],))
    assert any("api_base, base_url" in note for note in json.loads(root["attributes"])["notes"])


def test_when_every_deployment_fails_routed_to_names_the_last_tried(gov, mock):
    admin(mock, "POST", "/_mock/program", {"path_contains": "/chat/completions", "times": 1, "status": 500})
    admin(mock, "POST", "/_mock/program", {"path_contains": "/v1/messages", "times": 1, "status": 500})
    with pytest.raises(openai.APIStatusError):
        chat(gov, "doomed", extra_body={"customer_identifier": "doomed"})
    (r,) = rows(gov, "customer_identifier = 'doomed'", ())
    assert (r["status"], r["attempts"], r["routed_to"]) == ("error", 2, "anthropic/claude-haiku-4-5")
