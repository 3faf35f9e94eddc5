"""Replayed flows are not new calls: mitmproxy's client replay (live again, but marked as a replay)
and a flow file read at start (never live) are neither recorded nor charged."""

from __future__ import annotations

import json
import uuid

from harness import BIN, ROOT, Process, admin, map_remote_to, query
from mitmproxy import http, io
from mitmproxy.test import tflow


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
    (tmp_path / "tapgate.yaml").write_text("budgets:\n  - {unit: requests, period: day, cap: 100}\n")
    db = tmp_path / "t.db"
    # Read the file (the loaded flow passes every hook, not live) and replay it to the provider (the
    # mock, through map_remote); without keepserving mitmdump exits once both are done.
    process = Process.start([
        str(BIN / "mitmdump"), "--listen-port", "0", "--set", f"confdir={tmp_path / 'conf'}",
        "--map-remote", map_remote_to(mock), "-s", str(ROOT / "addons" / "gateway.py"),
        "--set", f"tapgate_db={db}", "--set", "tapgate_router=", "--set", f"tapgate_config={tmp_path / 'tapgate.yaml'}",
        "--rfile", str(flows), "--set", f"client_replay={flows}"])
    assert process.proc.wait(60) == 0, "\n".join(process.lines[-30:])
    received = [r for r in admin(mock, "GET", "/_mock/requests") if marker in r["body"]]
    assert len(received) == 1  # the replay did reach the provider
    assert query(db, "SELECT id FROM requests") == []
    assert query(db, "SELECT spent FROM budgets WHERE spent > 0") == []
