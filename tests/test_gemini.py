"""Gemini and Vertex: routing, request facts, usage from real bodies and streams in any chunking, errors."""

from __future__ import annotations

import json
import random
from urllib.parse import urlsplit

import httpx2
import pytest
from google.genai import errors as genai_errors
from support import FIXTURES, fixture_bytes, fixture_json, fixture_names, parse_stream, random_splits

from providers import Registry
from providers.base import StreamState
from providers.gemini.wire import RPC_STATUS, gemini

API = "generativelanguage.googleapis.com"
VERTEX = "aiplatform.googleapis.com"
GENERATE = gemini.route(API, "/v1beta/models/gemini-2.5-flash:generateContent")
STREAM = gemini.route(API, "/v1beta/models/gemini-2.5-flash:streamGenerateContent")
SEEDS = range(12)


def sse_events(name: str) -> list[dict]:
    """The JSON payloads of an .sse fixture, in order."""
    return [json.loads(line[6:]) for line in fixture_bytes("gemini", name).split(b"\r\n") if line.startswith(b"data: ")]


def as_sse(events: list[dict]) -> bytes:
    return b"".join(b"data: " + json.dumps(e, ensure_ascii=False).encode() + b"\r\n\r\n" for e in events)


def as_json_array(events: list[dict]) -> bytes:
    """What streamGenerateContent sends without alt=sse: one pretty-printed JSON array."""
    return ("[" + ",\r\n".join(json.dumps(e, indent=2, ensure_ascii=False) for e in events) + "]").encode()


def split_variants(data: bytes) -> list[list[bytes]]:
    """The whole body, every byte alone, and many random chunkings."""
    variants = [[data], [data[i : i + 1] for i in range(len(data))]]
    for seed in SEEDS:
        variants.append(random_splits(data, random.Random(seed)))
        variants.append(random_splits(data, random.Random(seed), max_piece=64))
    return variants


def states_of(route, data: bytes, content_type: str) -> list[StreamState]:
    return [parse_stream(route, pieces, content_type=content_type) for pieces in split_variants(data)]


# -- routing ---------------------------------------------------------------------------------

ROUTES = [
    (API, "/v1beta/models/gemini-2.5-flash:generateContent", "generateContent", "gemini-2.5-flash", False),
    (API, "/v1beta/models/gemini-2.5-flash:streamGenerateContent", "streamGenerateContent", "gemini-2.5-flash", True),
    (API, "/v1beta/models/gemini-embedding-001:embedContent", "embedContent", "gemini-embedding-001", False),
    (API, "/v1beta/models/text-embedding-004:batchEmbedContents", "batchEmbedContents", "text-embedding-004", False),
    (API, "/v1/models/gemini-2.0-flash:generateContent", "generateContent", "gemini-2.0-flash", False),
    (API, "/v1alpha/models/gemini-2.0-flash:streamGenerateContent", "streamGenerateContent", "gemini-2.0-flash", True),
    (API, "/v1beta/tunedModels/my-tuned-abc123:generateContent", "generateContent", "my-tuned-abc123", False),
    (
        "us-central1-aiplatform.googleapis.com",
        "/v1/projects/my-proj/locations/us-central1/publishers/google/models/gemini-2.5-pro:streamGenerateContent",
        "streamGenerateContent",
        "gemini-2.5-pro",
        True,
    ),
    (
        VERTEX,
        "/v1beta1/projects/p/locations/global/publishers/google/models/gemini-3-flash-preview:generateContent",
        "generateContent",
        "gemini-3-flash-preview",
        False,
    ),
    (
        "europe-west4-aiplatform.googleapis.com",
        "/v1/projects/p/locations/europe-west4/publishers/google/models/gemini-embedding-001:embedContent",
        "embedContent",
        "gemini-embedding-001",
        False,
    ),
    # express mode: no project or location
    (
        VERTEX,
        "/v1/publishers/google/models/gemini-2.5-flash:generateContent",
        "generateContent",
        "gemini-2.5-flash",
        False,
    ),
    (
        "aiplatform.eu.rep.googleapis.com",
        "/v1/projects/p/locations/eu/publishers/google/models/gemini-2.5-flash:generateContent",
        "generateContent",
        "gemini-2.5-flash",
        False,
    ),
]


@pytest.mark.parametrize("host, path, endpoint, model, stream", ROUTES)
def test_route(host, path, endpoint, model, stream):
    route = gemini.route(host, path)
    assert route is not None
    assert (route.provider, route.endpoint, route.path_model, route.path_stream) == (gemini, endpoint, model, stream)


@pytest.mark.parametrize(
    "host, path",
    [
        (API, "/v1beta/openai/chat/completions"),  # the OpenAI-compatible endpoint belongs elsewhere
        (API, "/v1beta/models/gemini-2.5-flash:countTokens"),
        (API, "/v1beta/models"),
        (API, "/v1beta/models/gemini-2.5-flash"),
        (API, "/v1beta/models/gemini-2.5-flash:generateContent/extra"),
        (API, "/v1beta/cachedContents"),
        (API, "/v1/projects/p/locations/global/publishers/google/models/gemini-2.5-flash:generateContent"),
        (VERTEX, "/v1beta/models/gemini-2.5-flash:generateContent"),  # Gemini API path on a Vertex host
        (
            "us-east5-aiplatform.googleapis.com",
            "/v1/projects/p/locations/us-east5/publishers/anthropic/models/claude-sonnet-4-5@20250929:streamRawPredict",
        ),
        ("us-east5-aiplatform.googleapis.com", "/v1/projects/p/locations/us-east5/publishers/google/models/m:predict"),
        (VERTEX, "/v1/projects/p/locations/global/publishers/google/models/gemini-2.5-flash:countTokens"),
        (VERTEX, "/v1/projects/p/locations/global/publishers/google/models"),
        ("x.aiplatform.googleapis.com", "/v1/publishers/google/models/gemini-2.5-flash:generateContent"),
        ("us-aiplatform.googleapis.com.evil.com", "/v1/publishers/google/models/gemini-2.5-flash:generateContent"),
        ("api.openai.com", "/v1beta/models/gemini-2.5-flash:generateContent"),
    ],
)
def test_route_rejects(host, path):
    assert gemini.route(host, path) is None


def test_registry_routes_gemini_with_alt_sse_query():
    route = Registry().route(API, 443, "/v1beta/models/gemini-2.5-flash:streamGenerateContent?alt=sse")
    assert route is not None and route.provider is gemini and route.path_stream


def test_registry_decrypts_regional_vertex_hosts():
    assert Registry().is_provider_host("us-central1-aiplatform.googleapis.com", 443)


# -- requests --------------------------------------------------------------------------------

REQUEST_FIXTURES = sorted(p.name for p in (FIXTURES / "gemini").glob("*.request.json"))


@pytest.mark.parametrize("name", REQUEST_FIXTURES)
def test_request_facts_from_fixture(name):
    recorded = fixture_json("gemini", name)
    url = urlsplit(recorded["url"])
    body = recorded["body"]
    route = gemini.route(url.hostname, url.path)
    assert route is not None
    facts = gemini.request_facts(route, body)
    assert facts.model == url.path.rsplit("/", 1)[1].split(":")[0]
    assert facts.stream is url.path.endswith(":streamGenerateContent")
    assert (facts.user, facts.metadata, facts.max_tokens, facts.wants_usage) == (None, {}, None, True)
    system = body.get("systemInstruction")
    expected_chars = len(json.dumps(body["contents"], ensure_ascii=False))
    expected_chars += len(json.dumps(system, ensure_ascii=False)) if system else 0
    assert facts.prompt_chars == expected_chars > 0
    assert gemini.ask_for_usage(route, body) is None


def test_request_facts_named_fixtures():
    text = gemini.request_facts(GENERATE, fixture_json("gemini", "generate_content_text.request.json")["body"])
    assert (text.model, text.stream) == ("gemini-2.5-flash", False)
    vertex = fixture_json("gemini", "vertex_stream_generate_content.request.json")
    url = urlsplit(vertex["url"])
    facts = gemini.request_facts(gemini.route(url.hostname, url.path), vertex["body"])
    assert (facts.model, facts.stream) == ("gemini-3-flash-preview", True)


def test_request_facts_labels_and_max_tokens():
    body = {
        "contents": [{"role": "user", "parts": [{"text": "hi"}]}],
        "generationConfig": {"maxOutputTokens": 256},
        "labels": {"team": "search", "env": "prod"},
    }
    facts = gemini.request_facts(STREAM, body)
    assert (facts.model, facts.stream, facts.max_tokens) == ("gemini-2.5-flash", True, 256)
    assert facts.metadata == {"team": "search", "env": "prod"}
    # Google's JSON mapping also accepts the proto field names
    snake = {"contents": ["é"], "generation_config": {"max_output_tokens": 64}, "system_instruction": {"parts": []}}
    assert gemini.request_facts(GENERATE, snake).max_tokens == 64
    assert gemini.request_facts(GENERATE, snake).prompt_chars == len('["é"]{"parts": []}')
    embed = gemini.request_facts(GENERATE, {"content": {"parts": [{"text": "hello"}]}})
    assert embed.prompt_chars == len('{"parts": [{"text": "hello"}]}')
    odd = gemini.request_facts(GENERATE, {"labels": ["x"], "generationConfig": {"maxOutputTokens": "9"}})
    assert (odd.metadata, odd.max_tokens) == ({}, None)
    odd = gemini.request_facts(STREAM, None)
    assert (odd.model, odd.stream, odd.max_tokens, odd.prompt_chars) == ("gemini-2.5-flash", True, None, 0)


# -- whole responses -------------------------------------------------------------------------

RESPONSES = {
    # prompt 9, candidates 9 + thoughts 34
    "generate_content_text.json": (9, 43, None, 34, "gemini-2.5-flash", None),
    "generate_content_function_call.json": (29, 15 + 893, None, 893, "gemini-3-pro-preview", None),
    "error_400_api_key_invalid.json": (
        None, None, None, None, None, "INVALID_ARGUMENT: API key not valid. Please pass a valid API key."
    ),
    "error_404_model_not_found.json": (
        None,
        None,
        None,
        None,
        None,
        "NOT_FOUND: models/gemini-3.6-flahs is not found for API version v1beta, or is not supported for "
        "generateContent. Call ModelService.ListModels to see the list of available models and their supported "
        "methods.",
    ),
    "error_429_resource_exhausted.json": (
        None, None, None, None, None, "RESOURCE_EXHAUSTED: You exceeded your current quota, please check your plan."
    ),
}


def test_every_json_fixture_is_checked():
    assert fixture_names("gemini", ".json") == sorted(RESPONSES)


@pytest.mark.parametrize("name", sorted(RESPONSES))
def test_response_facts(name):
    facts = gemini.response_facts(GENERATE, fixture_json("gemini", name))
    u = facts.usage
    got = (u.input_tokens, u.output_tokens, u.cache_read_tokens, u.reasoning_tokens, facts.response_model, facts.error)
    assert got == RESPONSES[name]
    total = (fixture_json("gemini", name).get("usageMetadata") or {}).get("totalTokenCount")
    if total is not None:  # totalTokenCount = prompt + candidates + thoughts: nothing counted twice or lost
        assert u.input_tokens + u.output_tokens == total


@pytest.mark.parametrize("name", sorted(p.name for p in (FIXTURES / "gemini").glob("*.headers.json")))
def test_recorded_status_agrees_with_body(name):
    recorded = fixture_json("gemini", name)
    body_name = name.replace(".headers.json", ".sse" if "stream" in name else ".json")
    if body_name.endswith(".json"):
        facts = gemini.response_facts(GENERATE, fixture_json("gemini", body_name))
        assert (facts.error is None) is (recorded["status"]["code"] == 200)
    else:
        assert recorded["headers"]["content-type"] == "text/event-stream"


def test_response_facts_usage_details():
    usage = {
        "promptTokenCount": 1200,
        "cachedContentTokenCount": 1000,
        "candidatesTokenCount": 50,
        "toolUsePromptTokenCount": 300,
        "thoughtsTokenCount": 20,
        "totalTokenCount": 1570,
    }
    u = gemini.response_facts(GENERATE, {"usageMetadata": usage, "modelVersion": "gemini-2.5-pro"}).usage
    assert (u.input_tokens, u.output_tokens, u.cache_read_tokens, u.reasoning_tokens) == (1500, 70, 1000, 20)
    assert u.input_tokens + u.output_tokens == usage["totalTokenCount"]


def test_response_facts_embeddings():
    path = "/v1/projects/p/locations/global/publishers/google/models/gemini-embedding-001:embedContent"
    route = gemini.route(VERTEX, path)
    vertex = {"embedding": {"values": [0.1, -0.2]}, "usageMetadata": {"promptTokenCount": 5, "totalTokenCount": 5}}
    u = gemini.response_facts(route, vertex).usage
    assert (u.input_tokens, u.output_tokens) == (5, 0)
    api = gemini.response_facts(route, {"embedding": {"values": [0.1]}})  # the Gemini API reports no usage
    assert not api.usage.known and api.error is None


def test_response_facts_of_buffered_json_array():
    events = sse_events("stream_generate_content_usage_growing.sse")
    facts = gemini.response_facts(STREAM, json.loads(as_json_array(events)))
    assert (facts.usage.input_tokens, facts.usage.output_tokens, facts.usage.reasoning_tokens) == (18, 115, 35)
    assert facts.response_model == "gemini-2.5-flash" and facts.error is None
    # a failed non-SSE stream is the error object wrapped in a one-element array
    wrapped = gemini.response_facts(STREAM, [fixture_json("gemini", "error_429_resource_exhausted.json")])
    assert wrapped.error == RESPONSES["error_429_resource_exhausted.json"][-1]


@pytest.mark.parametrize("body", [None, "oops", 3, [], ["x", 1]])
def test_response_facts_of_non_objects(body):
    facts = gemini.response_facts(GENERATE, body)
    assert facts.error is not None and not facts.usage.known


# -- streams ---------------------------------------------------------------------------------

STREAMS = {
    # (input, output, reasoning, text, tool calls, model): usage is the LAST chunk's
    "stream_generate_content_text.sse": (13, 8, None, "The capital of France is Paris.\n", [], "gemini-2.0-flash-exp"),
    "stream_generate_content_usage_growing.sse": (
        18, 80 + 35, 35, "\n".join(str(i) for i in range(1, 31)), [], "gemini-2.5-flash"
    ),
    "stream_generate_content_function_call.sse": (
        29, 10 + 202, 202, "", [{"id": None, "name": "get_country", "arguments": "{}"}], "gemini-3-pro-preview"
    ),
    "stream_generate_content_after_function_response.sse": (
        257, 8, None, "The capital of Mexico is Mexico City.", [], "gemini-3-pro-preview"
    ),
    "vertex_stream_generate_content.sse": (5, 1 + 100, 100, "OK", [], "gemini-3-flash-preview"),
}


def route_for(name: str):
    url = urlsplit(fixture_json("gemini", name.replace(".sse", ".request.json"))["url"])
    return gemini.route(url.hostname, url.path)


def test_every_sse_fixture_is_checked():
    assert fixture_names("gemini", ".sse") == sorted(STREAMS)


@pytest.mark.parametrize("name", sorted(STREAMS))
def test_stream_any_split(name):
    data = fixture_bytes("gemini", name)
    assert b"\r\n\r\n" in data  # CRLF framing: max_piece=1 cuts between every \r and \n
    route = route_for(name)
    states = states_of(route, data, "text/event-stream")
    first = states[0]
    assert all(state == first for state in states)
    inp, out, reasoning, text, calls, model = STREAMS[name]
    u = first.usage
    assert (u.input_tokens, u.output_tokens, u.reasoning_tokens, u.cache_read_tokens) == (inp, out, reasoning, None)
    assert "".join(first.output.text) == text
    assert list(first.output.tool_calls.values()) == calls
    assert first.response_model == model
    assert (first.output.finish_reason, first.finished, first.error) == ("STOP", True, None)
    assert first.events == len(sse_events(name))
    assert u.input_tokens + u.output_tokens == sse_events(name)[-1]["usageMetadata"]["totalTokenCount"]


@pytest.mark.parametrize(
    "name, outputs",
    [
        ("stream_generate_content_text.sse", [(15, 0), (15, 0), (13, 8)]),  # the prompt count drops 15 -> 13
        ("stream_generate_content_usage_growing.sse", [(18, 66), (18, 114), (18, 115)]),
        ("stream_generate_content_after_function_response.sse", [(55, 4), (55, 8), (257, 8)]),
    ],
)
def test_stream_usage_is_cumulative_latest_wins(name, outputs):
    state = StreamState()
    seen = []
    for event in sse_events(name):
        gemini.stream_event(STREAM, state, None, event)
        seen.append((state.usage.input_tokens, state.usage.output_tokens))
        assert state.finished is (len(seen) == len(outputs))
    assert seen == outputs


@pytest.mark.parametrize("name", sorted(STREAMS))
def test_json_array_stream_matches_sse(name):
    route = route_for(name)
    sse_state = parse_stream(route, [fixture_bytes("gemini", name)])
    data = as_json_array(sse_events(name))
    assert data.startswith(b"[{\n  ") and data.count(b"{") >= 4 * len(sse_events(name))  # pretty, nested
    for state in states_of(route, data, "application/json; charset=UTF-8"):
        assert state == sse_state


TRICKY = ['Ünïcödé {"a": [1, {"b": "}"}]} ', 'say \\"hi\\" \u2014 {{', "}}] 🌍 ", "ends in a backslash \\"]


def tricky_events() -> list[dict]:
    """usage_growing's chunks with text full of braces, quotes, escapes and non-ASCII, plus a function call."""
    events = sse_events("stream_generate_content_usage_growing.sse")
    for event, text in zip(events, TRICKY, strict=False):
        event["candidates"][0]["content"]["parts"] = [{"text": "thinking {about} it", "thought": True}, {"text": text}]
    call = {"name": "lookup", "args": {"q": 'a "{quoted}" ünïcödé', "nested": {"list": [{"x": "]"}, None]}}}
    events[-1]["candidates"][0]["content"]["parts"].append({"functionCall": call})
    return events


def test_json_array_stream_with_tricky_strings():
    events = tricky_events()
    sse_state = parse_stream(STREAM, [as_sse(events)])
    data = as_json_array(events)
    assert "ü".encode() in data and b'\\"' in data
    states = states_of(STREAM, data, "application/json")
    assert all(state == sse_state for state in states)
    state = states[0]
    assert "".join(state.output.text) == "".join(TRICKY[:3])  # the thought parts are left out
    call = state.output.tool_calls[0]
    sent = events[-1]["candidates"][0]["content"]["parts"][-1]["functionCall"]
    assert (call["name"], json.loads(call["arguments"])) == ("lookup", sent["args"])
    assert (state.usage.output_tokens, state.finished, state.error) == (115, True, None)


@pytest.mark.parametrize("content_type, build", [("text/event-stream", as_sse), ("application/json", as_json_array)])
def test_truncated_stream(content_type, build):
    events = sse_events("stream_generate_content_usage_growing.sse")
    whole = build(events)
    two = build(events[:2])
    cut_in_third = whole[: len(whole) - 60]
    for seed in SEEDS:
        state = parse_stream(STREAM, random_splits(cut_in_third, random.Random(seed)), content_type=content_type)
        assert state.finished is False and state.output.finish_reason is None
        assert (state.usage.input_tokens, state.usage.output_tokens) == (18, 114)
        assert state.error is not None  # the cut event is malformed
    # cut at an event boundary: nothing malformed, just no finishReason
    boundary = two[:-1] if content_type == "application/json" else two  # drop the array's closing "]"
    state = parse_stream(STREAM, [boundary], content_type=content_type)
    assert (state.finished, state.error, state.events, state.usage.output_tokens) == (False, None, 2, 114)


# -- odd stream events -----------------------------------------------------------------------


@pytest.mark.parametrize(
    "data",
    [
        None,
        "[DONE]",
        [1, 2],
        {"candidates": "x"},
        {"candidates": [None, 3, {"content": "x"}]},
        {"candidates": [{"content": {"parts": "x"}, "finishReason": 7}]},
        {"candidates": [{"content": {"parts": [None, {"text": 5}, {"functionCall": "x"}, {"functionCall": 1}]}}]},
        {"usageMetadata": {"promptTokenCount": "12", "candidatesTokenCount": True}},
        {"usageMetadata": "x", "modelVersion": 5, "error": "x", "promptFeedback": {"blockReason": 1}},
    ],
)
def test_stream_event_never_raises_on_odd_data(data):
    state = StreamState()
    gemini.stream_event(STREAM, state, None, data)
    assert state.events == 1
    assert (state.usage.known, state.finished, state.output.text, state.response_model) == (False, False, [], None)


def test_stream_event_error_block_and_candidates():
    state = StreamState()
    overloaded = {"error": {"code": 503, "message": "The model is overloaded.", "status": "UNAVAILABLE"}}
    gemini.stream_event(STREAM, state, None, overloaded)
    assert state.error == "UNAVAILABLE: The model is overloaded."
    blocked = StreamState()
    chunk = {"promptFeedback": {"blockReason": "PROHIBITED_CONTENT"}, "usageMetadata": {"promptTokenCount": 7}}
    gemini.stream_event(STREAM, blocked, None, chunk)
    assert (blocked.output.finish_reason, blocked.finished) == ("PROHIBITED_CONTENT", True)
    assert (blocked.usage.input_tokens, blocked.usage.output_tokens) == (7, 0)
    two = StreamState()  # candidateCount=2: only the first candidate is the answer
    gemini.stream_event(STREAM, two, None, {"candidates": [
        {"index": 1, "content": {"parts": [{"text": "second"}]}, "finishReason": "MAX_TOKENS"},
        {"content": {"parts": [{"text": "first"}]}},
    ]})
    assert (two.output.text, two.output.finish_reason, two.finished) == (["first"], None, False)


def test_parallel_and_continued_function_calls():
    state = StreamState()
    parts = [
        {"functionCall": {"name": "a", "args": {"x": 1}, "id": "call-a"}},
        {"functionCall": {"name": "b", "args": {}}},
        {"functionCall": {"partialArgs": [{"jsonPath": "$.y"}], "willContinue": False}},  # continues "b"
    ]
    gemini.stream_event(STREAM, state, None, {"candidates": [{"content": {"parts": parts}}]})
    assert list(state.output.tool_calls.values()) == [
        {"id": "call-a", "name": "a", "arguments": '{"x": 1}'},
        {"id": None, "name": "b", "arguments": "{}"},
    ]


def test_hide_usage_passes_bytes_unchanged():
    raw = fixture_bytes("gemini", "vertex_stream_generate_content.sse")
    assert gemini.hide_usage(STREAM, None, sse_events("vertex_stream_generate_content.sse")[0], raw) is raw


# -- gateway errors --------------------------------------------------------------------------


@pytest.mark.parametrize("status, rpc", sorted(RPC_STATUS.items()) + [(418, "INVALID_ARGUMENT"), (599, "INTERNAL")])
def test_error_reply_in_google_shape(status, rpc):
    reply = gemini.error_reply(status, "Budget of team ü exceeded", "budget_exceeded", param="team")
    assert reply.status == status and reply.content_type.startswith("application/json")
    assert reply.body.startswith(b'{\n  "error": {\n    "code": ') and reply.body.endswith(b"}\n")
    err = json.loads(reply.body)["error"]
    assert list(err)[:3] == list(fixture_json("gemini", "error_429_resource_exhausted.json")["error"])[:3]
    assert (err["code"], err["message"], err["status"]) == (status, "Budget of team ü exceeded", rpc)
    assert err["details"][0]["reason"] == "budget_exceeded" and err["details"][0]["metadata"] == {"param": "team"}
    assert gemini.response_facts(GENERATE, json.loads(reply.body)).error == f"{rpc}: Budget of team ü exceeded"


def test_error_reply_status_names_match_google():
    for name in fixture_names("gemini", ".json"):
        if not name.startswith("error_"):
            continue
        recorded = fixture_json("gemini", name)["error"]
        assert RPC_STATUS[recorded["code"]] == recorded["status"]
    details = json.loads(gemini.error_reply(429, "slow down", "rate_limited").body)["error"]["details"]
    assert "metadata" not in details[0]


@pytest.mark.parametrize("status, kind", [(429, genai_errors.ClientError), (503, genai_errors.ServerError)])
def test_error_reply_is_read_by_the_google_sdk(status, kind):
    reply = gemini.error_reply(status, "over budget", "budget_exceeded")
    response = httpx2.Response(reply.status, content=reply.body, headers={"content-type": reply.content_type})
    with pytest.raises(kind) as caught:
        genai_errors.APIError.raise_for_response(response)
    assert (caught.value.code, caught.value.status, caught.value.message) == (status, RPC_STATUS[status], "over budget")
