"""A dataset made from the logs, replayed by `tapgate replay serve` to the official SDKs: whole bodies
byte for byte, streams event for event."""

from __future__ import annotations

import os
from pathlib import Path

import anthropic
import openai
import pytest
from harness import BIN, Process, start_gateway, wait_rows

from cli.main import main

MSG = [{"role": "user", "content": "hi"}]


@pytest.fixture(scope="module")
def recording(mock, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("replay")
    (tmp / "tapgate.yaml").write_text("evals:\n  record_streams: true\n")
    process, port = start_gateway(mock, tmp / "conf", tmp / "t.db", "--set", f"tapgate_config={tmp / 'tapgate.yaml'}")
    yield port, tmp
    assert process.stop() == 0, "\n".join(process.lines[-30:])


def calls(oai: openai.OpenAI, claude: anthropic.Anthropic) -> dict:
    """The same four calls, whatever the clients point at: what each SDK made of the answers."""
    whole = oai.chat.completions.with_raw_response.create(model="gpt-4o-mini", messages=MSG)
    stream = [c.model_dump() for c in oai.chat.completions.create(
        model="gpt-4o-mini", messages=MSG, stream=True, stream_options={"include_usage": True})]
    # no include_usage: the gateway asks for usage and hides it from the client; the replay hides it too
    plain = [c.model_dump() for c in oai.chat.completions.create(model="gpt-4o-mini", messages=MSG, stream=True)]
    message = claude.messages.with_raw_response.create(model="claude-sonnet-4-5", max_tokens=50, messages=MSG)
    with claude.messages.stream(model="claude-sonnet-4-5", max_tokens=50, messages=MSG) as s:
        events = [e.model_dump() for e in s]
    return {"openai": whole.http_response.content, "openai_stream": stream, "openai_plain_stream": plain,
            "anthropic": message.http_response.content, "anthropic_stream": events}


def test_a_dataset_from_the_logs_replays_byte_and_event_identically(recording, customer, monkeypatch):
    port, tmp = recording
    monkeypatch.setenv("HTTPS_PROXY", f"http://127.0.0.1:{port}")
    monkeypatch.setenv("SSL_CERT_FILE", str(tmp / "conf" / "mitmproxy-ca-cert.pem"))
    tag = {"X-Tapgate-Customer-Identifier": customer}
    live = calls(openai.OpenAI(api_key="sk-test", max_retries=0, default_headers=tag),
                 anthropic.Anthropic(api_key="sk-ant-test", max_retries=0, default_headers=tag))
    db = tmp / "t.db"
    wait_rows(db, "SELECT r.id FROM requests r JOIN stream_events e ON e.call_id = r.id"
                  " WHERE customer_identifier = ?", (customer,), 3)
    wait_rows(db, "SELECT id FROM requests WHERE customer_identifier = ?", (customer,), 5)
    assert main(["dataset", "create", customer, "--from-logs", "--customer", customer, "--db", str(db)]) == 0
    server = Process.start([str(BIN / "tapgate"), "replay", "serve", customer, "--db", str(db), "--port", "0"],
                           env={**os.environ, "PYTHONUNBUFFERED": "1"}, cwd=Path(tmp))
    try:
        base = server.wait_for(r"listening at (http://\S+)").group(1)
        monkeypatch.delenv("HTTPS_PROXY")  # offline: nothing but the replay server answers
        replayed = calls(openai.OpenAI(api_key="sk-test", base_url=f"{base}/v1", max_retries=0),
                         anthropic.Anthropic(api_key="sk-ant-test", base_url=base, max_retries=0))
        assert replayed["openai"] == live["openai"] and replayed["anthropic"] == live["anthropic"]  # byte for byte
        assert replayed["openai_stream"] == live["openai_stream"] and len(live["openai_stream"]) > 2
        assert replayed["anthropic_stream"] == live["anthropic_stream"] and len(live["anthropic_stream"]) > 3
        assert replayed["openai_plain_stream"] == live["openai_plain_stream"]
        assert all(c["usage"] is None for c in live["openai_plain_stream"])
        with pytest.raises(openai.NotFoundError, match="no recorded call"):
            openai.OpenAI(api_key="sk", base_url=f"{base}/v1", max_retries=0).chat.completions.create(
                model="gpt-4o-mini", messages=[{"role": "user", "content": "something never asked"}])
    finally:
        server.stop()
