"""Hostile input and early disconnects on a gateway with budgets: a client gone before the first byte is
still charged its estimated input and, on the router, stops every attempt at once; JSON nested far too
deep, wherever it comes from, is malformed input (a 400 in the client's dialect, or a recorded error
for what the provider sent) with the budget settled and no traceback."""

from __future__ import annotations

import json
import ssl
import urllib.error
import urllib.request
import uuid

import openai
import pytest
from harness import admin, query, router_url, start_gateway, wait_rows
from support import until

MSG = [{"role": "user", "content": "hi"}]
DEEP = 100_000  # far past the C JSON scanner's recursion limit
DEEP_HEADER = 20_000  # 40 KB of brackets: deep enough for a RecursionError, small enough for mitmproxy


def config(mock: int) -> str:
    base = f"http://127.0.0.1:{mock}"
    return f"""
budgets:
  - {{name: gateway-month, unit: usd, period: month, cap: 1000}}
customer_default:
  budgets: [{{unit: usd, period: day, cap: 100}}]
router:
  master_key: null
  first_byte_timeout: 30
  timeout: 60
  retry: {{num_retries: 2, retry_after: 0.01, max_backoff: 0.05}}
  providers:
    openai: {{base_url: "{base}/v1"}}
    anthropic: {{base_url: "{base}"}}
  models:
    with-fallback:
      deployments: [{{provider: openai, model: gpt-4o-mini}}]
      fallback_models: [anthropic/claude-sonnet-4-5]
"""


@pytest.fixture(scope="module")
def gw(mock, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("hostile")
    (tmp / "tapgate.yaml").write_text(config(mock))
    process, port = start_gateway(mock, tmp / "conf", tmp / "t.db", "--set", f"tapgate_config={tmp / 'tapgate.yaml'}")
    yield process, port, tmp
    assert process.stop() == 0, "\n".join(process.lines[-30:])
    assert not [line for line in process.lines if "Traceback" in line], "\n".join(process.lines[-60:])


@pytest.fixture(autouse=True)
def clean_mock(mock):
    admin(mock, "POST", "/_mock/reset")


@pytest.fixture
def customer():
    return f"hostile-{uuid.uuid4().hex[:8]}"


def tls(tmp) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=tmp / "conf" / "mitmproxy-ca-cert.pem")


class Reply:
    def __init__(self, status: int, content: bytes) -> None:
        self.status_code, self.content = status, content

    def json(self):
        return json.loads(self.content)


def post(url: str, body: bytes, headers: dict[str, str], gw=None) -> Reply:
    """A raw POST, through the proxy when gw is given: for bodies no SDK would send or could read."""
    handlers = [urllib.request.ProxyHandler({"https": f"http://127.0.0.1:{gw[1]}"} if gw else {})]
    if gw:
        handlers.append(urllib.request.HTTPSHandler(context=tls(gw[2])))
    req = urllib.request.Request(url, data=body, method="POST", headers={"content-type": "application/json", **headers})
    try:
        with urllib.request.build_opener(*handlers).open(req, timeout=30) as resp:
            return Reply(resp.status, resp.read())
    except urllib.error.HTTPError as e:
        return Reply(e.code, e.read())


def oai(gw, customer: str, timeout: float = 30, **headers) -> openai.OpenAI:
    _, port, tmp = gw
    http = openai.DefaultHttpxClient(proxy=f"http://127.0.0.1:{port}", verify=tls(tmp))
    return openai.OpenAI(api_key="sk-x", max_retries=0, timeout=timeout, http_client=http,
                         default_headers={"X-Tapgate-Customer-Identifier": customer, **headers})


def router(gw, timeout: float = 30) -> openai.OpenAI:
    return openai.OpenAI(base_url=router_url(gw[0]), api_key="sk-anyone", max_retries=0, timeout=timeout)


def row(gw, customer: str) -> dict:
    return wait_rows(gw[2] / "t.db", "SELECT * FROM requests WHERE customer_identifier = ?", (customer,))[0]


def settled(gw, customer: str) -> dict:
    """The customer's day budget once the call has settled: nothing reserved any more."""
    return wait_rows(gw[2] / "t.db", "SELECT spent, reserved FROM budgets WHERE scope = 'customer' AND "
                                     "scope_id = ? AND reserved = 0", (customer,))[0]


def reached_mock(mock: int, path: str) -> list[dict]:
    return [r for r in admin(mock, "GET", "/_mock/requests") if path in r["path"]]


def nested(depth: int) -> bytes:
    return b"[" * depth + b"]" * depth


def no_traceback(gw) -> None:
    assert not [line for line in gw[0].lines if "Traceback" in line], "\n".join(gw[0].lines[-60:])


# -- early disconnects -----------------------------------------------------------------------------


def test_a_passthrough_client_gone_before_the_first_byte_is_charged_its_input(gw, customer):
    with pytest.raises(openai.APITimeoutError):
        oai(gw, customer, timeout=1, **{"x-mock-delay-ms": "5000"}).chat.completions.create(
            model="gpt-4o", messages=MSG)
    r = row(gw, customer)
    assert r["status"] == "client_disconnected" and r["status_code"] is None
    assert r["usage_estimated"] == 1 and r["input_tokens"] > 0 and r["output_tokens"] == 0
    assert r["cost_usd"] > 0 and "estimated" in r["error"]
    assert settled(gw, customer)["spent"] == pytest.approx(r["cost_usd"])


def test_a_router_client_gone_before_the_first_byte_stops_every_attempt(gw, mock, customer):
    admin(mock, "POST", "/_mock/program", {"path_contains": "/chat/completions", "times": 5, "fault": "silent"})
    with pytest.raises(openai.APITimeoutError):
        router(gw, timeout=1).chat.completions.create(model="with-fallback", messages=MSG,
                                                      extra_body={"customer_identifier": customer})
    r = row(gw, customer)
    assert r["status"] == "client_disconnected" and "left before" in r["error"]
    assert r["usage_estimated"] == 1 and r["input_tokens"] > 0 and r["cost_usd"] > 0
    assert settled(gw, customer)["spent"] == pytest.approx(r["cost_usd"])
    # The attempt in flight was closed at once (the first-byte timeout is 30 s), and nothing followed it:
    # neither a retry nor the fallback.
    assert until(lambda: not any(q["connection_open"] for q in reached_mock(mock, "/chat/completions")))
    assert len(reached_mock(mock, "/chat/completions")) == 1 and reached_mock(mock, "/v1/messages") == []


def test_a_router_client_gone_mid_stream_stops_the_stream_at_once(gw, mock, customer):
    admin(mock, "POST", "/_mock/program", {"path_contains": "/chat/completions", "chunk_delay_ms": 60_000})
    with router(gw).chat.completions.with_streaming_response.create(
            model="with-fallback", messages=MSG, stream=True, extra_body={"customer_identifier": customer}) as s:
        assert next(s.iter_lines())  # the first chunk; the next is a minute away
    r = row(gw, customer)  # within wait_rows' 15 s: before, it came only at the next chunk's write
    assert r["status"] == "client_disconnected" and r["cost_usd"] > 0 and r["usage_estimated"] == 1
    assert settled(gw, customer)["spent"] == pytest.approx(r["cost_usd"])
    assert until(lambda: not any(q["connection_open"] for q in reached_mock(mock, "/chat/completions")))


# -- deep JSON from the client ---------------------------------------------------------------------


@pytest.mark.parametrize("header,value", [
    ("X-Tapgate-Metadata", nested(DEEP_HEADER).decode()),
    ("X-Tapgate-Params", '{"a":' * DEEP_HEADER + "1" + "}" * DEEP_HEADER),
])
def test_a_deep_tag_header_is_refused_before_upstream(gw, mock, customer, header, value):
    with pytest.raises(openai.BadRequestError) as e:
        oai(gw, customer, **{header: value}).chat.completions.create(model="gpt-4o", messages=MSG)
    assert e.value.code == "invalid_tapgate_header" and e.value.body["param"] == header
    assert "nested deeper" in e.value.message
    r = row(gw, customer)
    assert r["status"] == "refused" and r["status_code"] == 400
    assert reached_mock(mock, "/chat/completions") == []
    no_traceback(gw)


PASSTHROUGH = {
    "openai": ("https://api.openai.com/v1/chat/completions", {"authorization": "Bearer sk-x"},
               b'{"model":"gpt-4o","messages":[{"role":"user","content":"hi"}],"metadata":%b}'),
    "anthropic": ("https://api.anthropic.com/v1/messages", {"x-api-key": "sk-ant-x"},
                  b'{"model":"claude-sonnet-4-6","max_tokens":10,"messages":[{"role":"user","content":%b}]}'),
    "gemini": ("https://generativelanguage.googleapis.com/v1beta/models/gemini-2.5-flash:generateContent",
               {"x-goog-api-key": "AIza-x"}, b'{"contents":[{"parts":[{"text":"hi"}]}],"x":%b}'),
}


@pytest.mark.parametrize("dialect", list(PASSTHROUGH))
def test_a_deep_passthrough_body_is_a_400_in_the_providers_shape(gw, mock, customer, dialect):
    url, headers, template = PASSTHROUGH[dialect]
    resp = post(url, template % nested(DEEP), {**headers, "x-tapgate-customer-identifier": customer}, gw)
    assert resp.status_code == 400
    body = resp.json()
    if dialect == "openai":
        assert body["error"]["type"] == "invalid_request_error" and body["error"]["code"] == "invalid_json"
    elif dialect == "anthropic":
        assert body["type"] == "error" and body["error"]["type"] == "invalid_request_error"
    else:
        assert body["error"]["code"] == 400 and body["error"]["status"] == "INVALID_ARGUMENT"
    message = body["error"]["message"]
    assert "nested deeper" in message
    r = row(gw, customer)
    assert r["status"] == "refused" and r["status_code"] == 400 and "nested deeper" in r["error"]
    assert admin(mock, "GET", "/_mock/requests") == []  # nothing went upstream, so nothing to reserve
    assert query(gw[2] / "t.db", "SELECT * FROM budgets WHERE scope_id = ? AND reserved > 0", (customer,)) == []
    no_traceback(gw)


@pytest.mark.parametrize("path,shape", [("/chat/completions", "openai"), ("/messages", "anthropic")])
def test_a_deep_router_body_is_a_400_in_the_endpoints_shape(gw, customer, path, shape):
    body = b'{"model":"with-fallback","max_tokens":5,"customer_identifier":"%b","messages":' % customer.encode()
    body += b'[{"role":"user","content":"hi"}],"metadata":' + nested(DEEP) + b"}"
    resp = post(router_url(gw[0]) + path, body, {})
    assert resp.status_code == 400
    error = resp.json()["error"]
    assert error["type"] == "invalid_request_error" and "nested deeper" in error["message"]
    if shape == "anthropic":
        assert resp.json()["type"] == "error"
    # The body could not be read, so not even its customer is known: the row is found by its error.
    rows = wait_rows(gw[2] / "t.db", "SELECT * FROM requests WHERE mode = 'router' AND path LIKE ? AND "
                                     "error LIKE '%nested deeper%'", (f"%{path}",))
    assert rows[-1]["status"] == "refused" and rows[-1]["status_code"] == 400
    no_traceback(gw)


def test_a_deep_router_tag_header_is_a_400(gw, customer):
    deep = nested(2_000).decode()  # aiohttp refuses header lines over 8 KB before the router sees them
    with pytest.raises(openai.BadRequestError) as e:
        router(gw).with_options(default_headers={"X-Tapgate-Metadata": deep}).chat.completions.create(
            model="with-fallback", messages=MSG, extra_body={"customer_identifier": customer})
    assert e.value.body["param"] == "X-Tapgate-Metadata" and "nested deeper" in e.value.message
    assert row(gw, customer)["status"] == "refused"
    no_traceback(gw)


# -- deep JSON from the provider -------------------------------------------------------------------


def test_a_deep_whole_answer_in_passthrough_is_a_recorded_error_and_settled(gw, mock, customer):
    url, headers, _ = PASSTHROUGH["openai"]
    resp = post(url, json.dumps({"model": "gpt-4o", "messages": MSG}).encode(),
                {**headers, "x-mock-nest": str(DEEP), "x-tapgate-customer-identifier": customer}, gw)
    assert resp.status_code == 200 and resp.content.startswith(b"[[[")  # passed on as the provider sent it
    r = row(gw, customer)
    assert r["status"] == "error" and "nested deeper" in r["error"]
    assert r["usage_estimated"] == 1 and r["cost_usd"] > 0
    assert settled(gw, customer)["spent"] == pytest.approx(r["cost_usd"])
    no_traceback(gw)


def test_a_deep_stream_event_in_passthrough_is_a_recorded_error_and_settled(gw, mock, customer):
    url, headers, _ = PASSTHROUGH["openai"]
    resp = post(url, json.dumps({"model": "gpt-4o", "messages": MSG, "stream": True}).encode(),
                {**headers, "x-mock-nest": str(DEEP), "x-tapgate-customer-identifier": customer}, gw)
    assert resp.status_code == 200 and b"data: [[[" in resp.content and b"[DONE]" in resp.content
    r = row(gw, customer)
    assert r["status"] == "error" and "nested deeper" in r["error"]
    assert r["input_tokens"] > 0 and r["cost_usd"] > 0  # the stream's own usage still counts
    assert settled(gw, customer)["spent"] == pytest.approx(r["cost_usd"])
    no_traceback(gw)


def test_a_deep_whole_answer_on_the_router_is_a_recorded_failure_and_settled(gw, mock, customer):
    admin(mock, "POST", "/_mock/program", {"path_contains": "/", "times": 10, "nest": DEEP})
    with pytest.raises(openai.APIStatusError) as e:
        router(gw).chat.completions.create(model="with-fallback", messages=MSG, extra_body={
            "customer_identifier": customer, "retry_params": {"num_retries": 0}})
    assert e.value.status_code == 502 and "nested deeper" in e.value.message
    r = row(gw, customer)
    assert r["status"] == "error" and "nested deeper" in r["error"] and r["attempts"] == 2  # and the fallback
    assert settled(gw, customer)["reserved"] == 0
    no_traceback(gw)


def test_a_deep_stream_event_on_the_router_is_a_recorded_error_and_settled(gw, mock, customer):
    admin(mock, "POST", "/_mock/program", {"path_contains": "/chat/completions", "nest": DEEP,
                                           "chunk_delay_ms": 100})
    with pytest.raises(openai.APIError) as e:
        for _ in router(gw).chat.completions.create(model="with-fallback", messages=MSG, stream=True, extra_body={
                "customer_identifier": customer, "retry_params": {"num_retries": 0}}):
            pass
    assert "nested deeper" in str(e.value)
    r = row(gw, customer)
    assert r["status"] == "upstream_error" and "nested deeper" in r["error"]
    assert settled(gw, customer)["reserved"] == 0
    no_traceback(gw)
