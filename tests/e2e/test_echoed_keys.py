"""A provider whose error message echoes the credential it was sent (as OpenAI's "Incorrect API key
provided: sk-…" does): the key reaches neither the router's client, nor the store, nor the terminal."""

from __future__ import annotations

import os

import anthropic
import openai
import pytest
from harness import admin, router_url, start_gateway, store_files, wait_rows

PROVIDER_KEY = "sk-provider-ECHOED-secret-0001"  # the gateway's own key for its OpenAI deployment
CLIENT_KEYS = ("sk-proj-ECHOED-client-0002", "sk-ant-ECHOED-client-0003")
MSG = [{"role": "user", "content": "hi"}]


@pytest.fixture(scope="module")
def echoing(mock, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("echo")
    (tmp / "tapgate.yaml").write_text(f"""
router:
  providers:
    openai: {{base_url: "http://127.0.0.1:{mock}/v1", api_key_env: TG_ECHO_OPENAI_KEY}}
  models:
    echo: {{deployments: [{{provider: openai, model: gpt-4o-mini}}]}}
""")
    os.environ["TG_ECHO_OPENAI_KEY"] = PROVIDER_KEY
    try:
        process, port = start_gateway(mock, tmp / "conf", tmp / "t.db", "--set",
                                      f"tapgate_config={tmp / 'tapgate.yaml'}")
    finally:
        del os.environ["TG_ECHO_OPENAI_KEY"]
    yield process, port, tmp / "t.db"
    assert process.stop() == 0, "\n".join(process.lines[-30:])


def assert_nowhere(db, process, *secrets: str) -> None:
    for path in store_files(db):  # the db, its WAL and shared memory, its journal
        data = path.read_bytes()
        assert not any(s.encode() in data for s in secrets), f"a key is in {path.name}"
    assert not any(s in line for s in secrets for line in process.lines), "a key is in the terminal"


def test_the_router_never_shows_its_provider_key(echoing, mock, customer):
    process, _, db = echoing
    admin(mock, "POST", "/_mock/program", {"path_contains": "/v1/chat/completions", "echo_key": True})
    client = openai.OpenAI(base_url=router_url(process), api_key="unused", max_retries=0,
                           default_headers={"X-Tapgate-Customer-Identifier": customer})
    with pytest.raises(openai.AuthenticationError) as e:
        client.chat.completions.create(model="echo", messages=MSG)
    assert "Incorrect API key provided: [REDACTED]" in e.value.message
    assert PROVIDER_KEY not in str(e.value.body) and PROVIDER_KEY not in e.value.response.text
    [row] = wait_rows(db, "SELECT * FROM requests WHERE customer_identifier = ?", (customer,))
    assert row["status_code"] == 401 and "[REDACTED]" in row["error"]
    requests = admin(mock, "GET", "/_mock/requests")
    assert requests[-1]["headers"]["authorization"] == f"Bearer {PROVIDER_KEY}"  # it was really sent
    assert_nowhere(db, process, PROVIDER_KEY)


def test_passthrough_stores_no_echoed_client_key(echoing, mock, customer, monkeypatch):
    process, port, db = echoing
    monkeypatch.setenv("HTTPS_PROXY", f"http://127.0.0.1:{port}")
    monkeypatch.setenv("SSL_CERT_FILE", str(db.parent / "conf" / "mitmproxy-ca-cert.pem"))
    echo = {"X-Tapgate-Customer-Identifier": customer, "x-mock-echo-key": "1"}
    with pytest.raises(openai.AuthenticationError) as e:
        openai.OpenAI(api_key=CLIENT_KEYS[0], max_retries=0, default_headers=echo).chat.completions.create(
            model="gpt-4o", messages=MSG)
    assert CLIENT_KEYS[0] in e.value.message  # passthrough: the client's own key, its provider's own bytes
    with pytest.raises(anthropic.AuthenticationError):
        anthropic.Anthropic(api_key=CLIENT_KEYS[1], max_retries=0, default_headers=echo).messages.create(
            model="claude-sonnet-4-6", max_tokens=10, messages=MSG)
    rows = wait_rows(db, "SELECT * FROM requests WHERE customer_identifier = ?", (customer,), count=2)
    assert all("Incorrect API key provided: [REDACTED]" in r["response_body"] for r in rows)
    assert all("[REDACTED]" in r["error"] for r in rows)
    assert_nowhere(db, process, *CLIENT_KEYS)
