"""Anthropic Messages: every captured body and stream in testdata/fixtures/anthropic, plus routing."""

from __future__ import annotations

import json
import random

import pytest
from support import FIXTURES, fixture_bytes, fixture_json, fixture_names, parse_stream, random_splits

from providers import Registry
from providers.anthropic.wire import anthropic
from providers.base import Route, StreamState, Usage

API = Route(anthropic, "messages")
VERTEX_PATH = "/v1/projects/my-proj/locations/{loc}/publishers/{pub}/models/{model}:{verb}"


def vertex(model="claude-sonnet-4-5@20250929", verb="rawPredict", loc="us-east5", pub="anthropic", version="v1"):
    return VERTEX_PATH.format(loc=loc, pub=pub, model=model, verb=verb).replace("/v1/", f"/{version}/", 1)


def counts(inp, out, read=0, write=0, write_1h=0, reasoning=None) -> Usage:
    return Usage(inp, out, read, write, write_1h, reasoning)


# -- whole bodies ---------------------------------------------------------------------------------

# name -> (usage, response model, error)
BODIES = {
    "error_400_invalid_request.json": (
        Usage(),
        None,
        "invalid_request_error: messages.0.content.1: unexpected `tool_use_id` found in `tool_result` blocks: "
        "toolu_01GHndag5wQmbzNihYmV2UBj. Each `tool_result` block must have a corresponding `tool_use` block "
        "in the previous message.",
    ),
    "error_404_not_found.json": (Usage(), None, "not_found_error: model: claude-sonet-4-5"),
    "error_429_rate_limit.json": (Usage(), None, "rate_limit_error: This request would exceed your organization's"),
    "error_529_overloaded.json": (Usage(), None, "overloaded_error: Overloaded"),
    "error_529_overloaded_2026.json": (
        Usage(),
        None,
        "overloaded_error: Overloaded. https://docs.claude.com/en/api/errors",
    ),
    "messages_programmatic_tool_call_with_ratelimit_headers.json": (
        counts(3182, 237),
        "claude-opus-4-5-20251101",
        None,
    ),
    # input_tokens 3 is the uncached part only: 3 + 418 written + 1111 read.
    "messages_prompt_cache_read_and_write.json": (
        counts(1532, 33, read=1111, write=418),
        "claude-sonnet-4-5-20250929",
        None,
    ),
    "messages_text.json": (counts(249, 26), "claude-sonnet-4-5-20250929", None),
    "messages_text_simple.json": (counts(12, 29), "claude-sonnet-4-5-20250929", None),
    "messages_tool_use.json": (counts(656, 74), "claude-haiku-4-5-20251001", None),
}


def test_every_body_fixture_has_expectations():
    assert fixture_names("anthropic", ".json") == sorted(BODIES)


@pytest.mark.parametrize("name", fixture_names("anthropic", ".json"))
def test_response_facts(name):
    expected_usage, model, error = BODIES[name]
    facts = anthropic.response_facts(API, fixture_json("anthropic", name))
    assert facts.usage == expected_usage
    assert facts.response_model == model
    if error is None:
        assert facts.error is None
    else:
        assert facts.error is not None and facts.error.startswith(error)
        assert facts.error == error or name == "error_429_rate_limit.json"


def test_response_facts_1h_cache_writes_and_thinking_split():
    body = {
        "model": "claude-opus-4-5",
        "usage": {
            "input_tokens": 10,
            "cache_creation_input_tokens": 300,
            "cache_read_input_tokens": 0,
            "cache_creation": {"ephemeral_5m_input_tokens": 100, "ephemeral_1h_input_tokens": 200},
            "output_tokens": 50,
            "output_tokens_details": {"thinking_tokens": 40},
        },
    }
    assert anthropic.response_facts(API, body).usage == counts(310, 50, 0, 300, 200, 40)


@pytest.mark.parametrize("body", [None, "text", 3, [], {"usage": "x", "model": 5}, {"error": "boom"}])
def test_response_facts_odd_bodies(body):
    facts = anthropic.response_facts(API, body)
    assert facts.usage == Usage()
    assert facts.response_model is None


def test_response_facts_google_error_on_vertex():
    body = [{"error": {"code": 403, "message": "Permission denied", "status": "PERMISSION_DENIED"}}]
    assert anthropic.response_facts(API, body).error == "PERMISSION_DENIED: Permission denied"


# -- streams --------------------------------------------------------------------------------------

TOOL_ARGS_SF = '{"location": "San Francisco, CA", "units": "f"}'
PARIS = '{"location": "Paris"}'

# name -> expected final state; events = the fixture's `event:` lines, pings included
STREAMS = {
    "messages_stream_after_tool_result.sse": dict(
        usage=counts(770, 38),
        model="claude-haiku-4-5-20251001",
        text="The weather in San Francisco, CA is currently:\n- **Temperature:** 68°F\n- **Condition:** Sunny\n\n"
        "It's a nice sunny day!",
        tools={},
        finish="end_turn",
        finished=True,
        error=None,
        events=15,
    ),
    "messages_stream_error_overloaded.sse": dict(
        usage=Usage(),
        model=None,
        text="",
        tools={},
        finish=None,
        finished=False,
        error="overloaded_error: Overloaded",
        events=1,
    ),
    "messages_stream_extended_thinking.sse": dict(
        usage=counts(43, 282),
        model="claude-sonnet-4-20250514",
        text=None,  # long: checked in its own test
        tools={},
        finish="end_turn",
        finished=True,
        error=None,
        events=118,
    ),
    # message_delta's numbers differ from message_start's (2 / 3068 / 0) and win: 6 + 3337 + 6289.
    # The 1h split is only in message_start; thinking_tokens only in message_delta.
    # The two server_tool_use blocks are not client tool calls.
    "messages_stream_prompt_cache_server_tools.sse": dict(
        usage=counts(9632, 198, read=6289, write=3337, write_1h=0, reasoning=0),
        model="claude-sonnet-5",
        text="The sum of the squares of the numbers 1 through 12 is **650**.",
        tools={},
        finish="end_turn",
        finished=True,
        error=None,
        events=44,
    ),
    "messages_stream_text.sse": dict(
        usage=counts(135, 10),
        model="claude-sonnet-4-5-20250929",
        text="[12345,67890]",
        tools={},
        finish="end_turn",
        finished=True,
        error=None,
        events=10,
    ),
    # Older shape: message_delta has only output_tokens, message_start has no cache_creation split.
    # No blank line after the final message_stop.
    "messages_stream_text_then_tool_use.sse": dict(
        usage=counts(377, 65, write_1h=None),
        model="claude-sonnet-4-20250514",
        text="I'll check the current weather in Paris for you.",
        tools={1: {"id": "toolu_01NRLabsLyVHZPKxbKvkfSMn", "name": "get_weather", "arguments": PARIS}},
        finish="tool_use",
        finished=True,
        error=None,
        events=15,
    ),
    "messages_stream_tool_use.sse": dict(
        usage=counts(656, 74),
        model="claude-haiku-4-5-20251001",
        text="",
        tools={0: {"id": "toolu_018acGYLtfR52q9yDbWaEdQZ", "name": "get_weather", "arguments": TOOL_ARGS_SF}},
        finish="tool_use",
        finished=True,
        error=None,
        events=16,
    ),
}


def pieces_variants(data: bytes) -> list[list[bytes]]:
    """The stream whole, in random splits for several seeds, and one byte at a time."""
    variants = [[data]]
    for seed in range(8):
        variants.append(random_splits(data, random.Random(seed)))
        variants.append(random_splits(data, random.Random(seed), max_piece=200))
    variants.append(random_splits(data, random.Random(99), max_piece=1))
    return variants


def test_every_stream_fixture_has_expectations():
    assert fixture_names("anthropic", ".sse") == sorted(STREAMS)


@pytest.mark.parametrize("name", fixture_names("anthropic", ".sse"))
def test_stream_same_state_however_split(name):
    data = fixture_bytes("anthropic", name)
    whole = parse_stream(API, [data])
    for pieces in pieces_variants(data)[1:]:
        assert parse_stream(API, pieces) == whole


@pytest.mark.parametrize("name", fixture_names("anthropic", ".sse"))
def test_stream_facts(name):
    want = STREAMS[name]
    state = parse_stream(API, [fixture_bytes("anthropic", name)])
    assert state.usage == want["usage"]
    assert state.response_model == want["model"]
    if want["text"] is not None:
        assert "".join(state.output.text) == want["text"]
    assert state.output.tool_calls == want["tools"]
    for call in state.output.tool_calls.values():
        assert isinstance(json.loads(call["arguments"]), dict)
    assert state.output.finish_reason == want["finish"]
    assert state.finished is want["finished"]
    assert state.error == want["error"]
    assert state.events == want["events"]


def test_stream_thinking_is_not_answer_text():
    state = parse_stream(API, [fixture_bytes("anthropic", "messages_stream_extended_thinking.sse")])
    text = "".join(state.output.text)
    assert text.startswith("Here are the basic steps for safely crossing the street:\n\n**At intersections with")
    assert text.endswith("Always prioritize safety over speed when crossing streets.")
    assert "straightforward question" not in text  # from the thinking_delta events


def test_stream_message_start_usage_until_message_delta():
    """A stream cut after message_start still has its input counts and the placeholder output."""
    data = fixture_bytes("anthropic", "messages_stream_prompt_cache_server_tools.sse")
    cut = data[: data.index(b"event: content_block_start")]
    state = parse_stream(API, [cut])
    assert state.usage == counts(3070, 69, read=0, write=3068, write_1h=0)
    assert state.response_model == "claude-sonnet-5"
    assert not state.finished


@pytest.mark.parametrize("name", ["messages_stream_tool_use.sse", "messages_stream_text_then_tool_use.sse"])
def test_truncated_stream_never_finishes_or_raises(name):
    data = fixture_bytes("anthropic", name)
    end = data.index(b"event: message_stop")
    for cut in range(end):
        state = parse_stream(API, [data[:cut]])
        assert state.finished is False
        assert state.output.finish_reason in (None, "tool_use")


def test_truncated_mid_tool_call_keeps_partial_arguments():
    data = fixture_bytes("anthropic", "messages_stream_tool_use.sse")
    cut = data.index(b'"partial_json":"anci"')
    cut = data.rindex(b"\n\n", 0, cut) + 2  # the last whole event before that fragment
    state = parse_stream(API, [data[:cut]])
    assert state.output.tool_calls[0]["arguments"] == '{"location": "San Fr'
    assert state.usage == counts(656, 26)  # message_start's placeholder output
    assert state.error is None and not state.finished


ODD_EVENTS = [
    ("message_start", None),
    ("message_start", "[DONE]"),
    ("message_start", {"type": "message_start", "message": []}),
    ("message_start", {"type": "message_start", "message": {"usage": "x", "model": 7}}),
    ("message_delta", {"type": "message_delta", "delta": "x", "usage": {"output_tokens": "9"}}),
    ("content_block_start", {"type": "content_block_start", "index": [1], "content_block": {"type": "tool_use"}}),
    ("content_block_start", {"type": "content_block_start", "index": 0, "content_block": "x"}),
    ("content_block_delta", {"type": "content_block_delta", "index": {}, "delta": {"type": "input_json_delta"}}),
    ("content_block_delta", {"type": "content_block_delta", "index": 5, "delta": {"type": "input_json_delta"}}),
    ("content_block_delta", {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": 3}}),
    ("error", {"type": "error", "error": "nope"}),
    ("surprise", {"type": ["weird"]}),
]


def test_odd_events_never_raise():
    state = StreamState()
    anthropic.stream_event(API, state, "content_block_start", {"index": 0, "content_block": {"type": "tool_use"}})
    for event, data in ODD_EVENTS:
        anthropic.stream_event(API, state, event, data)
    assert state.events == len(ODD_EVENTS) + 1
    assert state.usage == Usage()
    assert state.output.tool_calls == {0: {"id": None, "name": None, "arguments": ""}}
    assert state.output.text == []
    assert state.error == "stream error"
    assert not state.finished


def test_event_name_used_when_data_has_no_type():
    state = StreamState()
    anthropic.stream_event(API, state, "message_stop", {})
    assert state.finished


# -- routing --------------------------------------------------------------------------------------


def test_route_api():
    route = anthropic.route("api.anthropic.com", "/v1/messages")
    assert route == Route(anthropic, "messages")
    assert route.path_model is None and route.path_stream is False


@pytest.mark.parametrize(
    "host, path",
    [
        ("api.anthropic.com", "/v1/messages/count_tokens"),
        ("api.anthropic.com", "/v1/messages/batches"),
        ("api.anthropic.com", "/v1/messages/batches/msgbatch_01/results"),
        ("api.anthropic.com", "/v1/complete"),
        ("api.anthropic.com", "/v1/models"),
        ("api.anthropic.com", "/v1/messages/"),
        ("api.anthropic.com", vertex()),
        ("api.openai.com", "/v1/messages"),
        ("anthropic.example.com", "/v1/messages"),
        ("us-east5-aiplatform.googleapis.com", "/v1/messages"),
        # Gemini on Vertex shares the hosts.
        ("us-central1-aiplatform.googleapis.com", vertex("gemini-2.5-flash", "generateContent", pub="google")),
        ("aiplatform.googleapis.com", vertex("gemini-2.5-flash", "streamGenerateContent", "global", "google")),
        # Token counting on Vertex is a pseudo-model, not a billed call.
        ("us-east5-aiplatform.googleapis.com", vertex("count-tokens")),
        ("us-east5-aiplatform.googleapis.com", vertex(verb="predict")),
        ("us-east5-aiplatform.googleapis.com", vertex() + "/extra"),
        ("generativelanguage.googleapis.com", vertex()),
        ("aiplatform.googleapis.com.example.com", vertex()),
    ],
)
def test_route_rejects(host, path):
    assert anthropic.route(host, path) is None


@pytest.mark.parametrize(
    "host, path, model, stream",
    [
        ("us-east5-aiplatform.googleapis.com", vertex(), "claude-sonnet-4-5@20250929", False),
        (
            "europe-west1-aiplatform.googleapis.com",
            vertex(verb="streamRawPredict", loc="europe-west1"),
            "claude-sonnet-4-5@20250929",
            True,
        ),
        (
            "aiplatform.googleapis.com",
            vertex("claude-haiku-4-5@20251001", loc="global"),
            "claude-haiku-4-5@20251001",
            False,
        ),
        (
            "aiplatform.us.rep.googleapis.com",
            vertex("claude-opus-4-5", "streamRawPredict", "us"),
            "claude-opus-4-5",
            True,
        ),
        (
            "us-east5-aiplatform.googleapis.com",
            vertex("claude-sonnet-4-5%4020250929"),
            "claude-sonnet-4-5@20250929",
            False,
        ),
        ("us-east5-aiplatform.googleapis.com", vertex(version="v1beta1"), "claude-sonnet-4-5@20250929", False),
    ],
)
def test_route_vertex(host, path, model, stream):
    assert anthropic.route(host, path) == Route(
        anthropic, "messages", path_model=model, path_stream=stream, price_prefix="vertex_ai/"
    )


def test_registry_finds_anthropic_with_beta_query():
    route = Registry().route("api.anthropic.com", 443, "/v1/messages?beta=true")
    assert route is not None and route.provider is anthropic
    assert Registry().route("api.anthropic.com", 443, "/v1/messages/count_tokens?beta=true") is None


def test_hosts_name_both_api_and_vertex():
    assert anthropic.name == "anthropic" and anthropic.price_prefix == ""
    assert "api.anthropic.com" in anthropic.hosts and "aiplatform.googleapis.com" in anthropic.hosts


# -- requests -------------------------------------------------------------------------------------

REQUESTS = {
    "error_404_not_found.request.json": ("claude-sonet-4-5", False, 4096),
    "messages_prompt_cache_read_and_write.request.json": ("claude-sonnet-4-5", False, 4096),
    "messages_stream_after_tool_result.request.json": ("claude-haiku-4-5", True, 1024),
    "messages_stream_extended_thinking.request.json": ("claude-sonnet-4-0", True, 4096),
    "messages_stream_tool_use.request.json": ("claude-haiku-4-5", True, 1024),
    "messages_tool_use.request.json": ("claude-haiku-4-5", False, 1024),
}


def test_every_request_fixture_has_expectations():
    assert sorted(p.name for p in (FIXTURES / "anthropic").glob("*.request.json")) == sorted(REQUESTS)


@pytest.mark.parametrize("name", sorted(REQUESTS))
def test_request_facts(name):
    body = fixture_json("anthropic", name)["body"]
    facts = anthropic.request_facts(API, body)
    model, stream, max_tokens = REQUESTS[name]
    assert (facts.model, facts.stream, facts.max_tokens) == (model, stream, max_tokens)
    assert facts.user is None and facts.metadata == {} and facts.wants_usage is True
    texts = json.dumps([body.get("system"), body["messages"]], ensure_ascii=False)
    assert len(texts) - 20 <= facts.prompt_chars <= len(texts)  # system + messages, not tools
    assert anthropic.ask_for_usage(API, body) is None


def test_request_facts_counts_system():
    body = fixture_json("anthropic", "messages_prompt_cache_read_and_write.request.json")["body"]
    without = anthropic.request_facts(API, {**body, "system": None}).prompt_chars
    assert anthropic.request_facts(API, body).prompt_chars == without + len('"You are a helpful assistant."')


def test_request_facts_user_and_vertex_model():
    route = anthropic.route("us-east5-aiplatform.googleapis.com", vertex(verb="streamRawPredict"))
    body = {"anthropic_version": "vertex-2023-10-16", "messages": [], "max_tokens": 5, "metadata": {"user_id": "u-1"}}
    facts = anthropic.request_facts(route, body)
    assert (facts.model, facts.stream, facts.user, facts.max_tokens) == ("claude-sonnet-4-5@20250929", True, "u-1", 5)
    assert facts.metadata == {}
    assert anthropic.request_facts(route, None).model == "claude-sonnet-4-5@20250929"
    assert anthropic.request_facts(route, None).stream is True
    assert anthropic.request_facts(API, {"model": 3, "stream": "yes", "metadata": {"user_id": 4}}).model is None
    assert anthropic.request_facts(API, {"stream": "yes", "metadata": {"user_id": 4}}).stream is False


def test_hide_usage_is_identity():
    raw = b'event: message_delta\ndata: {"type":"message_delta","usage":{"output_tokens":3}}\n\n'
    assert anthropic.hide_usage(API, "message_delta", json.loads(raw.split(b"data: ")[1]), raw) is raw


# -- errors the gateway raises --------------------------------------------------------------------


@pytest.mark.parametrize(
    "status, kind",
    [
        (400, "invalid_request_error"),
        (401, "authentication_error"),
        (403, "permission_error"),
        (404, "not_found_error"),
        (413, "request_too_large"),
        (429, "rate_limit_error"),
        (500, "api_error"),
        (529, "overloaded_error"),
        (418, "invalid_request_error"),
        (503, "api_error"),
    ],
)
def test_error_reply_types(status, kind):
    reply = anthropic.error_reply(status, "nope", "some_code")
    assert reply.status == status and reply.content_type == "application/json"
    assert json.loads(reply.body) == {"type": "error", "error": {"type": kind, "message": "nope"}}


def test_error_reply_429_bytes():
    reply = anthropic.error_reply(429, "budget exceeded", "budget_exceeded", param="model")
    assert reply.body == b'{"type":"error","error":{"type":"rate_limit_error","message":"budget exceeded"}}'
    assert anthropic.response_facts(API, json.loads(reply.body)).error == "rate_limit_error: budget exceeded"


def test_error_reply_529_matches_anthropics_own_body():
    reply = anthropic.error_reply(529, "Overloaded", "upstream_overloaded")
    assert reply.status == 529
    assert reply.body == fixture_bytes("anthropic", "error_529_overloaded.json")
