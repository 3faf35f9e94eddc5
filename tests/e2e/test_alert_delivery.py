"""Budget alerts through a real gateway: calls cross soft thresholds of a gateway budget and a
customer budget, each threshold reaches Slack, the webhook and email exactly once, a failed post is
retried, and a restart on the same store sends nothing twice while a new threshold still alerts."""

import io
import json
import ssl
from contextlib import redirect_stdout

import openai
import pytest
from harness import query, start_gateway
from receivers import HttpReceiver, SmtpReceiver

from cli.main import main

MSG = [{"role": "user", "content": "hi"}]
CALL_USD = 14 * 2.5e-6 + 37 * 10e-6  # $0.000405: what the mock's gpt-4o reply costs

# Lifetime budgets, so that a run across midnight or a month's end crosses the same thresholds.
CONFIG = """
budgets:
  - name: gateway
    unit: usd
    period: lifetime
    soft: [0.0008, 0.0016, 0.0022]   # crossed by calls 2, 4 and 6
customers:
  acme:
    budgets:
      - {{name: acme, unit: usd, period: lifetime, soft: [0.001]}}   # crossed by call 3
alerts:
  slack_webhook: {slack}
  webhook: {hook}
  email: {{smtp_host: 127.0.0.1, smtp_port: {smtp_port}, sender: tapgate@example.com, to: [ops@example.com]}}
"""


@pytest.fixture
def receivers():
    with HttpReceiver() as http, SmtpReceiver() as smtp:
        yield http, smtp


def calls(port, tmp, n):
    http_client = openai.DefaultHttpxClient(
        proxy=f"http://127.0.0.1:{port}", verify=ssl.create_default_context(cafile=tmp / "conf" / "mitmproxy-ca-cert.pem"))
    client = openai.OpenAI(api_key="sk-x", max_retries=0, http_client=http_client,
                           default_headers={"X-Tapgate-Customer-Identifier": "acme"})
    for _ in range(n):
        client.chat.completions.create(model="gpt-4o", messages=MSG, max_tokens=37)


def take(http, smtp, n):
    """The next n alerts on each channel: Slack texts, webhook bodies (with retried posts), emails."""
    slack, hooks, mails, failed = [], [], [], []
    while len(slack) < n or len(hooks) < n:
        post = http.next(timeout=20)
        if post.status != 200:
            failed.append(post.body["id"])
        else:
            (slack if post.path == "/slack" else hooks).append(post.body)
    mails = [smtp.next(timeout=20) for _ in range(n)]
    return [s["text"] for s in slack], hooks, mails, failed


def test_each_threshold_alerts_once_on_every_channel_across_a_restart(mock, tmp_path, receivers):
    http, smtp = receivers
    http.fail["/hook"] = [500]  # the first webhook post fails and is retried
    (tmp_path / "tapgate.yaml").write_text(CONFIG.format(slack=http.url("/slack"), hook=http.url("/hook"),
                                                         smtp_port=smtp.port))
    extra = ("--set", f"tapgate_config={tmp_path / 'tapgate.yaml'}")
    db = tmp_path / "t.db"

    process, port = start_gateway(mock, tmp_path / "conf", db, *extra)
    try:
        calls(port, tmp_path, 4)
        slack, hooks, mails, failed = take(http, smtp, 3)
    finally:
        assert process.stop() == 0, "\n".join(process.lines[-30:])
    assert http.drain() == [] and smtp.messages.empty()  # the sender stopped: nothing more can come

    first = {(h["scope"], h["scope_id"], h["threshold"]) for h in hooks}
    assert first == {("global", "", 0.0008), ("customer", "acme", 0.001), ("global", "", 0.0016)}
    assert len(hooks) == len(first) == 3 and len(set(slack)) == 3
    assert len(failed) == 1 and failed[0] in {h["id"] for h in hooks}  # retried, and taken once
    assert {h["message"] for h in hooks} == set(slack) == {m.get_content().splitlines()[0] for m in mails}
    assert "tapgate: customer acme reached $0.001215 on its acme budget (soft threshold $0.001); a lifetime budget" in slack
    assert sorted(m["Subject"] for m in mails) == [
        "tapgate budget alert: customer acme reached $0.001 (acme)",
        "tapgate budget alert: the gateway reached $0.0008 (gateway)",
        "tapgate budget alert: the gateway reached $0.0016 (gateway)",
    ]

    # Same store: spend is restored, so calls 5 and 6 cross only the gateway's $0.0022.
    process, port = start_gateway(mock, tmp_path / "conf", db, *extra)
    try:
        calls(port, tmp_path, 2)
        slack, hooks, mails, failed = take(http, smtp, 1)
    finally:
        assert process.stop() == 0, "\n".join(process.lines[-30:])
    assert http.drain() == [] and smtp.messages.empty() and failed == []
    assert [(h["scope"], h["threshold"], h["spent"]) for h in hooks] == [("global", 0.0022, pytest.approx(6 * CALL_USD))]
    assert slack == [hooks[0]["message"]] and mails[0]["Subject"] == "tapgate budget alert: the gateway reached $0.0022 (gateway)"

    rows = query(db, "SELECT id, sent_at, channels, attempts FROM alerts ORDER BY created_at")
    assert len(rows) == 4 and all(r["sent_at"] and r["channels"] == "[]" for r in rows)
    assert sum(r["attempts"] for r in rows) == 1



REFUSING = """
budgets: [{{name: gateway, unit: usd, period: day, cap: {gateway}}}]
customers:
  acme:
    budgets: [{{name: acme, unit: usd, period: day, cap: {acme}}}]
alerts:
  webhook: {hook}
"""


def new_key(db, budget: str) -> dict:
    with redirect_stdout(io.StringIO()) as printed:
        assert main(["keys", "create", "--db", str(db), "--name", "k", "--json", "--budget", budget]) == 0
    return json.loads(printed.getvalue())


@pytest.mark.parametrize("scope", ["global", "key", "customer"])
def test_a_budget_that_starts_refusing_calls_alerts_once(mock, tmp_path, scope):
    """Reservations keep settled spend under a cap, so reaching the cap never alerts; refusing does,
    once per budget and period, however many calls are refused."""
    tight, loose = "0.002", "1000"
    db = tmp_path / "t.db"
    with HttpReceiver() as http:
        (tmp_path / "tapgate.yaml").write_text(REFUSING.format(
            gateway=tight if scope == "global" else loose, acme=tight if scope == "customer" else loose,
            hook=http.url("/hook")))
        process, port = start_gateway(mock, tmp_path / "conf", db,
                                      "--set", f"tapgate_config={tmp_path / 'tapgate.yaml'}")
        try:
            headers, key = {}, None
            if scope == "key":
                key = new_key(db, f"{tight}usd/day")
                process.wait_for(r"tapgate: 1 gateway key")
                headers["X-Tapgate-Key"] = key["secret"]
            client = openai.OpenAI(api_key="sk-x", max_retries=0, http_client=openai.DefaultHttpxClient(
                proxy=f"http://127.0.0.1:{port}",
                verify=ssl.create_default_context(cafile=tmp_path / "conf" / "mitmproxy-ca-cert.pem")),
                default_headers={"X-Tapgate-Customer-Identifier": "acme", **headers})
            for _ in range(3):
                with pytest.raises(openai.RateLimitError):
                    client.chat.completions.create(model="gpt-4o", messages=MSG)
            alert = http.next(timeout=20).body
        finally:
            assert process.stop() == 0, "\n".join(process.lines[-30:])
        assert http.drain() == []  # the sender stopped: nothing more can come
    who = {"global": "the gateway", "key": f"key {key and key['id']}", "customer": "customer acme"}[scope]
    assert alert["scope"] == scope and alert["threshold"] == 0.002
    assert alert["message"].startswith(f"tapgate: {who} is refusing calls: $0 of its $0.002 ")
    assert "a call needing up to $0.04" in alert["message"]
    rows = query(db, "SELECT id, sent_at FROM alerts")
    assert len(rows) == 1 and rows[0]["sent_at"]
