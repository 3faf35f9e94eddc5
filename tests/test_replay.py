"""Cached answers served in the other mode: every whole fixture as a stream and every stream fixture
as a whole body, held to the capture parser, the specs and the official SDKs."""

from __future__ import annotations

import itertools
import json
import random

import anthropic as anthropic_sdk
import httpx2
import openai as openai_sdk
import pytest
from google import genai
from google.genai import types as genai_types
from specs import ANTHROPIC_MESSAGE, ANTHROPIC_STREAM_EVENT, OPENAI_CHAT, OPENAI_CHAT_CHUNK, conforms
from support import fixture_bytes, fixture_json, fixture_names, parse_stream, random_splits

from providers import custom_provider, replay_for
from providers.anthropic.replay import AnthropicReplay
from providers.anthropic.wire import anthropic
from providers.base import Route, Usage
from providers.gemini.replay import GeminiReplay
from providers.gemini.wire import gemini
from providers.openai.compatible import COMPATIBLE
from providers.openai.replay import OpenAIChatReplay, openai_chunks, openai_completion
from providers.openai.wire import openai
from providers.replay_sse import read_events

COMPAT = {p.name: p for p in COMPATIBLE}
GEMINI_STREAM = gemini.route("generativelanguage.googleapis.com", "/v1beta/models/gemini-2.5-flash:streamGenerateContent")
MESSAGES = Route(anthropic, "messages")


def route(folder: str, name: str) -> Route:
    if folder == "anthropic":
        return MESSAGES
    if folder == "gemini":
        return GEMINI_STREAM
    prefix = name.split("_")[0]  # azure_, groq_, ... pick the compatible host's dialect; chat_ is OpenAI's
    return Route(COMPAT.get({"huggingface": "together"}.get(prefix, prefix), openai), "chat.completions")


def _chat(folder: str, suffix: str) -> list[tuple[str, str]]:
    return [(folder, n) for n in fixture_names(folder, suffix) if "chat_" in n and not n.startswith("error_")]


WHOLES = [
    *_chat("openai", ".json"),
    *_chat("openai-compatible", ".json"),
    *[("anthropic", n) for n in fixture_names("anthropic", ".json") if n.startswith("messages_")],
    *[("gemini", n) for n in fixture_names("gemini", ".json") if n.startswith("generate_content_")],
]
STREAMS = [
    *_chat("openai", ".sse"),
    *_chat("openai-compatible", ".sse"),
    *[("anthropic", n) for n in fixture_names("anthropic", ".sse")],
    *[("gemini", n) for n in fixture_names("gemini", ".sse")],
]
# Streams that end in an error event: never served whole.
ERRORED = {"openrouter_chat_stream_midstream_error.sse", "messages_stream_error_overloaded.sse"}
COMPLETE = [s for s in STREAMS if s[1] not in ERRORED]
# OpenAI's own captures (OpenAI and Azure) are held to OpenAI's spec; other hosts add their own fields.
OPENAI_OWN = [s for s in COMPLETE if s[0] == "openai"]


def ids(cases):
    return [name for _, name in cases]


def test_fixture_lists_cover_each_dialect():
    assert len([w for w in WHOLES if w[0] == "openai"]) >= 5 and len(STREAMS) >= 30
    assert {"anthropic", "gemini", "openai", "openai-compatible"} == {f for f, _ in WHOLES} == {f for f, _ in STREAMS}


def load(folder: str, name: str):
    return fixture_json(folder, name) if name.endswith(".json") else fixture_bytes(folder, name)


# -- the facts both sides must agree on --------------------------------------------------------------


def whole_facts(r: Route, body: dict) -> tuple:
    """(text, tool calls, finish reason, usage) of a whole body; usage via the provider's response_facts."""
    usage = r.provider.response_facts(r, body).usage
    if r.endpoint == "messages":
        text = "".join(b["text"] for b in body["content"] if b["type"] == "text")
        calls = [(b["id"], b["name"], b["input"]) for b in body["content"] if b["type"] == "tool_use"]
        return text, calls, body["stop_reason"], usage
    if r.endpoint == "chat.completions":
        choice = next(c for c in body["choices"] if c["index"] == 0)
        content = choice["message"].get("content")
        if isinstance(content, list):  # Mistral's typed parts
            content = "".join(p["text"] for p in content if p.get("type") == "text")
        calls = [(c["id"], c["function"]["name"], json.loads(c["function"]["arguments"] or "{}"))
                 for c in choice["message"].get("tool_calls") or ()]
        return content or "", calls, choice["finish_reason"], usage
    candidate = next(c for c in body["candidates"] if c.get("index", 0) == 0)
    parts = candidate["content"]["parts"]
    text = "".join(p["text"] for p in parts if "text" in p and not p.get("thought"))
    calls = [(p["functionCall"].get("id"), p["functionCall"]["name"], p["functionCall"].get("args", {}))
             for p in parts if "functionCall" in p]
    return text, calls, candidate["finishReason"], usage


def stream_facts(state) -> tuple:
    calls = [(c["id"], c["name"], json.loads(c["arguments"] or "{}")) for c in state.output.tool_calls.values()]
    return "".join(state.output.text), calls, state.output.finish_reason, state.usage


def as_replayed(body: dict) -> dict:
    """A chat.completion as a replay gives it back: the fields OpenAI always sends filled in (Azure's 2023 and
    Groq's bodies leave some out) and top-level nulls left out (Groq's usage_breakdown)."""
    choices = [{"logprobs": None} | c | {"message": {"content": None, "refusal": None} | c["message"]}
               for c in body["choices"]]
    return {k: v for k, v in body.items() if v is not None} | {"choices": choices}


# -- whole -> stream ---------------------------------------------------------------------------------


@pytest.mark.parametrize("folder, name", WHOLES, ids=ids(WHOLES))
def test_whole_as_stream_gives_the_capture_parser_the_same_answer(folder, name):
    body, r = load(folder, name), route(folder, name)
    raw = replay_for(r.provider).as_stream(body)
    state = parse_stream(r, random_splits(raw, random.Random(name)))
    assert state.finished and state.error is None
    assert stream_facts(state) == whole_facts(r, body)
    assert state.usage.known
    assert state.response_model == r.provider.response_facts(r, body).response_model


SPEC_WHOLES = [w for w in WHOLES if w[0] in ("openai", "anthropic")]  # Groq's service_tier "on_demand" is its own


@pytest.mark.parametrize("folder, name", SPEC_WHOLES, ids=ids(SPEC_WHOLES))
def test_whole_as_stream_conforms_event_by_event(folder, name):
    body = load(folder, name)
    raw = replay_for(route(folder, name).provider).as_stream(body)
    events = read_events(raw)
    if folder == "anthropic":
        assert raw.endswith(b"event: message_stop\ndata: {\"type\":\"message_stop\"}\n\n")
        assert [n for n, _ in events] == [d["type"] for _, d in events]
        for _, data in events:
            conforms("anthropic", ANTHROPIC_STREAM_EVENT, data)
        return
    assert raw.endswith(b"\n\ndata: [DONE]\n\n") and events[-1] == (None, "[DONE]")
    for _, chunk in events[:-1]:
        conforms("openai", OPENAI_CHAT_CHUNK, chunk)
        assert chunk["object"] == "chat.completion.chunk" and chunk["id"] == body["id"]


SPEC_STREAMS = [s for s in COMPLETE if s[0] in ("openai", "anthropic")]


@pytest.mark.parametrize("folder, name", SPEC_STREAMS, ids=ids(SPEC_STREAMS))
def test_replayed_stream_fixture_conforms_event_by_event(folder, name):
    """Streams re-made from the whole bodies of real streams: thinking and signature deltas, server tool
    results, container in message_delta, logprobs, refusals, n=3."""
    replay = replay_for(route(folder, name).provider)
    events = read_events(replay.as_stream(replay.as_whole(fixture_bytes(folder, name))))
    spec, schema = ("anthropic", ANTHROPIC_STREAM_EVENT) if folder == "anthropic" else ("openai", OPENAI_CHAT_CHUNK)
    for _, data in events[:-1] if folder == "openai" else events:
        conforms(spec, schema, data)


def test_gemini_candidates_stream_one_after_another():
    body = {"candidates": [
        {"content": {"parts": [{"text": "Hi"}, {"functionCall": {"name": "f", "args": {"a": 1}}}], "role": "model"},
         "finishReason": "STOP"},
        {"content": {"parts": [{"text": "Hello"}], "role": "model"}, "finishReason": "MAX_TOKENS", "index": 1},
        {"finishReason": "SAFETY", "index": 2},
    ], "usageMetadata": {"promptTokenCount": 3, "candidatesTokenCount": 4, "totalTokenCount": 7}, "modelVersion": "m"}
    raw = GeminiReplay().as_stream(body)
    events = [data for _, data in read_events(raw)]
    assert [[c.get("index", 0) for c in e["candidates"]] for e in events] == [[0, 1], [0, 1, 2]]
    assert [c.get("finishReason") for c in events[0]["candidates"]] == [None, None]
    assert GeminiReplay().as_whole(raw) == body
    state = parse_stream(GEMINI_STREAM, [raw])
    assert stream_facts(state) == ("Hi", [(None, "f", {"a": 1})], "STOP", Usage(3, 4, None, None, None, None))
    assert GeminiReplay().as_whole(without_last_event(raw)) is None


@pytest.mark.parametrize("name", [n for n in fixture_names("gemini", ".json") if n.startswith("generate_content_")])
def test_gemini_whole_as_stream_is_crlf_framed_responses(name):
    body = fixture_json("gemini", name)
    raw = GeminiReplay().as_stream(body)
    assert raw.endswith(b"}\r\n\r\n") and b"event:" not in raw and b"[DONE]" not in raw
    assert raw.count(b"\r\n\r\n") == raw.count(b"data: ") == len(body["candidates"][0]["content"]["parts"])
    events = [data for _, data in read_events(raw)]
    for event in events:
        genai_types.GenerateContentResponse.model_validate(event)
        assert event["responseId"] == body["responseId"] and event["modelVersion"] == body["modelVersion"]
    assert [e for e in events if "usageMetadata" in e] == [events[-1]]
    assert events[-1]["candidates"][0]["finishReason"] == "STOP"


@pytest.mark.parametrize("name", ["chat_completion_text.json", "chat_completion_parallel_tool_calls.json"])
def test_openai_usage_only_when_asked(name):
    body = fixture_json("openai", name)
    asked = openai_chunks(body, include_usage=True)
    assert [c["usage"] for c in asked[:-1]] == [None] * (len(asked) - 1)
    assert asked[-1]["choices"] == [] and asked[-1]["usage"] == body["usage"]
    unasked = openai_chunks(body, include_usage=False)
    assert len(unasked) == len(asked) - 1 and all("usage" not in c for c in unasked)
    raw = OpenAIChatReplay().as_stream(body, include_usage=False)
    assert b"usage" not in raw
    assert parse_stream(route("openai", name), [raw]).usage == Usage()


def test_openai_tool_call_header_then_arguments():
    body = fixture_json("openai", "chat_completion_parallel_tool_calls.json")
    deltas = [c["choices"][0]["delta"] for c in openai_chunks(body, include_usage=False)]
    calls = body["choices"][0]["message"]["tool_calls"]
    assert deltas[0] == {"role": "assistant", "content": None, "refusal": None}
    assert deltas[1:5] == [
        {"tool_calls": [{"index": 0, "id": calls[0]["id"], "type": "function",
                         "function": {"name": "GetWeatherArgs", "arguments": ""}}]},
        {"tool_calls": [{"index": 0, "function": {"arguments": calls[0]["function"]["arguments"]}}]},
        {"tool_calls": [{"index": 1, "id": calls[1]["id"], "type": "function",
                         "function": {"name": "get_stock_price", "arguments": ""}}]},
        {"tool_calls": [{"index": 1, "function": {"arguments": calls[1]["function"]["arguments"]}}]},
    ]
    assert deltas[5:] == [{}]


def test_openai_n3_every_choice_streams_and_finishes():
    body = fixture_json("openai", "chat_completion_n3.json")
    chunks = openai_chunks(body, include_usage=True)
    finishes = [(c["choices"][0]["index"], c["choices"][0]["finish_reason"]) for c in chunks if c["choices"]
                and c["choices"][0]["finish_reason"]]
    assert finishes == [(0, "stop"), (1, "stop"), (2, "stop")]
    assert openai_completion(chunks) == body


# -- stream -> whole ---------------------------------------------------------------------------------


@pytest.mark.parametrize("folder, name", COMPLETE, ids=ids(COMPLETE))
def test_stream_as_whole_says_what_the_stream_said(folder, name):
    raw, r = load(folder, name), route(folder, name)
    body = replay_for(r.provider).as_whole(raw)
    assert body is not None
    state = parse_stream(r, [raw])
    assert whole_facts(r, body) == stream_facts(state)
    assert r.provider.response_facts(r, body).response_model == state.response_model


@pytest.mark.parametrize("folder, name", OPENAI_OWN, ids=ids(OPENAI_OWN))
def test_openai_stream_as_whole_conforms(folder, name):
    body = OpenAIChatReplay().as_whole(fixture_bytes(folder, name))
    conforms("openai", OPENAI_CHAT, body)
    assert body["object"] == "chat.completion" and body["id"] and body["created"] and body["model"]
    openai_sdk.types.chat.ChatCompletion.model_validate(body)


@pytest.mark.parametrize("name", [n for n in fixture_names("anthropic", ".sse") if n not in ERRORED])
def test_anthropic_stream_as_whole_conforms(name):
    body = AnthropicReplay().as_whole(fixture_bytes("anthropic", name))
    conforms("anthropic", ANTHROPIC_MESSAGE, body)
    anthropic_sdk.types.Message.model_validate(body)


@pytest.mark.parametrize("name", fixture_names("gemini", ".sse"))
def test_gemini_stream_as_whole_merges_text(name):
    body = GeminiReplay().as_whole(fixture_bytes("gemini", name))
    parts = body["candidates"][0]["content"]["parts"]
    assert all(not (a.keys() <= {"text"} and b.keys() <= {"text"}) for a, b in itertools.pairwise(parts))
    assert {"text": ""} not in parts
    last = [data for _, data in read_events(fixture_bytes("gemini", name))][-1]
    assert body["usageMetadata"] == last["usageMetadata"]
    assert (body["modelVersion"], body["responseId"]) == (last["modelVersion"], last["responseId"])


def test_gemini_stream_as_whole_keeps_function_call_and_signature():
    body = GeminiReplay().as_whole(fixture_bytes("gemini", "stream_generate_content_function_call.sse"))
    (part,) = body["candidates"][0]["content"]["parts"]
    assert part["functionCall"] == {"name": "get_country", "args": {}} and part["thoughtSignature"]
    assert body["candidates"][0]["finishReason"] == "STOP"


def test_openai_stream_as_whole_keeps_logprobs_refusal_and_n3():
    replay = OpenAIChatReplay()
    logprobs = replay.as_whole(fixture_bytes("openai", "chat_completion_stream_logprobs_usage.sse"))
    assert [t["token"] for t in logprobs["choices"][0]["logprobs"]["content"]] == ["Foo", "!"]
    assert replay.as_whole(replay.as_stream(logprobs)) == logprobs
    refusal = replay.as_whole(fixture_bytes("openai", "chat_completion_stream_refusal_usage.sse"))["choices"][0]
    assert refusal["message"]["content"] is None and refusal["message"]["refusal"].startswith("I'm sorry")
    n3 = replay.as_whole(fixture_bytes("openai", "chat_completion_stream_n3_usage.sse"))
    assert [c["index"] for c in n3["choices"]] == [0, 1, 2]
    assert all(json.loads(c["message"]["content"])["city"] == "San Francisco" for c in n3["choices"])


def test_openai_stream_as_whole_first_non_empty_ids():
    """Azure's first chunk has id "" and created 0; Groq compound's last id is "stub" and its usage is in x_groq."""
    azure = OpenAIChatReplay().as_whole(fixture_bytes("openai", "azure_chat_completion_stream_model_router.sse"))
    assert azure["id"].startswith("chatcmpl-") and azure["created"] > 0 and azure["model"]
    groq = OpenAIChatReplay().as_whole(fixture_bytes("openai-compatible", "groq_chat_stream_compound_x_groq_usage.sse"))
    assert groq["id"] != "stub" and groq["usage"]["prompt_tokens"] == 5003


# -- round trips -------------------------------------------------------------------------------------


@pytest.mark.parametrize("folder, name", WHOLES, ids=ids(WHOLES))
def test_whole_stream_whole_round_trip(folder, name):
    body, replay = load(folder, name), replay_for(route(folder, name).provider)
    expected = as_replayed(body) if folder.startswith("openai") else body
    assert replay.as_whole(replay.as_stream(body)) == expected
    if folder.startswith("openai"):
        unasked = replay.as_whole(replay.as_stream(body, include_usage=False))
        assert unasked == {k: v for k, v in expected.items() if k != "usage"}


@pytest.mark.parametrize("folder, name", COMPLETE, ids=ids(COMPLETE))
def test_stream_whole_stream_whole_round_trip(folder, name):
    replay = replay_for(route(folder, name).provider)
    body = replay.as_whole(load(folder, name))
    assert replay.as_whole(replay.as_stream(body)) == body


# -- incomplete and errored streams are never served whole ------------------------------------------


def without_last_event(raw: bytes) -> bytes:
    sep = b"\r\n\r\n" if b"\r\n\r\n" in raw else b"\n\n"
    events = [e for e in raw.split(sep) if e.strip()]
    return sep.join(events[:-1]) + sep


@pytest.mark.parametrize("folder, name", STREAMS, ids=ids(STREAMS))
def test_incomplete_stream_is_not_served_whole(folder, name):
    raw, replay = load(folder, name), replay_for(route(folder, name).provider)
    assert replay.as_whole(raw[: len(raw) // 2]) is None
    assert replay.as_whole(without_last_event(raw)) is None
    assert replay.as_whole(b"") is None
    if name in ERRORED:
        assert replay.as_whole(raw) is None


def test_openai_completion_needs_a_finish_reason_for_every_choice():
    chunks = openai_chunks(fixture_json("openai", "chat_completion_n3.json"), include_usage=True)
    last_finish = max(i for i, c in enumerate(chunks) if c["choices"] and c["choices"][0]["finish_reason"])
    assert openai_completion(chunks[:last_finish]) is None
    assert openai_completion(chunks[: last_finish + 1]) is not None
    assert openai_completion([]) is None


def test_anthropic_cut_tool_input_is_not_served_whole():
    raw = fixture_bytes("anthropic", "messages_stream_tool_use.sse")
    lines = [line for line in raw.split(b"\n\n") if b'"units' not in line]  # drop one input_json_delta
    assert AnthropicReplay().as_whole(b"\n\n".join(lines)) is None


# -- the official SDKs read the replays --------------------------------------------------------------


def http_client(content: bytes, content_type: str) -> httpx2.Client:
    def handler(request: httpx2.Request) -> httpx2.Response:
        return httpx2.Response(200, content=content, headers={"content-type": content_type})

    return httpx2.Client(transport=httpx2.MockTransport(handler))


def openai_client(content: bytes, content_type: str = "text/event-stream") -> openai_sdk.OpenAI:
    return openai_sdk.OpenAI(api_key="test", base_url="http://gateway.test/v1", max_retries=0,
                             http_client=http_client(content, content_type))


def anthropic_client(content: bytes, content_type: str = "text/event-stream") -> anthropic_sdk.Anthropic:
    return anthropic_sdk.Anthropic(api_key="test", base_url="http://gateway.test", max_retries=0,
                                   http_client=http_client(content, content_type))


def genai_client(content: bytes, content_type: str = "text/event-stream") -> genai.Client:
    options = genai_types.HttpOptions(base_url="http://gateway.test", httpx_client=http_client(content, content_type))
    return genai.Client(api_key="test", http_options=options)


CHAT = {"model": "gpt-4o", "messages": [{"role": "user", "content": "hi"}]}
OPENAI_WHOLES = [w for w in WHOLES if w[0].startswith("openai")]


@pytest.mark.parametrize("include_usage", [True, False])
@pytest.mark.parametrize("folder, name", OPENAI_WHOLES, ids=ids(OPENAI_WHOLES))
def test_openai_sdk_assembles_the_replayed_stream_into_the_body(folder, name, include_usage):
    body = fixture_json(folder, name)
    raw = OpenAIChatReplay().as_stream(body, include_usage=include_usage)
    with openai_client(raw).chat.completions.stream(**CHAT) as stream:
        final = stream.get_final_completion()
    for got, want in zip(final.choices, body["choices"], strict=True):
        message = want["message"]
        assert (got.index, got.finish_reason) == (want["index"], want["finish_reason"])
        assert (got.message.content, got.message.refusal) == (message.get("content"), message.get("refusal"))
        assert [(c.id, c.function.name, c.function.arguments) for c in got.message.tool_calls or ()] == [
            (c["id"], c["function"]["name"], c["function"]["arguments"]) for c in message.get("tool_calls") or ()]
    assert (final.id, final.model, final.created) == (body["id"], body["model"], body["created"])
    want_usage = body["usage"] if include_usage else None
    assert (final.usage.model_dump(exclude_unset=True) if final.usage else None) == want_usage


@pytest.mark.parametrize("folder, name", [s for s in COMPLETE if s[0].startswith("openai")],
                         ids=ids([s for s in COMPLETE if s[0].startswith("openai")]))
def test_openai_sdk_reads_the_whole_body_of_a_stream(folder, name):
    body = OpenAIChatReplay().as_whole(fixture_bytes(folder, name))
    completion = openai_client(json.dumps(body).encode(), "application/json").chat.completions.create(**CHAT)
    assert completion.choices[0].message.content == body["choices"][0]["message"]["content"]
    assert completion.choices[0].finish_reason == body["choices"][0]["finish_reason"]


@pytest.mark.parametrize("name", [n for n in fixture_names("anthropic", ".json") if n.startswith("messages_")])
def test_anthropic_sdk_final_message_is_the_body(name):
    body = fixture_json("anthropic", name)
    client = anthropic_client(AnthropicReplay().as_stream(body))
    with client.messages.stream(model="claude", max_tokens=100, messages=[{"role": "user", "content": "hi"}]) as s:
        kinds = [event.type for event in s]
        final = s.get_final_message().to_dict(mode="json")
    assert kinds[0] == "message_start" and kinds[-1] == "message_stop"
    assert {k: final[k] for k in body} == body


@pytest.mark.parametrize("name", [n for n in fixture_names("anthropic", ".sse") if n not in ERRORED])
def test_anthropic_sdk_reads_the_whole_body_of_a_stream(name):
    raw = fixture_bytes("anthropic", name)
    body = AnthropicReplay().as_whole(raw)
    client = anthropic_client(json.dumps(body).encode(), "application/json")
    message = client.messages.create(model="claude", max_tokens=100, messages=[{"role": "user", "content": "hi"}])
    # What the SDK would have assembled from the live stream is what the whole body says.
    with anthropic_client(raw).messages.stream(model="claude", max_tokens=100, messages=[]) as stream:
        live = stream.get_final_message()
    # The SDK sets stop_details from message_delta even when the API leaves it out.
    assert message.to_dict(mode="json", exclude_none=True) == live.to_dict(mode="json", exclude_none=True)


@pytest.mark.parametrize("name", [n for n in fixture_names("anthropic", ".sse") if n not in ERRORED])
def test_anthropic_sdk_reads_a_stream_replayed_from_a_stream(name):
    """Thinking, server tools and containers, which no whole fixture has, through the SDK's accumulator."""
    body = AnthropicReplay().as_whole(fixture_bytes("anthropic", name))
    client = anthropic_client(AnthropicReplay().as_stream(body))
    with client.messages.stream(model="claude", max_tokens=100, messages=[{"role": "user", "content": "hi"}]) as s:
        final = s.get_final_message().to_dict(mode="json")
    assert {k: final[k] for k in body} == body


@pytest.mark.parametrize("name", [n for n in fixture_names("gemini", ".json") if n.startswith("generate_content_")])
def test_genai_sdk_reads_the_replayed_stream(name):
    body = fixture_json("gemini", name)
    chunks = list(genai_client(GeminiReplay().as_stream(body)).models.generate_content_stream(
        model="gemini-2.5-flash", contents="hi"))
    whole = genai_types.GenerateContentResponse.model_validate(body)
    calls = [c for chunk in chunks for c in chunk.function_calls or ()]
    assert calls == (whole.function_calls or [])
    assert "".join(chunk.text or "" for chunk in chunks if not chunk.function_calls) == (whole.text or "")
    assert chunks[-1].usage_metadata == whole.usage_metadata
    assert chunks[-1].candidates[0].finish_reason == whole.candidates[0].finish_reason


@pytest.mark.parametrize("name", fixture_names("gemini", ".sse"))
def test_genai_sdk_reads_the_whole_body_of_a_stream(name):
    raw = fixture_bytes("gemini", name)
    body = GeminiReplay().as_whole(raw)
    whole = genai_client(json.dumps(body).encode(), "application/json").models.generate_content(
        model="gemini-2.5-flash", contents="hi")
    live = list(genai_client(raw).models.generate_content_stream(model="gemini-2.5-flash", contents="hi"))
    answer = [(p.text, p.function_call) for p in whole.candidates[0].content.parts]
    streamed = [(p.text, p.function_call) for c in live for p in c.candidates[0].content.parts if p.text != ""]
    if all(p.text is not None for c in live for p in c.candidates[0].content.parts):
        streamed = [("".join(t for t, _ in streamed), None)]  # text-only: one merged part
    assert answer == streamed
    assert whole.usage_metadata == live[-1].usage_metadata
    assert whole.candidates[0].finish_reason == live[-1].candidates[0].finish_reason
    assert (whole.model_version, whole.response_id) == (live[-1].model_version, live[-1].response_id)


# -- which replay serves which provider --------------------------------------------------------------


def test_replay_for_each_provider():
    assert isinstance(replay_for(openai), OpenAIChatReplay)
    assert all(isinstance(replay_for(p), OpenAIChatReplay) for p in COMPATIBLE)
    assert isinstance(replay_for(custom_provider("vllm", "localhost", dialect="openai")), OpenAIChatReplay)
    assert isinstance(replay_for(anthropic), AnthropicReplay)
    vertex = anthropic.route("us-east5-aiplatform.googleapis.com",
                             "/v1/projects/p/locations/us-east5/publishers/anthropic/models/claude-x:streamRawPredict")
    assert isinstance(replay_for(vertex.provider), AnthropicReplay)
    assert isinstance(replay_for(gemini), GeminiReplay)
    assert replay_for(custom_provider("ollama", "localhost", dialect="ollama")) is None
    assert replay_for(object()) is None


@pytest.mark.parametrize("provider, endpoint, served", [
    (openai, "chat.completions", True), (openai, "responses", False), (openai, "embeddings", False),
    (anthropic, "messages", True), (gemini, "generateContent", True), (gemini, "streamGenerateContent", True),
    (gemini, "embedContent", False),
])
def test_replay_for_endpoint(provider, endpoint, served):
    assert (replay_for(provider, endpoint) is not None) is served
