"""Capture's hooks on hand-made flows: what it records, what it changes, and what it refuses."""

import json
import time

import pytest
from mitmproxy import http
from mitmproxy.test import taddons, tflow, tutils
from support import Rows, fixture_bytes, hook, passthrough_door

from addons.capture import _with_fields
from addons.settings import Settings


def make_flow(body: dict, host="api.openai.com", path="/v1/chat/completions", **headers):
    req = tutils.treq(host=host, port=443, scheme=b"https", path=path.encode(), method=b"POST",
                      headers=http.Headers(host=host, content_type="application/json", **headers),
                      content=json.dumps(body).encode())
    flow = tflow.tflow(req=req)
    flow.request.timestamp_start = time.time()
    return flow


def run(capture, flow, response: http.Response, chunks: list[bytes] | None = None):
    capture.requestheaders(flow)
    hook(capture, "request", flow)
    if flow.response is None:
        flow.response = response
        response.timestamp_start = response.timestamp_end = time.time()
    capture.responseheaders(flow)
    if chunks is not None and callable(flow.response.stream):
        sent = [flow.response.stream(c) for c in chunks] + [flow.response.stream(b"")]
        flow.response.content = b"".join(sent)
    capture.response(flow)
    return flow


def setup():
    settings, rows = Settings(), Rows()
    capture, _ = passthrough_door(settings, rows)
    return capture, rows


def test_a_whole_call_is_recorded_with_tokens_cost_and_tags():
    capture, rows = setup()
    with taddons.context(capture) as tctx:
        tctx.configure(capture)
        flow = make_flow({"model": "gpt-4o", "messages": [{"role": "user", "content": "hi"}], "user": "u-9"},
                         authorization="Bearer sk-secret-123", x_tapgate_metadata='{"team": "search"}')
        body = fixture_bytes("openai", "chat_completion_text.json")
        run(capture, flow, tutils.tresp(content=body, headers=http.Headers(content_type="application/json")))
    assert "x-tapgate-metadata" not in flow.request.headers  # never reaches the provider
    (row,) = rows.tables["requests"]
    assert (row["provider"], row["endpoint"], row["model"], row["response_model"]) == (
        "openai", "chat.completions", "gpt-4o", "gpt-4o-2024-08-06")
    assert (row["input_tokens"], row["output_tokens"], row["status"]) == (14, 37, "ok")
    assert row["cost_usd"] == pytest.approx(14 * 2.5e-6 + 37 * 10e-6)
    assert row["customer_identifier"] == "u-9" and json.loads(row["metadata"]) == {"team": "search"}
    assert row["key_id"].startswith("fp_") and "sk-secret" not in json.dumps(rows.tables)
    assert [s["name"] for s in rows.tables["spans"]] == ["passthrough openai chat.completions",
                                                         "upstream api.openai.com"]


def test_a_malformed_tag_header_gets_the_providers_error_shape_and_is_still_recorded():
    capture, rows = setup()
    with taddons.context(capture) as tctx:
        tctx.configure(capture)
        flow = make_flow({"model": "claude-sonnet-4-5", "max_tokens": 5, "messages": []},
                         host="api.anthropic.com", path="/v1/messages", x_tapgate_metadata="{oops")
        run(capture, flow, None)
    assert flow.response.status_code == 400
    body = json.loads(flow.response.content)
    assert body["type"] == "error" and body["error"]["type"] == "invalid_request_error"
    assert "X-Tapgate-Metadata" in body["error"]["message"]
    (row,) = rows.tables["requests"]
    assert (row["status_code"], row["status"]) == (400, "refused") and "X-Tapgate-Metadata" in row["error"]


def test_usage_is_asked_for_and_hidden_from_a_client_that_did_not_ask():
    capture, rows = setup()
    with taddons.context(capture) as tctx:
        tctx.configure(capture)
        flow = make_flow({"model": "gpt-4o-mini", "stream": True, "messages": []})
        capture.requestheaders(flow)
        hook(capture, "request", flow)
        sent = json.loads(flow.request.content)
        assert sent["stream_options"] == {"include_usage": True}
        assert flow.request.content.startswith(json.dumps({"model": "gpt-4o-mini"})[:-1].encode())
        stream = fixture_bytes("openai", "chat_completion_stream_tool_call_include_usage.sse")
        flow.response = tutils.tresp(content=b"", headers=http.Headers(content_type="text/event-stream"))
        flow.response.timestamp_end = None
        capture.responseheaders(flow)
        sent = [flow.response.stream(stream[i:i + 10]) for i in range(0, len(stream), 10)] + [flow.response.stream(b"")]
        assert all(isinstance(s, list) and b"" not in s for s in sent)  # an empty chunk would end the response
        out = b"".join(b"".join(s) for s in sent)
        capture.response(flow)
    assert b'"usage"' not in out and out.endswith(b"data: [DONE]\n\n")
    assert out.count(b"data: ") == stream.count(b"data: ") - 1
    (row,) = rows.tables["requests"]
    assert (row["input_tokens"], row["output_tokens"], row["status"]) == (53, 15, "ok")
    assert row["ttft_ms"] is not None and row["ttft_ms"] <= row["duration_ms"]


def test_hosts_that_are_not_providers_are_not_recorded_and_not_buffered():
    capture, rows = setup()
    with taddons.context(capture) as tctx:
        tctx.configure(capture)
        flow = make_flow({"x": 1}, host="pypi.org", path="/simple/")
        capture.requestheaders(flow)
        assert flow.request.stream is True
    assert rows.tables["requests"] == []


def test_with_fields_appends_without_touching_the_clients_bytes():
    raw = b'{"model":"m",  "stream":true}\n'
    assert _with_fields(raw, json.loads(raw), {"stream_options": {"include_usage": True}}) == (
        b'{"model":"m",  "stream":true,"stream_options":{"include_usage":true}}\n')
    raw = b'{"stream_options":{"x":1},"stream":true}'
    assert json.loads(_with_fields(raw, json.loads(raw), {"stream_options": {"x": 1, "include_usage": True}})) == {
        "stream_options": {"x": 1, "include_usage": True}, "stream": True}
