"""The official openai SDK through HTTPS_PROXY against the loopback mock: what is recorded, what the
client sees, and how the gateway behaves when the provider or the client misbehaves."""

import base64
import json

import openai
import pytest

KEY = "sk-test-e2e-SECRET-openai-0123456789"
MSG = [{"role": "user", "content": "What is the capital of the UK?"}]


def client(customer, **headers):
    return openai.OpenAI(api_key=KEY, max_retries=0, default_headers={"X-Tapgate-Customer-Identifier": customer,
                                                                      **headers})


def test_chat_completion_is_recorded(gateway, customer):
    reply = client(customer, **{"X-Tapgate-Metadata": '{"team": "search"}'}).chat.completions.create(
        model="gpt-4o", messages=MSG)
    assert reply.usage.prompt_tokens == 14
    (row,) = gateway.rows(customer)
    assert (row["mode"], row["provider"], row["endpoint"], row["model"], row["response_model"]) == (
        "passthrough", "openai", "chat.completions", "gpt-4o", "gpt-4o-2024-08-06")
    assert (row["status_code"], row["status"], row["input_tokens"], row["output_tokens"]) == (200, "ok", 14, 37)
    assert row["cost_usd"] == pytest.approx(14 * 2.5e-6 + 37 * 10e-6)
    assert row["host"] == "api.openai.com"  # recorded as the provider, though map_remote sent it to the mock
    assert row["stream"] == 0 and row["ttft_ms"] is None and row["duration_ms"] > 0
    assert json.loads(row["metadata"]) == {"team": "search"}
    assert row["key_id"].startswith("fp_")
    assert json.loads(row["response_body"])["usage"]["prompt_tokens"] == 14


def stream_bytes(c: openai.OpenAI, **kwargs) -> bytes:
    with c.chat.completions.with_streaming_response.create(model="gpt-4o-mini", messages=MSG, stream=True,
                                                           **kwargs) as r:
        return b"".join(r.iter_bytes())


def test_a_stream_without_include_usage_sees_exactly_what_it_would_have_seen(gateway, customer):
    """The gateway asks for usage and hides it: bytes through the gateway equal bytes straight from
    the provider, and the row still has exact tokens and cost."""
    through = stream_bytes(client(customer))
    direct = stream_bytes(openai.OpenAI(api_key=KEY, base_url=f"http://127.0.0.1:{gateway.mock_port}/v1"))
    assert through == direct
    assert b'"usage"' not in through
    (row,) = gateway.rows(customer)
    assert (row["stream"], row["status"], row["input_tokens"], row["output_tokens"]) == (1, "ok", 78, 9)
    assert row["usage_estimated"] == 0
    assert row["cost_usd"] == pytest.approx(78 * 0.15e-6 + 9 * 0.6e-6)
    assert 0 < row["ttft_ms"] <= row["duration_ms"]
    assert json.loads(row["response_body"])["text"] == "The capital of the UK is London."
    assert json.loads(row["request_body"]).get("stream_options") is None  # the client's own body is stored


def test_a_stream_that_asked_for_usage_gets_it(gateway, customer):
    chunks = list(client(customer).chat.completions.create(
        model="gpt-4o-mini", messages=MSG, stream=True, stream_options={"include_usage": True}))
    assert chunks[-1].usage.prompt_tokens == 78 and chunks[-1].choices == []
    (row,) = gateway.rows(customer)
    assert (row["input_tokens"], row["output_tokens"]) == (78, 9)


def test_parallel_tool_calls_stream(gateway, customer):
    tools = [{"type": "function", "function": {"name": "get_capital", "parameters": {"type": "object"}}}]
    chunks = list(client(customer, **{"x-mock-fixture": "openai/chat_completion_stream_parallel_tool_calls_usage.sse"})
                  .chat.completions.create(model="gpt-4o", messages=MSG, tools=tools, stream=True))
    assert chunks[-1].choices[0].finish_reason == "tool_calls"
    (row,) = gateway.rows(customer)
    assert (row["input_tokens"], row["output_tokens"]) == (149, 60)
    calls = json.loads(row["response_body"])["tool_calls"]
    assert [c["name"] for c in calls] == ["GetWeatherArgs", "get_stock_price"]


@pytest.mark.anyio
async def test_async_client_stream(gateway, customer):
    c = openai.AsyncOpenAI(api_key=KEY, max_retries=0, default_headers={"X-Tapgate-Customer-Identifier": customer})
    text = "".join([ch.choices[0].delta.content or "" async for ch in await c.chat.completions.create(
        model="gpt-4o-mini", messages=MSG, stream=True) if ch.choices])
    assert text == "The capital of the UK is London."
    (row,) = gateway.rows(customer)
    assert (row["input_tokens"], row["output_tokens"]) == (78, 9)


def test_responses_api_whole_and_streamed(gateway, customer):
    c = client(customer)
    assert c.responses.create(model="gpt-4o-mini", input="hi").usage.input_tokens == 14
    events = list(c.responses.create(model="gpt-4o", input="hi", stream=True))
    assert events[-1].type == "response.completed"
    rows = gateway.rows(customer, 2)
    assert [(r["endpoint"], r["stream"], r["input_tokens"], r["output_tokens"]) for r in rows] == [
        ("responses", 0, 14, 50), ("responses", 1, 278, 9)]
    assert all(r["cost_usd"] > 0 for r in rows)


def test_embeddings(gateway, customer):
    client(customer).embeddings.create(model="text-embedding-3-small", input="hello")
    (row,) = gateway.rows(customer)
    assert (row["endpoint"], row["input_tokens"], row["output_tokens"]) == ("embeddings", 4, 0)
    assert row["cost_usd"] == pytest.approx(4 * 0.02e-6)


@pytest.mark.parametrize("encoding", ["gzip", "br", "deflate"])
def test_compressed_bodies_are_decoded(gateway, customer, encoding):
    c = client(customer, **{"x-mock-encoding": encoding})
    assert c.chat.completions.create(model="gpt-4o", messages=MSG).usage.prompt_tokens == 14
    (row,) = gateway.rows(customer)
    assert (row["input_tokens"], row["output_tokens"]) == (14, 37)
    assert json.loads(row["response_body"])["usage"]["completion_tokens"] == 37  # stored decoded


@pytest.mark.parametrize("encoding", ["gzip", "br"])
def test_compressed_streams_are_decoded(gateway, customer, encoding):
    text = "".join(ch.choices[0].delta.content or "" for ch in client(customer, **{"x-mock-encoding": encoding})
                   .chat.completions.create(model="gpt-4o-mini", messages=MSG, stream=True) if ch.choices)
    assert text == "The capital of the UK is London."
    (row,) = gateway.rows(customer)
    assert (row["input_tokens"], row["output_tokens"], row["status"]) == (78, 9, "ok")


def test_provider_errors_pass_through_unchanged_and_are_recorded(gateway, customer):
    with pytest.raises(openai.RateLimitError) as e:
        client(customer, **{"x-mock-status": "429"}).chat.completions.create(model="gpt-4o", messages=MSG)
    assert e.value.response.headers["x-ratelimit-limit-tokens"] == "90000"  # the provider's own headers
    assert e.value.code == "rate_limit_exceeded"
    (row,) = gateway.rows(customer)
    assert (row["status_code"], row["status"]) == (429, "error")
    assert row["error"].startswith("rate_limit_exceeded") and row["cost_usd"] is None


def test_bad_tapgate_header_is_a_400_in_openai_shape_and_still_recorded(gateway, customer):
    with pytest.raises(openai.BadRequestError) as e:
        client(customer, **{"X-Tapgate-Metadata": "{not json"}).chat.completions.create(model="gpt-4o", messages=MSG)
    assert e.value.body["param"] == "X-Tapgate-Metadata" and e.value.code == "invalid_tapgate_header"
    (row,) = gateway.rows(customer)
    assert (row["status_code"], row["status"]) == (400, "refused")


def test_params_header_and_body_user(gateway, customer):
    params = base64.b64encode(json.dumps({"customer_identifier": customer, "thread_identifier": "th-1",
                                          "metadata": {"feature": "chat"}}).encode()).decode()
    c = openai.OpenAI(api_key=KEY, max_retries=0, default_headers={"X-Tapgate-Params": params})
    c.chat.completions.create(model="gpt-4o", messages=MSG, user="ignored-because-params-win")
    (row,) = gateway.rows(customer)
    assert (row["thread_identifier"], json.loads(row["metadata"])) == ("th-1", {"feature": "chat"})
    body_user = f"{customer}-body"
    openai.OpenAI(api_key=KEY, max_retries=0).chat.completions.create(model="gpt-4o", messages=MSG, user=body_user)
    assert gateway.rows(body_user)[0]["customer_identifier"] == body_user


def test_traceparent_puts_the_spans_in_the_callers_trace(gateway, customer):
    trace, parent = "4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7"
    client(customer, traceparent=f"00-{trace}-{parent}-01").chat.completions.create(model="gpt-4o", messages=MSG)
    (row,) = gateway.rows(customer)
    assert row["trace_id"] == trace
    spans = gateway.spans(trace)
    assert [(s["name"], s["parent_span_id"]) for s in spans] == [
        ("passthrough openai chat.completions", parent), ("upstream api.openai.com", row["span_id"])]
    assert all(s["status"] == "ok" and s["duration_ms"] >= 0 for s in spans)


def test_a_client_that_leaves_mid_stream_still_gets_its_row(gateway, customer):
    c = client(customer, **{"x-mock-chunk-delay-ms": "300"})
    with c.chat.completions.with_streaming_response.create(model="gpt-4o-mini", messages=MSG, stream=True) as r:
        first = next(r.iter_lines())  # one event arrived; then the client hangs up
    assert first.startswith("data: ")
    (row,) = gateway.rows(customer)
    assert row["status"] == "client_disconnected"
    assert row["usage_estimated"] == 1 and row["input_tokens"] > 0  # estimated, never silently 0 or NULL
    assert row["cost_usd"] > 0


def test_a_stream_cut_by_the_provider_is_recorded_and_the_proxy_keeps_serving(gateway, customer):
    with pytest.raises(openai.APIConnectionError):  # the proxy cuts the client off as the provider did
        list(client(customer, **{"x-mock-fault": "cut"}).chat.completions.create(
            model="gpt-4o-mini", messages=MSG, stream=True))
    (row,) = gateway.rows(customer)
    assert row["status"] in ("upstream_error", "incomplete") and row["error"]
    assert client(customer).chat.completions.create(model="gpt-4o", messages=MSG).usage.prompt_tokens == 14


def test_a_truncated_provider_body_is_recorded_with_the_problem_named(gateway, customer):
    with pytest.raises(openai.APIError):
        client(customer, **{"x-mock-fault": "cut"}).chat.completions.create(model="gpt-4o", messages=MSG)
    (row,) = gateway.rows(customer)
    assert row["status"] in ("error", "upstream_error") and row["error"]


def test_compatible_hosts_normalise_their_quirks(gateway, customer):
    xai = openai.OpenAI(api_key=KEY, base_url="https://api.x.ai/v1", max_retries=0, default_headers={
        "X-Tapgate-Customer-Identifier": customer, "x-mock-fixture":
        "openai-compatible/xai_chat_stream_tool_call_reasoning.sse"})
    list(xai.chat.completions.create(model="grok-3-mini", messages=MSG, stream=True))
    (row,) = gateway.rows(customer)
    # xAI leaves reasoning out of completion_tokens; the row counts it in output.
    assert (row["provider"], row["input_tokens"], row["output_tokens"], row["reasoning_tokens"]) == (
        "xai", 291, 222, 196)
    assert row["cost_usd"] == pytest.approx(0.00013305)  # xAI's own cost_in_usd_ticks
