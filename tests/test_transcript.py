"""Readable text from stored bodies, on real captured payloads of each provider."""

import json

import pytest
from support import fixture_bytes, fixture_json

from providers.transcript import answer, question


def body(provider: str, name: str) -> str:
    return fixture_bytes(provider, name).decode()


def request_body(provider: str, name: str) -> str:
    return json.dumps(fixture_json(provider, name)["body"])


@pytest.mark.parametrize("provider, name, expected", [
    ("openai", "chat_completion_text.json", None),  # checked against the payload below
    ("openai", "responses_response_text.json", "I can't provide real-time updates"),
    ("anthropic", "messages_text.json", '{"product_name": "Green Tea"'),
    ("gemini", "generate_content_text.json", "Hello! How can I help you today?"),
])
def test_answer_text(provider, name, expected):
    text = answer(body(provider, name))
    if expected is None:
        expected = fixture_json(provider, name)["choices"][0]["message"]["content"]
    assert text.startswith(expected)


@pytest.mark.parametrize("provider, name, tool", [
    ("openai", "chat_completion_tool_call.json", "→ Query("),
    ("anthropic", "messages_tool_use.json", '→ get_weather({"location": "San Francisco, CA"'),
    ("gemini", "generate_content_function_call.json", '→ weather({"location": "San Francisco"})'),
])
def test_answer_tool_calls(provider, name, tool):
    assert answer(body(provider, name)).startswith(tool)


@pytest.mark.parametrize("provider, name, message", [
    ("openai", "error_429_rate_limit_tokens.json", "error: Rate limit reached for gpt-3.5-turbo"),
    ("anthropic", "error_529_overloaded.json", "error: Overloaded"),
    ("gemini", "error_429_resource_exhausted.json", "error: You exceeded your current quota"),
])
def test_answer_of_an_error(provider, name, message):
    assert answer(body(provider, name)).startswith(message)


def test_answer_of_an_assembled_stream():
    stored = {"text": "Hi.", "tool_calls": [{"id": "t1", "name": "lookup", "arguments": '{"q": 1}'}],
              "finish_reason": "tool_calls"}
    assert answer(json.dumps(stored)) == 'Hi.\n→ lookup({"q": 1})'


@pytest.mark.parametrize("provider, name, expected", [
    ("gemini", "generate_content_text.request.json", "Hello!"),
    ("openai", "responses_stream_function_call.request.json", "What is the capital of France?"),
    # After a tool call the last turn from the user's side is the tool's result.
    ("openai", "chat_completion_stream_text_after_tool_result_include_usage.request.json", "[tool result] London"),
    ("openai", "responses_stream_text.request.json", "[tool result] Paris"),
    ("anthropic", "messages_stream_after_tool_result.request.json", "[tool result]"),
    ("gemini", "stream_generate_content_after_function_response.request.json", "[tool result]"),
])
def test_question_is_the_last_turn_from_the_users_side(provider, name, expected):
    assert question(request_body(provider, name)).startswith(expected)


def test_question_skips_assistant_turns_and_reads_text_parts():
    chat = {"messages": [{"role": "user", "content": "first"}, {"role": "assistant", "content": "ok"},
                         {"role": "user", "content": [{"type": "text", "text": "second"},
                                                      {"type": "image_url", "image_url": {"url": "x"}}]},
                         {"role": "assistant", "content": "partial"}]}
    assert question(json.dumps(chat)) == "second\n[image]"
    assert question(json.dumps({"model": "gpt-4.1", "input": "plain"})) == "plain"
    assert question(json.dumps({"prompt": "legacy"})) == "legacy"


@pytest.mark.parametrize("raw", [None, "", "not json", "[1, 2]", '{"unknown": "shape"}', '{"choices": []}',
                                 '{"messages": "odd"}'])
def test_anything_else_reads_as_nothing(raw):
    assert answer(raw) == ""
    assert question(raw) == ""
