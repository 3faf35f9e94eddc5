"""The Anthropic front: captured Anthropic requests become OpenAI chat bodies, captured OpenAI replies and
streams become Messages and Messages SSE that the spec, providers.anthropic.wire and the anthropic SDK accept."""

from __future__ import annotations

import copy
import json
import random

import anthropic as anthropic_sdk
import httpx2 as httpx  # the http client the installed anthropic SDK is built on
import pytest
from specs import ANTHROPIC_ERROR, ANTHROPIC_MESSAGE, ANTHROPIC_STREAM_EVENT, OPENAI_REQUEST, conforms
from support import FIXTURES, fixture_bytes, fixture_json, parse_stream, random_splits

from providers.anthropic.front import to_chat
from providers.anthropic.reply import MessagesStream, error_event, from_chat
from providers.anthropic.wire import anthropic
from providers.base import Route, dig
from providers.chat import InvalidRequest, UnsupportedParam
from providers.openai.wire import openai
from providers.sse import SSEDecoder

ANTHROPIC = Route(anthropic, "messages")
CHAT = Route(openai, "chat.completions")
REQUESTS = sorted(p.name for p in (FIXTURES / "anthropic").glob("*.request.json"))
COMPLETIONS = [("openai", p.name) for p in sorted((FIXTURES / "openai").glob("chat_completion_*.json"))
               if not p.name.endswith((".request.json", ".headers.json"))] + [
    ("openai", "azure_chat_completion_2023.json"),
    ("openai-compatible", "groq_chat_completion_tool_call.json"),
    ("openai-compatible", "ollama_v1_chat_completion.json"),
    ("openai-compatible", "xai_chat_completion_tool_call_reasoning.json"),
]
STREAMS = [("openai", p.name) for p in sorted((FIXTURES / "openai").glob("*chat_completion_stream_*.sse"))] + [
    ("openai-compatible", name) for name in (
        "deepseek_chat_stream_reasoning_include_usage.sse", "groq_chat_stream_tool_call.sse",
        "mistral_chat_stream_thinking.sse", "openrouter_chat_stream_anthropic_cache_control.sse",
        "xai_chat_stream_tool_call_reasoning.sse",
    )
]
TOOL = {"name": "get_weather", "description": "Weather for a city",
        "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}
CALL = {"type": "tool_use", "id": "toolu_01", "name": "get_weather", "input": {"city": "Paris"}}
PNG = {"type": "base64", "media_type": "image/png", "data": "iVBORw0KGgo="}


def request(**extra):
    return {"model": "claude-sonnet-4-5", "max_tokens": 100, "messages": [{"role": "user", "content": "hi"}]} | extra


def chat(**extra):
    body, notes = to_chat(request(**extra))
    return body, notes


def with_tool_turns(*user_blocks):
    """A conversation where the assistant called get_weather and the user answers with user_blocks."""
    return copy.deepcopy(request(tools=[TOOL], messages=[
        {"role": "user", "content": "Weather in Paris?"},
        {"role": "assistant", "content": [{"type": "text", "text": "Let me look."}, CALL]},
        {"role": "user", "content": list(user_blocks)},
    ]))


def assert_tool_messages_follow_their_calls(messages):
    open_calls: set[str] = set()
    for msg in messages:
        if msg["role"] == "tool":
            assert msg["tool_call_id"] in open_calls, msg
            open_calls.discard(msg["tool_call_id"])
        else:
            assert not open_calls, f"{msg['role']} message before every call was answered"
            open_calls = {c["id"] for c in msg.get("tool_calls", ())}


# -- requests -------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", REQUESTS)
def test_every_captured_request_converts_to_a_valid_chat_request(name):
    body = fixture_json("anthropic", name)["body"]
    out, notes = to_chat(body)
    conforms("openai", OPENAI_REQUEST, out)
    assert out["model"] == body["model"] and out["max_tokens"] == body["max_tokens"]
    assert out["messages"][-1]["role"] in ("user", "tool")
    assert_tool_messages_follow_their_calls(out["messages"])
    if body.get("stream"):
        assert out["stream_options"] == {"include_usage": True}
    else:
        assert "stream" not in out
    assert ("dropped thinking: no OpenAI chat equivalent every provider accepts" in notes) == ("thinking" in body)


def test_captured_tool_round_trip_matches_openais_own_shape():
    """messages_stream_after_tool_result holds the same conversation shape as the OpenAI capture
    chat_completion_stream_text_after_tool_result_include_usage: user, assistant tool call, tool answer."""
    out, notes = to_chat(fixture_json("anthropic", "messages_stream_after_tool_result.request.json")["body"])
    real = fixture_json("openai", "chat_completion_stream_text_after_tool_result_include_usage.request.json")["body"]
    assert [sorted(m) for m in out["messages"]] == [sorted(m) for m in real["messages"]]
    assert [sorted(t["function"]) for t in out["tools"]] == [sorted(set(t["function"]) - {"strict"}) for t in real["tools"]]
    assert out["messages"][1] == {
        "role": "assistant", "content": None,
        "tool_calls": [{"id": "toolu_018acGYLtfR52q9yDbWaEdQZ", "type": "function",
                        "function": {"name": "get_weather",
                                     "arguments": '{"location": "San Francisco, CA", "units": "f"}'}}],
    }
    assert out["messages"][2]["content"] == '{"location": "San Francisco, CA", "temperature": "68\\u00b0F", "condition": "Sunny"}'
    assert out["stream_options"] == real["stream_options"]
    assert notes == []


def test_system_string_and_blocks():
    assert chat(system="Be brief.")[0]["messages"][0] == {"role": "system", "content": "Be brief."}
    blocks = [{"type": "text", "text": "You are a bot.", "cache_control": {"type": "ephemeral"}},
              {"type": "text", "text": "Be brief."}]
    assert chat(system=blocks)[0]["messages"][:2] == [{"role": "system", "content": "You are a bot.\nBe brief."},
                                                       {"role": "user", "content": "hi"}]
    assert chat(system="")[0]["messages"] == [{"role": "user", "content": "hi"}]


def test_cache_control_is_noted_never_refused():
    body = request(cache_control={"type": "ephemeral"}, service_tier="auto")
    out, notes = to_chat(body, unsupported="refuse")
    assert "cache_control" not in out and "service_tier" not in out
    assert notes == ["dropped cache_control: no OpenAI chat equivalent",
                     "dropped service_tier: no OpenAI chat equivalent"]


def test_images_become_image_url_parts():
    content = [{"type": "text", "text": "What is this?"}, {"type": "image", "source": PNG},
               {"type": "image", "source": {"type": "url", "url": "https://example.com/cat.jpg"}}]
    out, _ = chat(messages=[{"role": "user", "content": content}])
    assert out["messages"] == [{"role": "user", "content": [
        {"type": "text", "text": "What is this?"},
        {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}},
        {"type": "image_url", "image_url": {"url": "https://example.com/cat.jpg"}},
    ]}]
    conforms("openai", OPENAI_REQUEST, out)


def test_documents_become_text_or_file_parts():
    content = [{"type": "document", "source": {"type": "text", "media_type": "text/plain", "data": "Notes."}},
               {"type": "document", "title": "q3.pdf",
                "source": {"type": "base64", "media_type": "application/pdf", "data": "JVBERi0="}},
               {"type": "document", "source": {"type": "url", "url": "https://example.com/a.pdf"}}]
    out, notes = chat(messages=[{"role": "user", "content": content}])
    assert out["messages"][0]["content"] == [
        {"type": "text", "text": "Notes."},
        {"type": "file", "file": {"filename": "q3.pdf", "file_data": "data:application/pdf;base64,JVBERi0="}},
    ]
    assert notes == ["dropped messages[0].content[2].source: url document sources have no OpenAI chat equivalent"]
    with pytest.raises(UnsupportedParam) as e:
        to_chat(request(messages=[{"role": "user", "content": content}]), unsupported="refuse")
    assert e.value.param == "messages[0].content[2].source"


def test_tool_use_and_tool_result_become_tool_calls_and_tool_messages():
    out, notes = to_chat(with_tool_turns({"type": "tool_result", "tool_use_id": "toolu_01", "content": "18C"}))
    assert out["messages"][1:] == [
        {"role": "assistant", "content": "Let me look.",
         "tool_calls": [{"id": "toolu_01", "type": "function",
                         "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'}}]},
        {"role": "tool", "tool_call_id": "toolu_01", "content": "18C"},
    ]
    assert json.loads(out["messages"][1]["tool_calls"][0]["function"]["arguments"]) == CALL["input"]
    assert notes == []
    conforms("openai", OPENAI_REQUEST, out)


def test_tool_messages_come_before_the_rest_of_the_user_turn():
    out, _ = to_chat(with_tool_turns(
        {"type": "text", "text": "Here you go:"},
        {"type": "tool_result", "tool_use_id": "toolu_01", "content": [{"type": "text", "text": "18C"},
                                                                       {"type": "text", "text": "sunny"}]},
    ))
    assert [m["role"] for m in out["messages"]] == ["user", "assistant", "tool", "user"]
    assert out["messages"][2]["content"] == "18C\nsunny"
    assert out["messages"][3] == {"role": "user", "content": "Here you go:"}
    assert_tool_messages_follow_their_calls(out["messages"])


def test_tool_errors_are_marked_in_the_text():
    out, _ = to_chat(with_tool_turns({"type": "tool_result", "tool_use_id": "toolu_01", "is_error": True,
                                      "content": "city not found"}))
    assert out["messages"][-1] == {"role": "tool", "tool_call_id": "toolu_01", "content": "Error: city not found"}


def test_images_in_tool_results_move_to_a_user_message():
    out, notes = to_chat(with_tool_turns({"type": "tool_result", "tool_use_id": "toolu_01", "content": [
        {"type": "text", "text": "screenshot:"}, {"type": "image", "source": PNG}]}))
    assert out["messages"][-2:] == [
        {"role": "tool", "tool_call_id": "toolu_01", "content": "screenshot:"},
        {"role": "user", "content": [{"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}}]},
    ]
    assert notes == ["moved messages[2].content[0].content[1] to a user message: OpenAI tool messages carry only text"]
    conforms("openai", OPENAI_REQUEST, out)


def test_thinking_blocks_in_history_are_dropped_even_under_refuse():
    turns = [{"role": "user", "content": "hi"},
             {"role": "assistant", "content": [{"type": "thinking", "thinking": "hmm", "signature": "sig"},
                                               {"type": "redacted_thinking", "data": "xx"},
                                               {"type": "text", "text": "Hello"}]},
             {"role": "user", "content": "again"}]
    out, notes = to_chat(request(messages=turns), unsupported="refuse")
    assert out["messages"][1] == {"role": "assistant", "content": "Hello"}
    assert notes == ["dropped thinking blocks: only Anthropic models read them",
                     "dropped redacted_thinking blocks: only Anthropic models read them"]


def test_tools_and_tool_choice():
    out, _ = chat(tools=[TOOL | {"strict": True}, {"name": "noop", "input_schema": {"type": "object"}}])
    assert out["tools"] == [
        {"type": "function", "function": {"name": "get_weather", "description": "Weather for a city",
                                          "parameters": TOOL["input_schema"], "strict": True}},
        {"type": "function", "function": {"name": "noop", "parameters": {"type": "object"}}},
    ]
    conforms("openai", OPENAI_REQUEST, out)


@pytest.mark.parametrize("choice, expected", [
    ({"type": "auto"}, {"tool_choice": "auto"}),
    ({"type": "any"}, {"tool_choice": "required"}),
    ({"type": "none"}, {"tool_choice": "none"}),
    ({"type": "tool", "name": "get_weather"}, {"tool_choice": {"type": "function", "function": {"name": "get_weather"}}}),
    ({"type": "auto", "disable_parallel_tool_use": True}, {"tool_choice": "auto", "parallel_tool_calls": False}),
    ({"type": "any", "disable_parallel_tool_use": False}, {"tool_choice": "required"}),
])
def test_tool_choice(choice, expected):
    out, _ = chat(tools=[TOOL], tool_choice=choice)
    assert {k: out[k] for k in ("tool_choice", "parallel_tool_calls") if k in out} == expected
    conforms("openai", OPENAI_REQUEST, out)


def test_tool_choice_without_tools_is_left_out():
    """OpenAI rejects tool_choice and parallel_tool_calls when there are no tools."""
    out, _ = chat(tool_choice={"type": "any", "disable_parallel_tool_use": True})
    assert "tool_choice" not in out and "parallel_tool_calls" not in out


def test_server_tools_are_dropped_or_refused():
    web = {"type": "web_search_20250305", "name": "web_search", "max_uses": 3}
    out, notes = chat(tools=[TOOL, web], tool_choice={"type": "auto"})
    assert [t["function"]["name"] for t in out["tools"]] == ["get_weather"]
    assert notes == ["dropped tools[1]: web_search_20250305 is one of Anthropic's own tools"]
    out, _ = chat(tools=[web], tool_choice={"type": "any"})
    assert "tools" not in out and "tool_choice" not in out
    with pytest.raises(UnsupportedParam) as e:
        to_chat(request(tools=[TOOL, web]), unsupported="refuse")
    assert e.value.param == "tools[1]"


def test_sampling_stop_user_and_stream():
    out, notes = chat(temperature=0.2, top_p=0.9, stop_sequences=["END"], metadata={"user_id": "u-42"}, stream=True)
    assert {k: out[k] for k in ("temperature", "top_p", "stop", "user", "stream", "stream_options")} == {
        "temperature": 0.2, "top_p": 0.9, "stop": ["END"], "user": "u-42", "stream": True,
        "stream_options": {"include_usage": True}}
    assert notes == []
    conforms("openai", OPENAI_REQUEST, out)


@pytest.mark.parametrize("field, value, param", [
    ("top_k", 5, "top_k"),
    ("thinking", {"type": "enabled", "budget_tokens": 2048}, "thinking"),
    ("thinking", {"type": "adaptive"}, "thinking"),
    ("output_config", {"effort": "high"}, "output_config.effort"),
    ("container", "container_123", "container"),
    ("mcp_servers", [{"type": "url", "url": "https://mcp.example.com", "name": "x"}], "mcp_servers"),
])
def test_parameters_without_equivalent_are_dropped_or_refused(field, value, param):
    out, notes = chat(**{field: value})
    assert field not in out and "reasoning_effort" not in out
    assert len(notes) == 1 and notes[0].startswith(f"dropped {param}: ")
    with pytest.raises(UnsupportedParam) as e:
        to_chat(request(**{field: value}), unsupported="refuse")
    assert e.value.param == param


def test_thinking_disabled_needs_no_note():
    assert chat(thinking={"type": "disabled"}) == chat()


@pytest.mark.parametrize("field, value", [
    ("output_config", {"format": {"type": "json_schema", "schema": TOOL["input_schema"]}}),
    ("output_format", {"type": "json_schema", "schema": TOOL["input_schema"]}),  # the structured-outputs beta
])
def test_json_schema_output(field, value):
    out, notes = chat(**{field: value})
    assert out["response_format"] == {"type": "json_schema",
                                      "json_schema": {"name": "output", "schema": TOOL["input_schema"]}}
    assert notes == []
    conforms("openai", OPENAI_REQUEST, out)


def test_a_turn_left_empty_still_takes_its_place():
    turns = [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "Hello"},
             {"role": "user", "content": [{"type": "search_result", "source": "s", "title": "t", "content": []}]}]
    out, notes = chat(messages=turns)
    assert out["messages"][-1] == {"role": "user", "content": ""}
    assert notes == ["dropped messages[2].content[0]: search_result blocks have no OpenAI chat equivalent"]


def test_system_role_messages_pass_as_system_messages():
    out, _ = chat(messages=[{"role": "system", "content": "Be brief."}, {"role": "user", "content": "hi"}])
    assert out["messages"] == [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "hi"}]


def change(path, value):
    """request() with the value at path (keys and indexes) replaced, or removed when value is DELETE."""
    body = with_tool_turns({"type": "tool_result", "tool_use_id": "toolu_01", "content": "18C"})
    node = body
    for key in path[:-1]:
        node = node[key]
    if value is DELETE:
        del node[path[-1]]
    else:
        node[path[-1]] = value
    return body


DELETE = object()
BAD = [
    (("model",), DELETE, "model"),
    (("model",), 7, "model"),
    (("max_tokens",), DELETE, "max_tokens"),
    (("max_tokens",), -1, "max_tokens"),
    (("max_tokens",), True, "max_tokens"),
    (("messages",), [], "messages"),
    (("messages", 0), "hi", "messages[0]"),
    (("messages", 0, "role"), "robot", "messages[0].role"),
    (("messages", 0, "content"), 5, "messages[0].content"),
    (("messages", 1, "content", 0, "type"), "video", "messages[1].content[0].type"),
    (("messages", 1, "content", 0), "text", "messages[1].content[0]"),
    (("messages", 1, "content", 0, "text"), None, "messages[1].content[0].text"),
    (("messages", 1, "content", 1, "input"), "{}", "messages[1].content[1].input"),
    (("messages", 1, "content", 1, "id"), DELETE, "messages[1].content[1].id"),
    (("messages", 0, "content"), [CALL], "messages[0].content[0].type"),  # tool_use in a user turn
    (("messages", 2, "content", 0, "tool_use_id"), "toolu_99", "messages[2].content[0].tool_use_id"),
    (("messages", 2, "content", 0, "content"), {"text": "x"}, "messages[2].content[0].content"),
    (("messages", 2, "content", 0, "content"), [{"type": "text"}], "messages[2].content[0].content[0].text"),
    (("messages", 2, "content"), [{"type": "image", "source": {"type": "base64", "data": "x"}}],
     "messages[2].content[0].source.media_type"),
    (("messages", 2, "content"), [{"type": "image", "source": "x"}], "messages[2].content[0].source"),
    (("system",), 5, "system"),
    (("system",), [{"type": "image", "source": PNG}], "system[0].type"),
    (("tools",), {"name": "x"}, "tools"),
    (("tools", 0, "input_schema"), DELETE, "tools[0].input_schema"),
    (("tools", 0, "name"), "", "tools[0].name"),
    (("tool_choice",), {"type": "function"}, "tool_choice.type"),
    (("tool_choice",), {"type": "tool"}, "tool_choice.name"),
    (("stop_sequences",), "END", "stop_sequences"),
    (("temperature",), "hot", "temperature"),
    (("stream",), "yes", "stream"),
    (("output_config",), {"format": {"type": "json_object"}}, "output_config.format"),
]


@pytest.mark.parametrize("path, value, param", BAD, ids=[p for _, _, p in BAD])
def test_bad_shapes_name_the_param(path, value, param):
    with pytest.raises(InvalidRequest) as e:
        to_chat(change(path, value))
    assert e.value.param == param
    assert str(e.value).startswith(f"{param}: ")


def test_a_body_that_is_not_an_object():
    with pytest.raises(InvalidRequest) as e:
        to_chat([1, 2])
    assert e.value.param is None


def test_the_request_is_not_modified():
    body = with_tool_turns({"type": "tool_result", "tool_use_id": "toolu_01", "content": "18C"})
    before = copy.deepcopy(body)
    to_chat(body)
    assert body == before


def test_what_the_anthropic_sdk_sends_converts():
    """The body the official SDK builds for messages.create, captured off the wire."""
    sent = []

    def handler(req: httpx.Request) -> httpx.Response:
        sent.append(json.loads(req.content))
        return httpx.Response(200, json=from_chat(fixture_json("openai", "chat_completion_text.json"), "claude-x"))

    client = sdk(handler)
    client.messages.create(
        model="gpt-4o-mini", max_tokens=64, system=[{"type": "text", "text": "Be brief."}],
        messages=[{"role": "user", "content": [{"type": "text", "text": "hi"}, {"type": "image", "source": PNG}]}],
        tools=[TOOL], tool_choice={"type": "auto", "disable_parallel_tool_use": True}, metadata={"user_id": "u1"},
        stop_sequences=["END"],
    )
    out, notes = to_chat(sent[0])
    assert notes == []
    assert out["messages"][0] == {"role": "system", "content": "Be brief."}
    assert out["parallel_tool_calls"] is False and out["user"] == "u1" and out["stop"] == ["END"]
    conforms("openai", OPENAI_REQUEST, out)


# -- whole responses ------------------------------------------------------------------------------


def sdk(handler) -> anthropic_sdk.Anthropic:
    return anthropic_sdk.Anthropic(api_key="test", base_url="http://gateway.test", max_retries=0,
                                   http_client=httpx.Client(transport=httpx.MockTransport(handler)))


@pytest.mark.parametrize("provider, name", COMPLETIONS, ids=[n for _, n in COMPLETIONS])
def test_completions_become_messages_that_conform(provider, name):
    completion = fixture_json(provider, name)
    message = from_chat(completion, "claude-sonnet-4-5")
    conforms("anthropic", ANTHROPIC_MESSAGE, message, strict=True)
    anthropic_sdk.types.Message.model_validate(message)
    assert message["model"] == "claude-sonnet-4-5" and message["id"].startswith("msg_")
    source = completion["choices"][0]["message"]
    texts = [b["text"] for b in message["content"] if b["type"] == "text"]
    assert texts == ([source["content"]] if source.get("content") else [])
    calls = source.get("tool_calls") or []
    assert [(b["id"], b["name"], b["input"]) for b in message["content"] if b["type"] == "tool_use"] == [
        (c["id"], c["function"]["name"], json.loads(c["function"]["arguments"])) for c in calls]
    assert message["stop_reason"] == ("tool_use" if calls else "end_turn")
    # The Anthropic reading of the new usage agrees with the OpenAI reading of the old.
    assert_same_usage(anthropic.response_facts(ANTHROPIC, message).usage, openai.response_facts(CHAT, completion).usage)


def assert_same_usage(now, was):
    """Token counts equal; Anthropic says 0 where OpenAI left a cache count out."""
    assert (now.input_tokens, now.output_tokens, now.cache_read_tokens or 0, now.cache_write_tokens or 0) == (
        was.input_tokens or 0, was.output_tokens or 0, was.cache_read_tokens or 0, was.cache_write_tokens or 0)


def test_cached_tokens_are_taken_out_of_input_tokens():
    completion = {"id": "chatcmpl-1", "choices": [{"index": 0, "message": {"role": "assistant", "content": "ok"},
                                                   "finish_reason": "stop"}],
                  "usage": {"prompt_tokens": 1500, "completion_tokens": 40, "total_tokens": 1540,
                            "prompt_tokens_details": {"cached_tokens": 1024},
                            "completion_tokens_details": {"reasoning_tokens": 12}}}
    usage = from_chat(completion, "m")["usage"]
    assert (usage["input_tokens"], usage["cache_read_input_tokens"], usage["cache_creation_input_tokens"],
            usage["output_tokens"], usage["output_tokens_details"]) == (476, 1024, 0, 40, {"thinking_tokens": 12})


def reply(finish, **message):
    return {"id": "chatcmpl-9", "model": "gpt-4o", "choices": [
        {"index": 0, "message": {"role": "assistant", "content": None} | message, "finish_reason": finish}]}


@pytest.mark.parametrize("completion, stop_reason", [
    (reply("stop", content="hi"), "end_turn"),
    (reply("length", content="hi"), "max_tokens"),
    (reply("content_filter", content=""), "refusal"),
    (reply("stop", refusal="I can't help with that."), "refusal"),
    (reply("stop", tool_calls=[{"id": "c1", "type": "function", "function": {"name": "f", "arguments": "{}"}}]),
     "tool_use"),  # Ollama and other hosts finish tool calls with "stop"
    (reply(None, content="hi"), "end_turn"),
    ({"id": "x", "choices": []}, "end_turn"),
])
def test_stop_reasons(completion, stop_reason):
    message = from_chat(completion, "m")
    assert message["stop_reason"] == stop_reason
    conforms("anthropic", ANTHROPIC_MESSAGE, message, strict=True)


def test_refusal_text_is_kept():
    assert from_chat(reply("stop", refusal="No."), "m")["content"] == [{"type": "text", "text": "No.", "citations": None}]


@pytest.mark.parametrize("arguments", ["{not json", "[1, 2]", "", None])
def test_tool_arguments_that_are_not_an_object_become_empty_input(arguments):
    completion = reply("tool_calls", tool_calls=[{"id": "c1", "type": "function",
                                                  "function": {"name": "f", "arguments": arguments}}])
    assert from_chat(completion, "m")["content"][0]["input"] == {}


def test_the_sdk_parses_a_whole_reply():
    completion = fixture_json("openai", "chat_completion_parallel_tool_calls.json")
    client = sdk(lambda req: httpx.Response(200, json=from_chat(completion, "claude-x")))
    message = client.messages.create(model="claude-x", max_tokens=10, messages=[{"role": "user", "content": "hi"}])
    assert message.stop_reason == "tool_use"
    assert [(b.name, b.input) for b in message.content] == [
        ("GetWeatherArgs", {"city": "Edinburgh", "country": "GB", "units": "c"}),
        ("get_stock_price", {"ticker": "AAPL", "exchange": "NASDAQ"}),
    ]
    assert (message.usage.input_tokens, message.usage.output_tokens) == (149, 60)


# -- streams --------------------------------------------------------------------------------------


def chunks(provider, name):
    frames = SSEDecoder().feed(fixture_bytes(provider, name))
    return [json.loads(f.data) for f in frames if f.data and f.data != "[DONE]"]


def translate(chunk_list, model="claude-sonnet-4-5"):
    stream = MessagesStream(model)
    return b"".join([stream.feed(c) for c in chunk_list] + [stream.close()])


def events(raw: bytes):
    decoder = SSEDecoder()
    return [(f.event, json.loads(f.data)) for f in decoder.feed(raw) + decoder.close()]


def assert_event_grammar(evs):
    names = [e for e, _ in evs]
    assert names[0] == "message_start" and names[-2:] == ["message_delta", "message_stop"]
    assert names.count("message_start") == names.count("message_delta") == names.count("message_stop") == 1
    started, stopped = [], []
    for event, data in evs:
        assert data["type"] == event
        conforms("anthropic", ANTHROPIC_STREAM_EVENT, data, strict=True)
        if event == "content_block_start":
            assert data["index"] == len(started) == len(stopped)  # numbered in order, one open at a time
            started.append(data["content_block"]["type"])
        elif event == "content_block_delta":
            assert data["delta"]["type"] == {"text": "text_delta", "tool_use": "input_json_delta"}[started[data["index"]]]
        elif event == "content_block_stop":
            assert data["index"] == len(stopped) < len(started)
            stopped.append(data["index"])
        elif event == "message_delta":
            assert len(stopped) == len(started)  # every block closed before the message ends


@pytest.mark.parametrize("provider, name", STREAMS, ids=[n for _, n in STREAMS])
def test_streams_survive_the_round_trip(provider, name):
    raw = translate(chunks(provider, name))
    assert_event_grammar(events(raw))
    original = parse_stream(CHAT, [fixture_bytes(provider, name)])
    rng = random.Random(name)
    again = parse_stream(ANTHROPIC, random_splits(raw, rng))
    assert again.finished and again.error is None
    refusal = "".join(dig(c, "choices", 0, "delta", "refusal") or "" for c in chunks(provider, name))
    assert "".join(again.output.text) == "".join(original.output.text) + refusal  # a refusal is shown as text
    assert list(again.output.tool_calls.values()) == list(original.output.tool_calls.values())
    assert_same_usage(again.usage, original.usage)
    finish = original.output.finish_reason
    assert again.output.finish_reason == (
        "refusal" if "refusal" in name else "tool_use" if original.output.tool_calls else
        {"length": "max_tokens"}.get(finish, "end_turn"))


@pytest.mark.parametrize("name", ["chat_completion_stream_parallel_tool_calls_include_usage.sse",
                                  "chat_completion_stream_tool_call_include_usage.sse",
                                  "chat_completion_stream_text_after_tool_result_include_usage.sse"])
def test_the_sdk_reads_the_stream(name):
    raw = translate(chunks("openai", name))
    client = sdk(lambda req: httpx.Response(200, headers={"content-type": "text/event-stream"}, content=raw))
    with client.messages.stream(model="claude-x", max_tokens=10, messages=[{"role": "user", "content": "hi"}]) as s:
        message = s.get_final_message()
    original = parse_stream(CHAT, [fixture_bytes("openai", name)])
    assert "".join(b.text for b in message.content if b.type == "text") == "".join(original.output.text)
    assert [(b.id, b.name, b.input) for b in message.content if b.type == "tool_use"] == [
        (c["id"], c["name"], json.loads(c["arguments"])) for c in original.output.tool_calls.values()]
    assert message.usage.input_tokens == original.usage.input_tokens
    assert message.usage.output_tokens == original.usage.output_tokens
    assert message.stop_reason == ("tool_use" if original.output.tool_calls else "end_turn")


def chunk(delta=None, finish=None, usage=None, choices=True):
    body = {"id": "chatcmpl-7", "object": "chat.completion.chunk", "model": "gpt-4o",
            "choices": [{"index": 0, "delta": delta or {}, "finish_reason": finish}] if choices else []}
    return body | ({"usage": usage} if usage is not None else {})


USAGE = {"prompt_tokens": 20, "completion_tokens": 5, "total_tokens": 25, "prompt_tokens_details": {"cached_tokens": 8}}


def test_message_delta_waits_for_the_usage_chunk():
    stream = MessagesStream("claude-x")
    first = events(stream.feed(chunk({"role": "assistant", "content": "Hi"})))
    assert [e for e, _ in first] == ["message_start", "content_block_start", "content_block_delta"]
    assert first[0][1]["message"]["usage"]["input_tokens"] == 0  # not known yet
    assert [e for e, _ in events(stream.feed(chunk(finish="stop")))] == ["content_block_stop"]
    last = events(stream.feed(chunk(choices=False, usage=USAGE)))
    assert [e for e, _ in last] == ["message_delta", "message_stop"]
    assert last[0][1]["usage"] | {} == {"input_tokens": 12, "cache_creation_input_tokens": 0,
                                        "cache_read_input_tokens": 8, "output_tokens": 5,
                                        "output_tokens_details": None, "server_tool_use": None}
    assert last[0][1]["delta"]["stop_reason"] == "end_turn"
    assert stream.feed(chunk({"content": "late"})) == b"" and stream.close() == b""


def test_usage_on_the_finish_chunk_ends_the_message_at_once():
    """DeepSeek and Groq put usage on the chunk that carries finish_reason."""
    stream = MessagesStream("claude-x")
    stream.feed(chunk({"content": "Hi"}))
    assert [e for e, _ in events(stream.feed(chunk(finish="length", usage=USAGE)))] == [
        "content_block_stop", "message_delta", "message_stop"]


def test_without_a_usage_chunk_the_message_ends_at_close():
    stream = MessagesStream("claude-x")
    stream.feed(chunk({"content": "Hi"}))
    assert [e for e, _ in events(stream.feed(chunk(finish="stop")))] == ["content_block_stop"]
    end = events(stream.close())
    assert [e for e, _ in end] == ["message_delta", "message_stop"]
    assert end[0][1]["usage"]["output_tokens"] == 0


def test_an_empty_stream_is_still_a_whole_message():
    evs = events(MessagesStream("claude-x").close())
    assert [e for e, _ in evs] == ["message_start", "message_delta", "message_stop"]
    assert evs[0][1]["message"]["model"] == "claude-x"
    assert_event_grammar(evs)


def test_text_after_a_tool_call_opens_a_new_block():
    stream = MessagesStream("m")
    raw = b"".join([
        stream.feed(chunk({"tool_calls": [{"index": 0, "id": "c1", "type": "function",
                                           "function": {"name": "f", "arguments": '{"a":'}}]})),
        stream.feed(chunk({"content": "then text"})),
        stream.feed(chunk({"tool_calls": [{"index": 0, "function": {"arguments": "1}"}}]})),  # late fragment
        stream.feed(chunk(finish="tool_calls", usage=USAGE)),
    ])
    evs = events(raw)
    assert_event_grammar(evs)
    assert [(d["index"], d["delta"].get("partial_json") or d["delta"].get("text"))
            for e, d in evs if e == "content_block_delta"] == [(0, '{"a":'), (1, "then text"), (0, "1}")]
    state = parse_stream(ANTHROPIC, [raw])
    assert state.output.tool_calls == {0: {"id": "c1", "name": "f", "arguments": '{"a":1}'}}


def test_the_error_event_has_anthropics_shape():
    raw = error_event("overloaded_error", "Overloaded")
    [(event, data)] = events(raw)
    [(real_event, real)] = events(fixture_bytes("anthropic", "messages_stream_error_overloaded.sse"))
    assert event == real_event == "error"
    assert data["error"] == {k: real["error"][k] for k in ("type", "message")}
    conforms("anthropic", ANTHROPIC_ERROR, data)
    state = parse_stream(ANTHROPIC, [raw])
    assert state.error == "overloaded_error: Overloaded" and not state.finished


def test_an_error_mid_stream_ends_it_without_message_stop():
    stream = MessagesStream("m")
    head = stream.feed(chunk({"content": "Hi"}))
    tail = stream.error_event("api_error", "upstream went away")
    assert stream.feed(chunk(finish="stop", usage=USAGE)) == b"" and stream.close() == b""
    state = parse_stream(ANTHROPIC, [head, tail])
    assert state.output.text == ["Hi"] and state.error == "api_error: upstream went away" and not state.finished


def test_usage_before_the_finish_does_not_end_the_message():
    """vLLM's continuous_usage_stats puts running usage on every chunk."""
    stream = MessagesStream("claude-x")
    early = events(stream.feed(chunk({"content": "Hi"}, usage=USAGE | {"completion_tokens": 1})))
    assert [e for e, _ in early] == ["message_start", "content_block_start", "content_block_delta"]
    assert early[0][1]["message"]["usage"]["input_tokens"] == 12  # known from the first chunk on
    assert "message_stop" not in [e for e, _ in events(stream.feed(chunk({"content": " there"}, usage=USAGE)))]
    end = events(stream.feed(chunk(finish="stop", usage=USAGE | {"completion_tokens": 6})))
    assert [e for e, _ in end] == ["content_block_stop", "message_delta", "message_stop"]
    assert end[1][1]["usage"]["output_tokens"] == 6
