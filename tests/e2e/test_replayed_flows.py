"""Replayed flows are not new calls: mitmproxy's client replay (live again, but marked as a replay),
a flow file read at start (never live) and calls answered by server replay are neither recorded nor
charged."""

from __future__ import annotations

import json
import ssl
import time
import uuid

import openai
from harness import BIN, ROOT, Process, admin, map_remote_to, query, start_gateway, wait_rows
from mitmproxy import http, io
from mitmproxy.test import tflow

from core.call import iso


def saved_call(path, marker: str) -> None:
    """A flow file holding one finished OpenAI chat call, as `mitmdump -w` would save it."""
    body = json.dumps({"model": "gpt-4o", "messages": [{"role": "user", "content": marker}]}).encode()
    flow = tflow.tflow(resp=True)
    flow.request = http.Request.make("POST", "https://api.openai.com/v1/chat/completions", body,
                                     {"content-type": "application/json", "authorization": "Bearer sk-replay",
                                      "x-tapgate-customer-identifier": marker})
    flow.response = http.Response.make(200, json.dumps({
        "id": "chatcmpl-1", "object": "chat.completion", "created": 1, "model": "gpt-4o",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": "hi"}, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 14, "completion_tokens": 37, "total_tokens": 51}}).encode(),
        {"content-type": "application/json"})
    with open(path, "wb") as f:
        io.FlowWriter(f).add(flow)


def test_replayed_and_loaded_flows_are_not_recorded_or_charged(mock, tmp_path):
    marker = f"replay-{uuid.uuid4().hex[:8]}"
    flows = tmp_path / "calls.flows"
    saved_call(flows, marker)
    db = tmp_path / "t.db"
    # Read the file (the loaded flow passes every hook, not live) and replay it to the provider (the
    # mock, through map_remote); without keepserving mitmdump exits once both are done.
    process = Process.start([
        str(BIN / "mitmdump"), "--listen-port", "0", "--set", f"confdir={tmp_path / 'conf'}",
        "--map-remote", map_remote_to(mock), "-s", str(ROOT / "addons" / "gateway.py"),
        "--set", f"tapgate_db={db}", "--set", "tapgate_router=",
        "--rfile", str(flows), "--set", f"client_replay={flows}"])
    assert process.proc.wait(60) == 0, "\n".join(process.lines[-30:])
    received = [r for r in admin(mock, "GET", "/_mock/requests") if marker in r["body"]]
    assert len(received) == 1  # the replay did reach the provider
    assert query(db, "SELECT id FROM requests") == []  # no Call: nothing recorded, reserved or settled


def test_calls_answered_by_server_replay_are_not_recorded_or_charged(mock, tmp_path):
    """A live call that mitmproxy's server replay answers from a file reached no provider: none is
    recorded, and the budget it counted toward shows nothing spent or still reserved."""
    marker = f"served-{uuid.uuid4().hex[:8]}"
    flows = tmp_path / "calls.flows"
    saved_call(flows, marker)
    (tmp_path / "tapgate.yaml").write_text(
        f"customers:\n  {marker}:\n    budgets: [{{unit: requests, period: day, cap: 1}}]\n")
    db = tmp_path / "t.db"
    process, port = start_gateway(
        mock, tmp_path / "conf", db, "--set", f"tapgate_config={tmp_path / 'tapgate.yaml'}",
        "--set", f"server_replay={flows}", "--set", "server_replay_reuse=true",
        "--set", "server_replay_ignore_content=true", "--set", "server_replay_extra=kill", "--set", "keepserving=true")
    try:
        client = openai.OpenAI(api_key="sk-x", max_retries=0, http_client=openai.DefaultHttpxClient(
            proxy=f"http://127.0.0.1:{port}",
            verify=ssl.create_default_context(cafile=tmp_path / "conf" / "mitmproxy-ca-cert.pem")),
            default_headers={"X-Tapgate-Customer-Identifier": marker})
        answers = [client.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": marker}])
                   for _ in range(3)]
        after = iso(time.time())
        (budget,) = wait_rows(db, "SELECT spent, reserved FROM budgets WHERE scope_id = ? AND updated_at > ?",
                              (marker, after))  # the next snapshot of the ledger, taken after the calls
    finally:
        assert process.stop() == 0, "\n".join(process.lines[-30:])
    assert [a.id for a in answers] == ["chatcmpl-1"] * 3  # the saved answer, not the mock's
    assert not [r for r in admin(mock, "GET", "/_mock/requests") if marker in r["body"]]
    assert query(db, "SELECT id FROM requests") == []
    assert (budget["spent"], budget["reserved"]) == (0, 0)
