"""Calls over a WebSocket (the Responses API's socket, as Codex CLI uses it on a ChatGPT login),
through a real mitmdump to the mock: each response.create turn is one call through the same pipeline
as an HTTP call, recorded from its events; a turn the pipeline refuses never reaches the provider
and the client gets an error event in its place."""

from __future__ import annotations

import asyncio
import base64
import io
import json
import os
import ssl
import time
from contextlib import redirect_stdout

import aiohttp
import pytest
from harness import admin, configured_gateway, wait_rows

from cli.main import main as tapgate

# A Stripe-shaped live key with a random body: gitleaks' stripe-access-token rule blocks it.
LEAKED = "sk_live_" + "Zq8xW2vB7nM4kL9pR3tY6uJ1"
URL = "wss://chatgpt.com/backend-api/codex/responses"
CONFIG = "require_key: true\npolicies:\n  - {name: no-secrets, detectors: [secrets], action: block, status: 403}\n"


@pytest.fixture(scope="module")
def guarded(mock, tmp_path_factory):
    """A gateway that requires a gateway key and blocks secrets, with one key made: (process, port,
    its folder, the key's id and secret)."""
    tmp = tmp_path_factory.mktemp("sockets")
    process, port = configured_gateway(mock, tmp, CONFIG)
    with redirect_stdout(io.StringIO()) as printed:
        assert tapgate(["keys", "create", "--db", str(tmp / "t.db"), "--name", "codex", "--json"]) == 0
    key = json.loads(printed.getvalue())
    process.wait_for(r"tapgate: 1 gateway key")
    yield process, port, tmp, key["id"], key["secret"]
    assert process.stop() == 0, "\n".join(process.lines[-30:])


def login_token() -> str:
    def part(raw: bytes) -> str:
        return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()
    return ".".join((part(b'{"alg":"RS256"}'), part(json.dumps({"exp": int(time.time()) + 3600}).encode()),
                     part(os.urandom(32))))


async def turns(port: int, ca: str, headers: dict[str, str], inputs: list[str]) -> list[list[dict]]:
    """Each input sent as one response.create turn on one socket; the events each turn got back."""
    answered: list[list[dict]] = []
    context = ssl.create_default_context(cafile=ca)
    async with aiohttp.ClientSession() as session, session.ws_connect(
            URL, proxy=f"http://127.0.0.1:{port}", ssl=context, headers=headers) as ws:
        for text in inputs:
            await ws.send_str(json.dumps({"type": "response.create", "model": "gpt-5.1-codex", "input": text}))
            events: list[dict] = []
            while not events or events[-1]["type"] not in ("response.completed", "error"):
                events.append(json.loads((await ws.receive(timeout=10)).data))
            answered.append(events)
    return answered


def test_each_turn_is_a_call_and_a_refused_one_never_leaves(guarded, mock, monkeypatch):
    process, port, tmp, key_id, secret = guarded
    monkeypatch.delenv("HTTPS_PROXY")  # the socket goes to this test's gateway, named explicitly
    customer = f"cust-{os.urandom(5).hex()}"
    access, account = login_token(), f"acct-{os.urandom(8).hex()}"
    headers = {"authorization": f"Bearer {access}", "chatgpt-account-id": account,
               "user-agent": "codex_exec/0.171.0 (Debian 12.0.0; x86_64) dumb",
               "x-tapgate-customer-identifier": customer, "x-tapgate-key": secret}
    refused, answered = asyncio.run(turns(port, str(tmp / "conf" / "mitmproxy-ca-cert.pem"), headers,
                                          [f"deploy with {LEAKED}", "say hi"]))
    assert refused[-1]["type"] == "error" and refused[-1]["status"] == 403, refused
    assert answered[-1]["type"] == "response.completed" and len(answered) > 2
    sent = [r for r in admin(mock, "GET", "/_mock/requests") if r["headers"].get("chatgpt-account-id") == account]
    assert [r["method"] for r in sent] == ["GET", "MESSAGE"]  # the upgrade, then only the turn let through
    assert json.loads(sent[1]["body"])["input"] == "say hi"
    rows = wait_rows(tmp / "t.db", "SELECT * FROM requests WHERE customer_identifier = ? ORDER BY started_at",
                     (customer,), count=2)
    assert [r["status"] for r in rows] == ["refused", "ok"]
    assert LEAKED not in (rows[0]["error"] or "")
    assert {r["key_id"] for r in rows} == {key_id}  # the upgrade's gateway key names every turn
    ok = rows[1]
    assert ok["provider"] == "chatgpt" and ok["client"] == "Codex CLI" and ok["stream"] == 1
    assert ok["input_tokens"] > 0 and ok["output_tokens"] > 0 and ok["ttft_ms"] is not None
    assert ok["cost_usd"] is None and ok["shadow_cost_usd"] > 0
    for path in tmp.glob("t.db*"):
        if path.is_file():
            assert access.rsplit(".", 1)[1].encode() not in path.read_bytes(), path


def test_a_turn_without_a_gateway_key_is_refused_in_place(guarded, mock, monkeypatch):
    process, port, tmp, key_id, secret = guarded
    monkeypatch.delenv("HTTPS_PROXY")
    account = f"acct-{os.urandom(8).hex()}"
    headers = {"authorization": f"Bearer {login_token()}", "chatgpt-account-id": account}
    (refused,) = asyncio.run(turns(port, str(tmp / "conf" / "mitmproxy-ca-cert.pem"), headers, ["say hi"]))
    assert refused[-1]["type"] == "error" and refused[-1]["status"] == 401, refused
    sent = [r for r in admin(mock, "GET", "/_mock/requests") if r["headers"].get("chatgpt-account-id") == account]
    assert [r["method"] for r in sent] == ["GET"]  # the socket opened; its turn never went
