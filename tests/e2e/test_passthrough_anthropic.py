"""The official anthropic SDK through HTTPS_PROXY: cache-aware tokens, streams, tools, errors."""

import json

import anthropic
import pytest

KEY = "sk-ant-test-e2e-SECRET-anthropic-0123456789"
MSG = [{"role": "user", "content": "Say hello"}]


def client(customer, **headers):
    return anthropic.Anthropic(api_key=KEY, max_retries=0,
                               default_headers={"X-Tapgate-Customer-Identifier": customer, **headers})


def test_message_is_recorded(gateway, customer):
    reply = client(customer).messages.create(model="claude-sonnet-4-6", max_tokens=100, messages=MSG,
                                             metadata={"user_id": "ignored-header-wins"})
    assert reply.usage.input_tokens == 12
    (row,) = gateway.rows(customer)
    assert (row["provider"], row["endpoint"], row["model"], row["response_model"]) == (
        "anthropic", "messages", "claude-sonnet-4-6", "claude-sonnet-4-5-20250929")
    assert (row["input_tokens"], row["output_tokens"], row["status"]) == (12, 29, "ok")
    assert row["cost_usd"] == pytest.approx(12 * 3e-6 + 29 * 15e-6)


def test_body_metadata_user_id_is_the_customer(gateway, customer):
    anthropic.Anthropic(api_key=KEY, max_retries=0).messages.create(
        model="claude-sonnet-4-6", max_tokens=100, messages=MSG, metadata={"user_id": customer})
    assert gateway.rows(customer)[0]["customer_identifier"] == customer


def test_cache_reads_and_writes_add_up(gateway, customer):
    client(customer, **{"x-mock-fixture": "anthropic/messages_prompt_cache_read_and_write.json"}).messages.create(
        model="claude-sonnet-4-6", max_tokens=100, messages=MSG)
    (row,) = gateway.rows(customer)
    # Anthropic's input_tokens (3) leaves cache out: the row counts every input token.
    assert (row["input_tokens"], row["cache_read_tokens"], row["cache_write_tokens"]) == (1532, 1111, 418)
    assert row["cost_usd"] == pytest.approx(3 * 3e-6 + 418 * 3.75e-6 + 1111 * 0.3e-6 + 33 * 15e-6)


def test_stream_text_and_tool_use(gateway, customer):
    with client(customer).messages.stream(model="claude-sonnet-4-6", max_tokens=100, messages=MSG) as s:
        text = "".join(s.text_stream)
    assert text
    tools = [{"name": "get_weather", "description": "d", "input_schema": {"type": "object"}}]
    with client(customer).messages.stream(model="claude-haiku-4-5", max_tokens=100, messages=MSG, tools=tools) as s:
        final = s.get_final_message()
    assert final.stop_reason == "tool_use"
    rows = gateway.rows(customer, 2)
    assert [(r["stream"], r["input_tokens"], r["output_tokens"]) for r in rows] == [(1, 135, 10), (1, 656, 74)]
    assert json.loads(rows[0]["response_body"])["text"] == text
    assert [c["name"] for c in json.loads(rows[1]["response_body"])["tool_calls"]] == [final.content[-1].name]
    assert all(0 < r["ttft_ms"] <= r["duration_ms"] for r in rows)


def test_overloaded_passes_through_and_is_recorded(gateway, customer):
    with pytest.raises(anthropic.APIStatusError) as e:
        client(customer, **{"x-mock-status": "529"}).messages.create(
            model="claude-sonnet-4-6", max_tokens=10, messages=MSG)
    assert e.value.status_code == 529 and e.value.body["error"]["type"] == "overloaded_error"
    (row,) = gateway.rows(customer)
    assert (row["status_code"], row["status"]) == (529, "error") and "overloaded_error" in row["error"]


def test_mid_stream_error_event_is_recorded(gateway, customer):
    with pytest.raises(anthropic.APIStatusError):
        with client(customer, **{"x-mock-fixture": "anthropic/messages_stream_error_overloaded.sse"}).messages.stream(
                model="claude-sonnet-4-6", max_tokens=10, messages=MSG) as s:
            list(s.text_stream)
    (row,) = gateway.rows(customer)
    assert row["status"] == "error" and "overloaded_error" in row["error"]


def test_a_client_that_leaves_mid_stream_is_charged_for_what_it_saw(gateway, customer):
    c = client(customer, **{"x-mock-chunk-delay-ms": "300",
                            "x-mock-fixture": "anthropic/messages_stream_extended_thinking.sse"})
    with c.messages.with_streaming_response.create(model="claude-sonnet-4-6", max_tokens=2000, messages=MSG,
                                                   stream=True) as r:
        lines = r.iter_lines()
        assert next(lines).startswith("event: message_start")
    (row,) = gateway.rows(customer)
    assert row["status"] == "client_disconnected"
    assert row["input_tokens"] > 0 and row["output_tokens"] > 0  # message_start's counts, at least
    assert row["cost_usd"] > 0
