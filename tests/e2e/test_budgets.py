"""Budgets and rate limits through a real gateway: refused before upstream in the caller's dialect,
cut streams charged, and spend that survives a SIGKILL without being forgotten or counted twice."""

import base64
import io
import json
import re
import signal
import ssl
import threading
import uuid
from contextlib import redirect_stdout

import anthropic
import openai
import pytest
from google import genai
from google.genai import errors, types
from harness import query, router_url, start_gateway, wait_rows

from cli.main import main

MSG = [{"role": "user", "content": "hi"}]
CALL_USD = 14 * 2.5e-6 + 37 * 10e-6  # what the mock's gpt-4o reply costs

CONFIG = """
budgets:
  - name: gateway-month
    unit: usd
    period: month
    cap: 1000
customers:
  capped:
    budgets:
      - {unit: requests, period: day, cap: 2}
  limited:
    rate_limit: {rpm: 3}
  streamer:
    budgets:
      - {unit: usd, period: day, soft: [0.000001]}
  tiny:
    budgets:
      - {unit: usd, period: day, cap: 0.002}   # one gpt-4o call's worst case at 4,096 output tokens is ~$0.041
"""


@pytest.fixture(scope="module")
def governed(mock, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("governed")
    (tmp / "tapgate.yaml").write_text(CONFIG)
    process, port = start_gateway(mock, tmp / "conf", tmp / "t.db", "--set", f"tapgate_config={tmp / 'tapgate.yaml'}")
    yield port, tmp, router_url(process)
    assert process.stop() == 0, "\n".join(process.lines[-30:])


def http_client(port, tmp):
    return openai.DefaultHttpxClient(proxy=f"http://127.0.0.1:{port}",
                                     verify=ssl.create_default_context(cafile=tmp / "conf" / "mitmproxy-ca-cert.pem"))


def oai(port, tmp, customer, **headers):
    return openai.OpenAI(api_key="sk-x", max_retries=0, http_client=http_client(port, tmp),
                         default_headers={"X-Tapgate-Customer-Identifier": customer, **headers})


def test_a_capped_customer_is_refused_before_upstream_in_openai_shape(governed, mock):
    port, tmp, _ = governed
    c = oai(port, tmp, "capped")
    for _ in range(2):
        c.chat.completions.create(model="gpt-4o", messages=MSG, max_tokens=37)
    with pytest.raises(openai.RateLimitError) as e:
        c.chat.completions.create(model="gpt-4o", messages=MSG, max_tokens=37)
    assert e.value.code == "budget_exceeded"
    assert re.search(r"customer capped: 2 requests of 2 requests per day .* resets at \d{4}-", e.value.message)
    rows = wait_rows(tmp / "t.db", "SELECT status FROM requests WHERE customer_identifier='capped'", count=3)
    assert sorted(r["status"] for r in rows) == ["ok", "ok", "refused"]


def test_refusals_speak_each_providers_dialect(governed):
    port, tmp, _ = governed
    a = anthropic.Anthropic(api_key="sk-ant", max_retries=0, http_client=http_client(port, tmp),
                            default_headers={"X-Tapgate-Customer-Identifier": "capped"})
    with pytest.raises(anthropic.RateLimitError) as e:
        a.messages.create(model="claude-sonnet-4-6", max_tokens=10, messages=MSG)
    assert e.value.body["type"] == "error" and e.value.body["error"]["type"] == "rate_limit_error"
    assert "Budget exceeded" in e.value.body["error"]["message"]


def test_customer_params_carry_a_budget_with_the_call(governed):
    port, tmp, _ = governed
    customer = f"cp-{uuid.uuid4().hex[:6]}"
    params = base64.b64encode(json.dumps({"customer_params": {
        "customer_identifier": customer, "budget_duration": "monthly", "period_budget": 0.001}}).encode()).decode()
    c = openai.OpenAI(api_key="sk-x", max_retries=0, http_client=http_client(port, tmp),
                      default_headers={"X-Tapgate-Params": params})
    outcomes = []
    for _ in range(4):
        try:
            c.chat.completions.create(model="gpt-4o", messages=MSG, max_tokens=37)
            outcomes.append("ok")
        except openai.RateLimitError as e:
            outcomes.append(e.code)
    assert outcomes == ["ok", "ok", "budget_exceeded", "budget_exceeded"]  # 2 × $0.000405 fit in $0.001
    rows = wait_rows(tmp / "t.db", "SELECT cost_usd FROM requests WHERE customer_identifier=? AND status='ok'",
                     (customer,), count=2)
    assert sum(r["cost_usd"] for r in rows) <= 0.001


def test_declared_budgets_are_honoured_only_for_the_keys_config_names(mock, tmp_path):
    """customer_params budgets are self-declared; with customer_params_budgets: [backend] a call with
    any other key, or none, is not held to the budget it declares."""
    (tmp_path / "tapgate.yaml").write_text("customer_params_budgets: [backend]\n")
    db = tmp_path / "t.db"
    process, port = start_gateway(mock, tmp_path / "conf", db, "--set", f"tapgate_config={tmp_path / 'tapgate.yaml'}")
    try:
        secrets = {}
        for name in ("backend", "app"):
            with redirect_stdout(io.StringIO()) as printed:
                assert main(["keys", "create", "--db", str(db), "--name", name, "--json"]) == 0
            secrets[name] = json.loads(printed.getvalue())["secret"]
        process.wait_for(r"tapgate: 2 gateway keys")
        params = json.dumps({"customer_params": {"customer_identifier": "declared", "period_budget": 0.0001}})
        outcomes = {}
        for who, key in (("nobody", None), ("app", secrets["app"]), ("backend", secrets["backend"])):
            c = oai(port, tmp_path, "declared", **{"X-Tapgate-Params": params},
                    **({"X-Tapgate-Key": key} if key else {}))
            try:
                c.chat.completions.create(model="gpt-4o", messages=MSG, max_tokens=37)
                outcomes[who] = "ok"
            except openai.RateLimitError as e:
                outcomes[who] = e.code
        assert outcomes == {"nobody": "ok", "app": "ok", "backend": "budget_exceeded"}
    finally:
        assert process.stop() == 0


def test_rate_limit_gives_retry_after(governed):
    port, tmp, _ = governed
    c = oai(port, tmp, "limited")
    for _ in range(3):
        c.chat.completions.create(model="gpt-4o", messages=MSG)
    with pytest.raises(openai.RateLimitError) as e:
        c.chat.completions.create(model="gpt-4o", messages=MSG)
    assert e.value.code == "rate_limit_exceeded"
    assert 1 <= int(e.value.response.headers["retry-after"]) <= 60


def test_gemini_callers_get_googles_shape(governed, monkeypatch):
    port, tmp, _ = governed
    # google-genai reads HTTPS_PROXY and SSL_CERT_FILE; the session fixture points them at the other gateway.
    monkeypatch.setenv("HTTPS_PROXY", f"http://127.0.0.1:{port}")
    monkeypatch.setenv("SSL_CERT_FILE", str(tmp / "conf" / "mitmproxy-ca-cert.pem"))
    g = genai.Client(api_key="AIza-x", http_options=types.HttpOptions(
        headers={"X-Tapgate-Customer-Identifier": "capped"}))
    with pytest.raises(errors.ClientError) as e:
        g.models.generate_content(model="gemini-2.5-flash", contents="hi")
    assert e.value.code == 429 and e.value.status == "RESOURCE_EXHAUSTED"


RESERVES = r"this call reserves up to \$0\.0\d+, more than the whole budget: its input plus "


def test_a_refusal_names_the_reservation_and_how_to_lower_it_in_every_door(governed, monkeypatch):
    """A $0.002/day budget refuses a first call that sets no max_tokens: not for what was spent ($0)
    but for the call's worst case, which the message names with its max_tokens assumption and the fix."""
    port, tmp, router = governed
    tiny = {"X-Tapgate-Customer-Identifier": "tiny"}
    assumed = (r"4096 output tokens, assumed because it sets no {field} \(config default_max_tokens\); "
               r"send {field} to reserve less")
    messages = []
    c = oai(port, tmp, "tiny")
    with pytest.raises(openai.RateLimitError) as e:
        c.chat.completions.create(model="gpt-4o", messages=MSG)
    messages.append((e.value.message, assumed.format(field="max_tokens")))
    assert c.chat.completions.create(model="gpt-4o", messages=MSG, max_tokens=37).choices  # the advice works
    a = anthropic.Anthropic(api_key="sk-ant", max_retries=0, http_client=http_client(port, tmp), default_headers=tiny)
    with pytest.raises(anthropic.RateLimitError) as e:
        a.messages.create(model="claude-sonnet-4-6", max_tokens=4096, messages=MSG)
    messages.append((e.value.body["error"]["message"],
                     r"the 4096 output tokens its max_tokens allows \(a smaller max_tokens reserves less\)"))
    monkeypatch.setenv("HTTPS_PROXY", f"http://127.0.0.1:{port}")
    monkeypatch.setenv("SSL_CERT_FILE", str(tmp / "conf" / "mitmproxy-ca-cert.pem"))
    g = genai.Client(api_key="AIza-x", http_options=types.HttpOptions(headers=tiny))
    with pytest.raises(errors.ClientError) as e:
        g.models.generate_content(model="gemini-2.5-pro", contents="hi")
    messages.append((e.value.message, assumed.format(field=r"generationConfig\.maxOutputTokens")))
    routed = openai.OpenAI(base_url=router, api_key="x", max_retries=0)
    with pytest.raises(openai.RateLimitError) as e:
        routed.chat.completions.create(model="gpt-4o", messages=MSG, extra_body={"customer_identifier": "tiny"})
    messages.append((e.value.message, assumed.format(field="max_tokens")))
    front = anthropic.Anthropic(base_url=router.removesuffix("/v1"), api_key="x", max_retries=0)
    with pytest.raises(anthropic.RateLimitError) as e:
        front.messages.create(model="claude-sonnet-4-5", max_tokens=4096, messages=MSG,
                              extra_body={"customer_identifier": "tiny"})
    messages.append((e.value.body["error"]["message"], r"the 4096 output tokens its max_tokens allows"))
    for message, how in messages:
        assert re.search(r"Budget exceeded for customer tiny: \$[\d.e-]+ of \$0\.002 per day spent or reserved "
                         r"by calls in flight; " + RESERVES + how + r".*; it resets at \d{4}-", message), message


def test_a_stream_cut_by_the_client_is_still_charged(governed):
    port, tmp, _ = governed
    c = oai(port, tmp, "streamer", **{"x-mock-chunk-delay-ms": "300"})
    with c.chat.completions.with_streaming_response.create(model="gpt-4o-mini", messages=MSG, stream=True) as r:
        next(r.iter_lines())
    (row,) = wait_rows(tmp / "t.db", "SELECT * FROM requests WHERE customer_identifier='streamer'")
    assert row["status"] == "client_disconnected" and row["cost_usd"] > 0
    # the ledger settled it: the gateway's budget snapshot shows the spend
    (budget,) = wait_rows(tmp / "t.db", "SELECT spent FROM budgets WHERE scope='customer' AND scope_id='streamer'"
                                        " AND spent > 0")
    assert budget["spent"] == pytest.approx(row["cost_usd"])


def test_sigkill_mid_load_neither_forgets_nor_double_counts(mock, tmp_path):
    """Kill the gateway hard while calls are in flight; on restart the restored totals equal the rows."""
    (tmp_path / "tapgate.yaml").write_text("budgets:\n  - {unit: usd, period: month, cap: 1000}\n")
    extra = ("--set", f"tapgate_config={tmp_path / 'tapgate.yaml'}")
    db = tmp_path / "t.db"
    process, port = start_gateway(mock, tmp_path / "conf", db, *extra)
    c = oai(port, tmp_path, "load")
    stop = threading.Event()

    def load():
        while not stop.is_set():
            try:
                c.chat.completions.create(model="gpt-4o", messages=MSG, max_tokens=37)
            except openai.APIError:
                pass  # the kill cuts calls off: that is the point

    threads = [threading.Thread(target=load) for _ in range(4)]
    for t in threads:
        t.start()
    wait_rows(db, "SELECT id FROM requests", count=40)  # committed batches on disk, calls still flowing
    process.stop(signal.SIGKILL)
    stop.set()
    for t in threads:
        t.join()

    process, port = start_gateway(mock, tmp_path / "conf", db, *extra)
    try:
        rows = query(db, "SELECT count(*) AS n, sum(cost_usd) AS usd FROM requests WHERE status IS NOT 'refused'")[0]
        restored = process.wait_for(r"restored spend from the store: .*this month \$([\d.]+) in ([\d,]+) calls?,")
        assert rows["n"] >= 1
        assert int(restored.group(2).replace(",", "")) == rows["n"]
        assert float(restored.group(1)) == pytest.approx(rows["usd"], abs=1e-6)  # printed to 6 places
        assert rows["usd"] == pytest.approx(rows["n"] * CALL_USD)
        # one line, not one per scope and period
        assert sum("restored" in line for line in process.lines) == 1, [x for x in process.lines if "restored" in x]
    finally:
        assert process.stop() == 0
