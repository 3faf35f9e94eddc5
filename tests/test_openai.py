"""OpenAI and OpenAI-compatible parsing over every captured fixture, streams fed in random splits."""

import json
import random

import pytest
from support import fixture_bytes, fixture_names, parse_stream, random_splits

from providers import Registry
from providers.base import Route, StreamState
from providers.openai.compatible import COMPATIBLE
from providers.openai.wire import _USAGE_NULL, openai

COMPAT = {p.name: p for p in COMPATIBLE}


def route_of(name: str) -> Route:
    endpoint = "responses" if "responses" in name else "embeddings" if "embeddings" in name else "chat.completions"
    prefix = name.split("_")[0]
    provider = COMPAT.get({"huggingface": "together"}.get(prefix, prefix), openai)
    return Route(provider, endpoint)


# fixture -> (response_model, input, output, cache_read, reasoning, reported_cost, error substring)
BODIES = {
    "azure_chat_completion_2023.json": ("gpt-35-turbo", 22, 95, None, None, None, None),
    "chat_completion_n3.json": ("gpt-4o-2024-08-06", 79, 44, None, 0, None, None),
    "chat_completion_parallel_tool_calls.json": ("gpt-4o-2024-08-06", 149, 60, None, 0, None, None),
    "chat_completion_text.json": ("gpt-4o-2024-08-06", 14, 37, None, 0, None, None),
    "chat_completion_text_2026.json": ("gpt-4.1-nano-2025-04-14", 16, 363, 0, 0, None, None),
    "chat_completion_tool_call.json": ("gpt-4o-2024-08-06", 512, 132, None, 0, None, None),
    "embeddings_base64.json": ("text-embedding-3-small", 4, 0, None, None, None, None),
    "error_400_context_length_exceeded.json": (None, None, None, None, None, None, "context_length_exceeded"),
    "error_400_responses_model_not_found.json": (None, None, None, None, None, None, "model_not_found"),
    "error_400_unsupported_parameter.json": (None, None, None, None, None, None, "unsupported_parameter"),
    "error_401_invalid_api_key.json": (None, None, None, None, None, None, "invalid_api_key"),
    "error_404_model_not_found.json": (None, None, None, None, None, None, "does not exist"),
    "error_429_insufficient_quota.json": (None, None, None, None, None, None, "insufficient_quota"),
    "error_429_rate_limit_tokens.json": (None, None, None, None, None, None, "rate_limit_exceeded"),
    "responses_response_text.json": ("gpt-4o-mini-2024-07-18", 14, 50, 0, 0, None, None),
    "groq_chat_completion_tool_call.json": ("llama-3.3-70b-versatile", 218, 15, None, None, None, None),
    "groq_error_400_tool_use_failed.json": (None, None, None, None, None, None, "tool_use_failed"),
    "ollama_v1_chat_completion.json": ("qwen3:0.6b", 136, 15, None, None, None, None),
    # xAI leaves reasoning out of completion_tokens: 26 + 189; cost from cost_in_usd_ticks (1e-10 USD).
    "xai_chat_completion_tool_call_reasoning.json": ("grok-3-mini", 291, 215, 244, 189, 0.0001399, None),
}

# fixture -> (response_model, input, output, cache_read, reasoning, reported_cost, text start, tool calls, finish, error)
STREAMS = {
    "azure_chat_completion_stream_2023.sse": ("gpt-35-turbo", None, None, None, None, None, "(Verse 1)", [], "stop", None),
    "azure_chat_completion_stream_model_router.sse": (
        "gpt-5-nano-2025-08-07", 15, 78, 0, 64, None, "Capital of Denmark.", [], "stop", None),
    "chat_completion_stream_finish_length_usage.sse": ("gpt-4o-2024-08-06", 79, 1, None, 0, None, '{"', [], "length", None),
    "chat_completion_stream_logprobs_usage.sse": ("gpt-4o-2024-08-06", 9, 2, None, 0, None, "Foo!", [], "stop", None),
    "chat_completion_stream_n3_usage.sse": ("gpt-4o-2024-08-06", 79, 42, None, 0, None, '{"city":"San Francisco"', [], "stop", None),
    "chat_completion_stream_parallel_tool_calls_include_usage.sse": (
        "gpt-4o-2024-08-06", 364, 40, 0, 0, None, "", [("get_country", "{}"), ("get_product_name", "{}")], "tool_calls", None),
    "chat_completion_stream_parallel_tool_calls_usage.sse": (
        "gpt-4o-2024-08-06", 149, 60, None, 0, None, "",
        [("GetWeatherArgs", '{"city": "Edinburgh", "country": "GB", "units": "c"}'),
         ("get_stock_price", '{"ticker": "AAPL", "exchange": "NASDAQ"}')], "tool_calls", None),
    "chat_completion_stream_refusal_usage.sse": ("gpt-4o-2024-08-06", 79, 11, None, 0, None, "", [], "stop", None),
    "chat_completion_stream_text_after_tool_result_include_usage.sse": (
        "gpt-4o-mini-2024-07-18", 78, 9, 0, 0, None, "The capital of the UK is London.", [], "stop", None),
    "chat_completion_stream_text_usage.sse": ("gpt-4o-2024-08-06", 14, 30, None, 0, None, "I'm unable to provide", [], "stop", None),
    "chat_completion_stream_tool_call_include_usage.sse": (
        "gpt-4o-mini-2024-07-18", 53, 15, 0, 0, None, "", [("get_capital", '{"country":"UK"}')], "tool_calls", None),
    "chat_completion_stream_tool_call_usage.sse": (
        "gpt-4o-2024-08-06", 48, 19, None, 0, None, "",
        [("get_weather", '{"city":"San Francisco","state":"CA"}')], "tool_calls", None),
    "responses_stream_error_insufficient_quota.sse": (
        "gpt-5-nano-2025-08-07", None, None, None, None, None, "", [], "failed", "exceeded your current quota"),
    "responses_stream_function_call.sse": (
        "gpt-4o-2024-08-06", 255, 16, 0, 0, None, "", [("get_capital", '{"country":"France"}')], "completed", None),
    "responses_stream_reasoning_function_call.sse": (
        "gpt-5-2025-08-07", 53, 469, 0, 448, None, "", [("final_result", '{"result":6666}')], "completed", None),
    "responses_stream_text.sse": ("gpt-4o-2024-08-06", 278, 9, 0, 0, None, "The capital of France is Paris.", [], "completed", None),
    "deepseek_chat_stream_reasoning_include_usage.sse": (
        "deepseek-reasoner", 6, 212, 0, 198, None, "Hello there!", [], "stop", None),
    "groq_chat_stream_compound_x_groq_usage.sse": ("groq/compound", 5003, 359, None, None, None, "The weather in San Francisco", [], "stop", None),
    "groq_chat_stream_tool_call.sse": ("llama-3.3-70b-versatile", 210, 15, None, None, None, "", [("weather", "{}")], "tool_calls", None),
    "huggingface_router_together_chat_stream.sse": ("deepseek-ai/DeepSeek-R1", 10, 955, 0, None, None, "<think>", [], "stop", None),
    "mistral_chat_stream_thinking.sse": ("magistral-medium-latest", 10, 232, None, None, None, "To cross the street", [], "stop", None),
    "openrouter_chat_stream_anthropic_cache_control.sse": (
        "anthropic/claude-4.6-sonnet-20260217", 254, 5, 0, 0, 0.000837, "Hello!", [], "stop", None),
    "openrouter_chat_stream_midstream_error.sse": (
        "minimax/minimax-m2:free", 43, 10, 0, 11, 0.0, "", [], "length", "Token limit reached"),
    "openrouter_chat_stream_usage_cost.sse": ("x-ai/grok-4", 687, 187, 679, 118, 0.00333825, "I'm Grok", [], "stop", None),
    # xAI: 26 completion + 196 reasoning.
    "xai_chat_stream_tool_call_reasoning.sse": (
        "grok-3-mini", 291, 222, 290, 196, 0.00013305, "", [("weather", '{"location":"San Francisco"}')], "tool_calls", None),
}


def all_fixtures(suffix):
    return [(p, n) for p in ("openai", "openai-compatible") for n in fixture_names(p, suffix)]


def test_every_fixture_has_expectations():
    assert {n for _, n in all_fixtures(".json")} == set(BODIES)
    assert {n for _, n in all_fixtures(".sse")} == set(STREAMS)


@pytest.mark.parametrize("provider,name", all_fixtures(".json"))
def test_whole_bodies(provider, name):
    facts = route_of(name).provider.response_facts(route_of(name), json.loads(fixture_bytes(provider, name)))
    model, inp, out, cached, reasoning, cost, error = BODIES[name]
    u = facts.usage
    assert (facts.response_model, u.input_tokens, u.output_tokens) == (model, inp, out)
    assert (u.cache_read_tokens, u.reasoning_tokens) == (cached, reasoning)
    assert u.reported_cost_usd == pytest.approx(cost) if cost is not None else u.reported_cost_usd is None
    if error:
        assert error in facts.error
    else:
        assert facts.error is None


@pytest.mark.parametrize("provider,name", all_fixtures(".sse"))
def test_streams_whatever_the_splits(provider, name):
    data, route = fixture_bytes(provider, name), route_of(name)
    whole = parse_stream(route, [data])
    model, inp, out, cached, reasoning, cost, text, calls, finish, error = STREAMS[name]
    u = whole.usage
    assert (whole.response_model, u.input_tokens, u.output_tokens) == (model, inp, out)
    assert (u.cache_read_tokens, u.reasoning_tokens) == (cached, reasoning)
    assert u.reported_cost_usd == pytest.approx(cost) if cost is not None else u.reported_cost_usd is None
    assert "".join(whole.output.text).startswith(text)
    assert [(c["name"], c["arguments"]) for c in whole.output.tool_calls.values()] == calls
    assert whole.output.finish_reason == finish
    assert whole.finished
    assert (error in whole.error) if error else whole.error is None
    for seed in range(6):
        rng = random.Random(seed)
        assert parse_stream(route, random_splits(data, rng, max_piece=1 if seed == 0 else 1 + seed * 5)) == whole


def test_a_stream_cut_short_is_not_finished_and_keeps_what_it_saw():
    data = fixture_bytes("openai", "chat_completion_stream_tool_call_include_usage.sse")
    state = parse_stream(route_of("chat"), [data[: len(data) // 2]])
    assert not state.finished and state.usage.input_tokens is None
    assert state.output.tool_calls[0]["name"] == "get_capital"


def test_gzip_and_brotli_streams_are_decoded():
    import gzip

    import brotli

    data = fixture_bytes("openai", "chat_completion_stream_tool_call_include_usage.sse")
    plain = parse_stream(route_of("chat"), [data])
    rng = random.Random(1)
    for encoding, packed in (("gzip", gzip.compress(data)), ("br", brotli.compress(data))):
        assert parse_stream(route_of("chat"), random_splits(packed, rng, 13), content_encoding=encoding) == plain


def test_corrupt_compressed_stream_is_an_error_not_an_exception():
    state = parse_stream(route_of("chat"), [b"\x1f\x8b\x09\x00garbage-and-more-garbage"], content_encoding="gzip")
    assert "content-encoding" in state.error


@pytest.mark.parametrize(
    "host,path,provider,endpoint,model",
    [
        ("api.openai.com", "/v1/chat/completions", "openai", "chat.completions", None),
        ("api.openai.com", "/v1/responses", "openai", "responses", None),
        ("api.openai.com", "/v1/embeddings", "openai", "embeddings", None),
        ("api.openai.com", "/v1/completions", "openai", "completions", None),
        ("myres.openai.azure.com", "/openai/deployments/gpt4o-prod/chat/completions?api-version=2024-10-21",
         "azure", "chat.completions", "gpt4o-prod"),
        ("myres.openai.azure.com", "/openai/v1/chat/completions", "azure", "chat.completions", None),
        ("api.groq.com", "/openai/v1/chat/completions", "groq", "chat.completions", None),
        ("api.deepseek.com", "/chat/completions", "deepseek", "chat.completions", None),
        ("api.deepseek.com", "/v1/chat/completions", "deepseek", "chat.completions", None),
        ("openrouter.ai", "/api/v1/chat/completions", "openrouter", "chat.completions", None),
        ("api.x.ai", "/v1/responses", "xai", "responses", None),
        ("api.fireworks.ai", "/inference/v1/chat/completions", "fireworks", "chat.completions", None),
        ("API.OpenAI.com", "/v1/chat/completions", "openai", "chat.completions", None),
        ("generativelanguage.googleapis.com", "/v1beta/openai/chat/completions", "gemini", "chat.completions", None),
    ],
)
def test_routes(host, path, provider, endpoint, model):
    route = Registry().route(host, 443, path)
    assert (route.provider.name, route.endpoint, route.path_model) == (provider, endpoint, model)


@pytest.mark.parametrize(
    "host,path",
    [("api.openai.com", "/v1/models"), ("api.openai.com", "/v1/files"), ("example.com", "/v1/chat/completions"),
     ("api.openai.com.evil.com", "/v1/chat/completions"), ("openai.azure.com.evil.com", "/openai/v1/chat/completions")],
)
def test_not_routes(host, path):
    assert Registry().route(host, 443, path) is None


def test_request_facts_and_asking_for_usage():
    body = json.loads(fixture_bytes("openai", "chat_completion_stream_tool_call_include_usage.request.json"))["body"]
    route = route_of("chat")
    facts = openai.request_facts(route, body)
    assert (facts.model, facts.stream, facts.wants_usage) == ("gpt-4o-mini", True, True)
    assert openai.ask_for_usage(route, body) is None  # it already asked
    del body["stream_options"]
    body.update(user="u-1", metadata={"team": "a"}, max_completion_tokens=55)
    facts = openai.request_facts(route, body)
    assert (facts.wants_usage, facts.user, facts.metadata, facts.max_tokens) == (False, "u-1", {"team": "a"}, 55)
    assert openai.ask_for_usage(route, body) == {"stream_options": {"include_usage": True}}
    assert openai.ask_for_usage(route, {**body, "stream": False}) is None
    assert COMPAT["mistral"].ask_for_usage(route, body) is None  # documented to send usage unasked
    assert openai.ask_for_usage(Route(openai, "responses"), body) is None  # Responses streams always carry usage


def test_hiding_the_usage_the_gateway_asked_for():
    route = route_of("chat")
    chunk = b'data: {"id":"x","choices":[{"index":0,"delta":{"content":"Hi"}}],"usage":null,"obfuscation":"a"}\n\n'
    data = json.loads(chunk[6:])
    assert openai.hide_usage(route, None, data, chunk) == (
        b'data: {"id":"x","choices":[{"index":0,"delta":{"content":"Hi"}}],"obfuscation":"a"}\n\n'
    )
    last = b'data: {"id":"x","choices":[],"usage":{"prompt_tokens":1,"completion_tokens":2}}\n\n'
    assert openai.hide_usage(route, None, json.loads(last[6:]), last) == b""
    done = b"data: [DONE]\n\n"
    assert openai.hide_usage(route, None, "[DONE]", done) == done


@pytest.mark.parametrize("chunk", [
    b'data: {"id":"x","choices":[],"usage":null}\n\n',  # compact: the fast path
    b'data: {"usage":null,"id":"x","choices":[]}\n\n',  # first field: the regex
    b'data: {"id": "x", "usage": null, "choices": []}\n\n',  # spaced: the regex
    b'data: {"id":"x","meta":{"usage":null},"usage":null}\n\n',  # twice: the regex, first one out
])
def test_hiding_a_null_usage_takes_out_the_same_bytes_either_way(chunk):
    expected = _USAGE_NULL.sub(b"", chunk, count=1)
    assert openai.hide_usage(route_of("chat"), None, json.loads(chunk[6:]), chunk) == expected
    assert b"usage" not in expected or chunk.count(b'"usage"') == 2


def test_error_reply_is_openais_shape():
    reply = openai.error_reply(400, "bad header", "invalid_tapgate_header", "X-Tapgate-Metadata")
    assert reply.status == 400
    assert json.loads(reply.body) == {
        "error": {"message": "bad header", "type": "invalid_request_error", "param": "X-Tapgate-Metadata",
                  "code": "invalid_tapgate_header"}
    }


def test_a_responses_socket_message_is_the_request_an_http_post_would_carry():
    """The Responses API over a WebSocket (Codex CLI on a ChatGPT login): a client's response.create
    message is the call's body, always streamed; any other message is none; the events that come back
    are the Responses stream's, folded as the SSE ones are."""
    chatgpt = Registry().route("chatgpt.com", 443, "/backend-api/codex/responses")
    message = {"type": "response.create", "model": "gpt-5.1-codex", "input": "hi", "generate": False}
    body = chatgpt.provider.socket_request(chatgpt, message)
    assert body == {"model": "gpt-5.1-codex", "input": "hi", "generate": False, "stream": True}
    assert chatgpt.provider.request_facts(chatgpt, body).model == "gpt-5.1-codex"
    for other in ({"type": "response.cancel"}, ["response.create"], "response.create", None):
        assert chatgpt.provider.socket_request(chatgpt, other) is None
    chat = Route(openai, "chat.completions")
    assert openai.socket_request(chat, message) is None  # only the Responses endpoint has a socket
    state = StreamState()
    for line in fixture_bytes("openai", "responses_stream_text.sse").splitlines():
        if line.startswith(b"data: "):  # each event's data is one socket message
            chatgpt.provider.stream_event(chatgpt, state, None, json.loads(line[6:]))
    assert state.finished and state.usage.input_tokens > 0 and state.output.text
