"""OpenAI chat <-> Gemini generateContent: requests built from real OpenAI bodies, answers and streams
from real Gemini captures, each checked against the official specs and the Gemini SDK's own types."""

from __future__ import annotations

import base64
import json
import random
import re

import pytest
from google.genai import types as genai
from specs import OPENAI_CHAT, OPENAI_CHAT_CHUNK, conforms
from support import fixture_bytes, fixture_json, fixture_names, random_splits

from providers.chat import InvalidRequest, ProviderStreamError, UnsupportedParam
from providers.gemini.chat import gemini_chat
from providers.gemini.chat_stream import SIGNATURE_MARK
from providers.sse import SSEDecoder

# GenerateContentRequest's body fields, each checked with the google-genai type that forbids unknown keys.
GEMINI_TYPES = {"systemInstruction": genai.Content, "toolConfig": genai.ToolConfig,
                "generationConfig": genai.GenerationConfig}


def gemini_shaped(body: dict) -> dict:
    """body, after checking every field name and type in it against the google-genai SDK's models."""
    assert set(body) <= {"contents", "systemInstruction", "tools", "toolConfig", "generationConfig"}, body
    for content in body["contents"]:
        assert content["role"] in ("user", "model") and content["parts"], content
        genai.Content.model_validate(content)
    for tool in body.get("tools", ()):
        genai.Tool.model_validate(tool)
    for key, model in GEMINI_TYPES.items():
        if key in body:
            model.model_validate(body[key])
    return body


def translate(body: dict, stream: bool = False, unsupported: str = "drop", model: str = "gemini-2.5-flash"):
    request = gemini_chat.chat_request(body, model, stream=stream, unsupported=unsupported)
    gemini_shaped(request.body)
    return request


def chat(*messages, **params) -> dict:
    return {"model": "gpt-4o", "messages": list(messages), **params}


def user(content="Hi") -> dict:
    return {"role": "user", "content": content}


def assistant_call(call_id="call_1", name="get_weather", arguments='{"city": "Paris"}', content=None) -> dict:
    return {"role": "assistant", "content": content,
            "tool_calls": [{"id": call_id, "type": "function", "function": {"name": name, "arguments": arguments}}]}


def tool(call_id="call_1", content="sunny") -> dict:
    return {"role": "tool", "tool_call_id": call_id, "content": content}


# -- requests from real OpenAI bodies -----------------------------------------------------------


def test_tool_round_trip_fixture_becomes_function_call_and_response():
    body = fixture_json("openai", "chat_completion_stream_text_after_tool_result_include_usage.request.json")["body"]
    request = translate(body, stream=True)
    assert request.path == "/v1beta/models/gemini-2.5-flash:streamGenerateContent?alt=sse"
    assert request.headers == {} and request.notes == []
    first, call, result = request.body["contents"]
    assert first == {"role": "user", "parts": [{"text": "What is the capital of the UK? Use the tool, then answer."}]}
    assert call == {"role": "model", "parts": [{"functionCall": {
        "id": "call_ZR5UUuTt3pf61kjwAJIYdVMj", "name": "get_capital", "args": {"country": "UK"}}}]}
    assert result == {"role": "user", "parts": [{"functionResponse": {
        "id": "call_ZR5UUuTt3pf61kjwAJIYdVMj", "name": "get_capital", "response": {"result": "London"}}}]}
    declaration = request.body["tools"][0]["functionDeclarations"][0]
    assert declaration == {"name": "get_capital", "description": "",
                           "parametersJsonSchema": body["tools"][0]["function"]["parameters"]}
    assert request.body["toolConfig"] == {"functionCallingConfig": {"mode": "AUTO"}}
    assert "generationConfig" not in request.body  # stream_options and model are not sent


def test_parallel_tools_fixture_keeps_every_schema_whole():
    body = fixture_json("openai", "chat_completion_stream_parallel_tool_calls_include_usage.request.json")["body"]
    request = translate(body, stream=True)
    declarations = request.body["tools"][0]["functionDeclarations"]
    assert [d["name"] for d in declarations] == [t["function"]["name"] for t in body["tools"]]
    final = next(d for d in declarations if d["name"] == "final_result")
    assert final["parametersJsonSchema"]["$defs"]["Answer"]["required"] == ["label", "answer"]  # full JSON Schema
    assert request.body["toolConfig"] == {"functionCallingConfig": {"mode": "ANY"}}


def test_tool_call_fixture_unstreamed_path():
    body = fixture_json("openai", "chat_completion_stream_tool_call_include_usage.request.json")["body"]
    request = translate(body, stream=False, model="models/gemini-2.0-flash")
    assert request.path == "/v1beta/models/gemini-2.0-flash:generateContent"


def test_model_names_are_quoted_into_one_path_segment():
    request = translate(chat(user()), model="my/model?x")
    assert request.path == "/v1beta/models/my%2Fmodel%3Fx:generateContent"


# -- messages ------------------------------------------------------------------------------------


def test_system_and_developer_messages_become_the_system_instruction():
    body = chat({"role": "system", "content": "Be brief."}, user(),
                {"role": "developer", "content": [{"type": "text", "text": "Use French."}]})
    request = translate(body)
    assert request.body["systemInstruction"] == {"parts": [{"text": "Be brief."}, {"text": "Use French."}]}
    assert request.body["contents"] == [{"role": "user", "parts": [{"text": "Hi"}]}]


def test_consecutive_turns_of_one_role_merge():
    body = chat(user("a"), user([{"type": "text", "text": "b"}]), {"role": "assistant", "content": "c"},
                {"role": "assistant", "content": [{"type": "text", "text": "d"}, {"type": "refusal", "refusal": "e"}]},
                user("f"))
    contents = translate(body).body["contents"]
    assert [c["role"] for c in contents] == ["user", "model", "user"]
    assert contents[0]["parts"] == [{"text": "a"}, {"text": "b"}]
    assert contents[1]["parts"] == [{"text": "c"}, {"text": "d"}, {"text": "e"}]


def test_consecutive_tool_results_share_one_user_turn_with_what_follows():
    calls = {"role": "assistant", "content": "Looking.", "tool_calls": [
        {"id": "a", "type": "function", "function": {"name": "f", "arguments": "{}"}},
        {"id": "b", "type": "function", "function": {"name": "g", "arguments": ""}}]}
    body = chat(user(), calls, tool("a", '{"temp": 21}'), tool("b", [{"type": "text", "text": "[1, "},
                                                                      {"type": "text", "text": "2]"}]), user("thanks"))
    contents = translate(body).body["contents"]
    assert [c["role"] for c in contents] == ["user", "model", "user"]
    assert contents[1]["parts"] == [{"text": "Looking."}, {"functionCall": {"id": "a", "name": "f", "args": {}}},
                                    {"functionCall": {"id": "b", "name": "g", "args": {}}}]
    assert contents[2]["parts"] == [
        {"functionResponse": {"id": "a", "name": "f", "response": {"result": {"temp": 21}}}},
        {"functionResponse": {"id": "b", "name": "g", "response": {"result": "[1, 2]"}}},  # not an object: as text
        {"text": "thanks"},
    ]


def test_images_inline_from_data_urls_and_by_reference_from_http():
    png = base64.b64encode(b"\x89PNG").decode()
    parts = [
        {"type": "text", "text": "What is this?"},
        {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{png}", "detail": "low"}},
        {"type": "image_url", "image_url": {"url": "data:image/svg+xml,%3Csvg%2F%3E"}},
        {"type": "image_url", "image_url": {"url": "https://example.com/cat.PNG?size=2"}},
        {"type": "image_url", "image_url": {"url": "http://example.com/photo"}},
        {"type": "image_url", "image_url": {"url": "https://example.com/a.webp"}},
    ]
    got = translate(chat(user(parts))).body["contents"][0]["parts"]
    assert got == [
        {"text": "What is this?"},
        {"inlineData": {"mimeType": "image/png", "data": png}},
        {"inlineData": {"mimeType": "image/svg+xml", "data": base64.b64encode(b"<svg/>").decode()}},
        {"fileData": {"mimeType": "image/png", "fileUri": "https://example.com/cat.PNG?size=2"}},
        {"fileData": {"mimeType": "image/jpeg", "fileUri": "http://example.com/photo"}},
        {"fileData": {"mimeType": "image/webp", "fileUri": "https://example.com/a.webp"}},
    ]


def test_audio_and_file_parts_inline():
    parts = [{"type": "input_audio", "input_audio": {"data": "UklGRg==", "format": "wav"}},
             {"type": "input_audio", "input_audio": {"data": "SUQz", "format": "mp3"}},
             {"type": "file", "file": {"file_data": "data:application/pdf;base64,JVBERi0=", "filename": "a.pdf"}},
             {"type": "file", "file": {"file_data": "aGk=", "filename": "notes.txt"}}]
    assert translate(chat(user(parts))).body["contents"][0]["parts"] == [
        {"inlineData": {"mimeType": "audio/wav", "data": "UklGRg=="}},
        {"inlineData": {"mimeType": "audio/mp3", "data": "SUQz"}},
        {"inlineData": {"mimeType": "application/pdf", "data": "JVBERi0="}},
        {"inlineData": {"mimeType": "text/plain", "data": "aGk="}},
    ]


def test_file_ids_are_dropped_or_refused():
    body = chat(user([{"type": "text", "text": "Sum it up"}, {"type": "file", "file": {"file_id": "file-abc"}}]))
    request = translate(body)
    assert request.body["contents"][0]["parts"] == [{"text": "Sum it up"}]
    assert request.notes == ["dropped messages[0].content[1].file.file_id: an OpenAI file id means nothing to Gemini; send file_data"]
    with pytest.raises(UnsupportedParam) as caught:
        translate(body, unsupported="refuse")
    assert caught.value.param == "messages[0].content[1].file.file_id"


@pytest.mark.parametrize("body, param", [
    ([], None),
    ({"model": "m"}, "messages"),
    (chat(), "messages"),
    ({"messages": "hi"}, "messages"),
    (chat("hi"), "messages[0]"),
    (chat({"role": "system", "content": "Be brief."}, user("")), "messages"),
    (chat({"role": "wizard", "content": "x"}), "messages[0].role"),
    (chat({"role": ["user"], "content": "x"}), "messages[0].role"),
    (chat(user(42)), "messages[0].content"),
    (chat(user([{"type": "video", "video": {}}])), "messages[0].content[0].type"),
    (chat({"role": "system", "content": [{"type": "image_url", "image_url": {"url": "https://x/a.png"}}]}),
     "messages[0].content[0].type"),
    (chat(user([{"type": "image_url", "image_url": {"url": "ftp://example.com/a.png"}}])),
     "messages[0].content[0].image_url.url"),
    (chat(user([{"type": "image_url", "image_url": {"url": "data:;base64"}}])), "messages[0].content[0].image_url.url"),
    (chat(user([{"type": "input_audio", "input_audio": {"data": "x", "format": "ogg"}}])),
     "messages[0].content[0].input_audio.format"),
    (chat(user([{"type": "file", "file": {}}])), "messages[0].content[0].file"),
    (chat(user(), assistant_call(arguments='{"city": ')), "messages[1].tool_calls[0].function.arguments"),
    (chat(user(), assistant_call(arguments='["Paris"]')), "messages[1].tool_calls[0].function.arguments"),
    (chat(user(), assistant_call(name="")), "messages[1].tool_calls[0].function.name"),
    (chat(user(), assistant_call(call_id=None)), "messages[1].tool_calls[0].id"),
    (chat(user(), assistant_call(), tool("call_2")), "messages[2].tool_call_id"),
    (chat(user(), tool()), "messages[1].tool_call_id"),
    (chat(user(), tools=[{"type": "function", "function": {"description": "no name"}}]), "tools[0].function.name"),
    (chat(user(), tools={"type": "function"}), "tools"),
    (chat(user(), tools=[{"type": "function", "function": {"name": "f"}}], tool_choice="sometimes"), "tool_choice"),
    (chat(user(), tools=[{"type": "function", "function": {"name": "f"}}],
          tool_choice={"type": "allowed_tools", "allowed_tools": {"mode": "sometimes", "tools": []}}), "tool_choice"),
    (chat(user(), response_format={"type": "yaml"}), "response_format.type"),
    (chat(user(), response_format="json"), "response_format.type"),
])
def test_bodies_that_cannot_be_translated_name_the_param(body, param):
    with pytest.raises(InvalidRequest) as caught:
        gemini_chat.chat_request(body, "gemini-2.5-flash", stream=False)
    assert caught.value.param == param


def test_thought_signature_round_trips_through_the_tool_call_id():
    answer = gemini_chat.chat_response(fixture_json("gemini", "generate_content_function_call.json"), "gemini-3-pro-preview")
    call = answer["choices"][0]["message"]["tool_calls"][0]
    signature = fixture_json("gemini", "generate_content_function_call.json")["candidates"][0]["content"]["parts"][0]["thoughtSignature"]
    safe = signature.replace("+", "-").replace("/", "_").rstrip("=")
    assert call["id"].endswith(SIGNATURE_MARK + safe)
    assert re.fullmatch(r"[A-Za-z0-9_-]+", call["id"])  # Anthropic's tool id pattern, for a fallback
    base = call["id"].removesuffix(SIGNATURE_MARK + safe)
    body = chat(user("Weather in SF?"), {"role": "assistant", "content": None, "tool_calls": [call]},
                tool(call["id"], '{"forecast": "fog"}'))
    contents = translate(body).body["contents"]
    assert contents[1]["parts"] == [{"functionCall": {"id": base, "name": "weather", "args": {"location": "San Francisco"}},
                                     "thoughtSignature": signature}]
    assert contents[2]["parts"][0]["functionResponse"] == {"id": base, "name": "weather", "response": {"result": {"forecast": "fog"}}}


def test_google_style_extra_content_signature_is_accepted():
    message = assistant_call()
    message["tool_calls"][0]["extra_content"] = {"google": {"thought_signature": "c2ln"}}
    part = translate(chat(user(), message, tool())).body["contents"][1]["parts"][0]
    assert part["thoughtSignature"] == "c2ln" and part["functionCall"]["id"] == "call_1"


# -- tools, tool_choice and generation ------------------------------------------------------------


TOOLS = [{"type": "function", "function": {"name": "f", "description": "F.", "parameters": {"type": "object"}}},
         {"type": "function", "function": {"name": "g"}}]


@pytest.mark.parametrize("choice, config", [
    ("auto", {"mode": "AUTO"}),
    ("none", {"mode": "NONE"}),
    ("required", {"mode": "ANY"}),
    ({"type": "function", "function": {"name": "g"}}, {"mode": "ANY", "allowedFunctionNames": ["g"]}),
    ({"type": "allowed_tools", "allowed_tools": {"mode": "auto", "tools": [{"type": "function", "function": {"name": "f"}}]}},
     {"mode": "VALIDATED", "allowedFunctionNames": ["f"]}),
    ({"type": "allowed_tools", "allowed_tools": {"mode": "required", "tools": [
        {"type": "function", "function": {"name": "f"}}, {"type": "function", "function": {"name": "g"}}]}},
     {"mode": "ANY", "allowedFunctionNames": ["f", "g"]}),
])
def test_tool_choice(choice, config):
    body = translate(chat(user(), tools=TOOLS, tool_choice=choice)).body
    assert body["toolConfig"] == {"functionCallingConfig": config}
    assert body["tools"] == [{"functionDeclarations": [
        {"name": "f", "description": "F.", "parametersJsonSchema": {"type": "object"}},
        {"name": "g", "description": ""}]}]


def test_custom_tools_are_dropped_or_refused():
    custom = {"type": "custom", "custom": {"name": "grammar"}}
    request = translate(chat(user(), tools=[custom, TOOLS[1]], tool_choice={"type": "custom", "custom": {"name": "grammar"}}))
    assert request.body["tools"] == [{"functionDeclarations": [{"name": "g", "description": ""}]}]
    assert "toolConfig" not in request.body
    assert request.notes == ["dropped tools[0]: 'custom' tools have no Gemini equivalent",
                             "dropped tool_choice: custom tools have no Gemini equivalent"]
    with pytest.raises(UnsupportedParam) as caught:
        translate(chat(user(), tools=[custom]), unsupported="refuse")
    assert caught.value.param == "tools[0]"


def test_tool_choice_without_tools_sends_no_tool_config():
    assert set(translate(chat(user(), tool_choice="none")).body) == {"contents"}


def test_generation_parameters():
    body = chat(user(), max_tokens=10, max_completion_tokens=200, temperature=0.3, top_p=0.9, n=2, seed=7,
                presence_penalty=0.5, frequency_penalty=-0.5, logprobs=True, top_logprobs=3, stop="END")
    assert translate(body).body["generationConfig"] == {
        "maxOutputTokens": 200, "temperature": 0.3, "topP": 0.9, "candidateCount": 2, "seed": 7,
        "presencePenalty": 0.5, "frequencyPenalty": -0.5, "responseLogprobs": True, "logprobs": 3,
        "stopSequences": ["END"]}
    assert translate(chat(user(), max_tokens=10, stop=["a", "b"])).body["generationConfig"] == {
        "maxOutputTokens": 10, "stopSequences": ["a", "b"]}


@pytest.mark.parametrize("response_format, config", [
    ({"type": "text"}, None),
    ({"type": "json_object"}, {"responseMimeType": "application/json"}),
    ({"type": "json_schema", "json_schema": {"name": "city", "strict": True, "schema": {
        "type": "object", "properties": {"name": {"type": "string"}}, "required": ["name"], "additionalProperties": False}}},
     {"responseMimeType": "application/json", "responseJsonSchema": {
         "type": "object", "properties": {"name": {"type": "string"}}, "required": ["name"], "additionalProperties": False}}),
    ({"type": "json_schema", "json_schema": {"name": "anything"}}, {"responseMimeType": "application/json"}),
])
def test_response_format(response_format, config):
    assert translate(chat(user(), response_format=response_format)).body.get("generationConfig") == config


@pytest.mark.parametrize("effort, budget", [("none", 0), ("low", 1024), ("medium", 8192), ("high", 24576)])
def test_reasoning_effort_sets_a_thinking_budget(effort, budget):
    request = translate(chat(user(), reasoning_effort=effort))
    assert request.body["generationConfig"] == {"thinkingConfig": {"thinkingBudget": budget}}


def test_reasoning_effort_without_a_budget_is_dropped_or_refused():
    request = translate(chat(user(), reasoning_effort="xhigh"))
    assert "generationConfig" not in request.body
    assert request.notes == ["dropped reasoning_effort: 'xhigh' has no Gemini thinking budget"]
    with pytest.raises(UnsupportedParam):
        translate(chat(user(), reasoning_effort="minimal"), unsupported="refuse")


@pytest.mark.parametrize("param, value", [
    ("logit_bias", {"50256": -100}),
    ("parallel_tool_calls", False),
    ("audio", {"voice": "alloy", "format": "wav"}),
    ("modalities", ["text", "audio"]),
    ("prediction", {"type": "content", "content": "x"}),
    ("web_search_options", {}),
    ("service_tier", "flex"),
    ("verbosity", "low"),
    ("functions", [{"name": "f"}]),
    ("function_call", "auto"),
    ("top_k", 40),  # not OpenAI's at all
])
def test_parameters_without_an_equivalent_are_dropped_with_a_note_or_refused(param, value):
    request = translate(chat(user(), **{param: value}))
    assert len(request.notes) == 1 and request.notes[0].startswith(f"dropped {param}: ")
    assert param not in json.dumps(request.body)
    with pytest.raises(UnsupportedParam) as caught:
        translate(chat(user(), **{param: value}), unsupported="refuse")
    assert caught.value.param == param and param in str(caught.value)


def test_defaults_and_bookkeeping_are_not_sent_and_not_noted():
    body = chat(user(), parallel_tool_calls=True, modalities=["text"], service_tier="auto", logit_bias=None,
                user="u-1", safety_identifier="s", metadata={"k": "v"}, store=True, stream=True,
                stream_options={"include_usage": True}, prompt_cache_key="p")
    request = translate(body, unsupported="refuse")
    assert request.notes == []
    assert request.body == {"contents": [{"role": "user", "parts": [{"text": "Hi"}]}]}


def test_deprecated_function_messages_are_dropped_with_a_note():
    request = translate(chat(user(), {"role": "function", "name": "f", "content": "x"}, user("again")))
    assert request.body["contents"] == [{"role": "user", "parts": [{"text": "Hi"}, {"text": "again"}]}]
    assert request.notes == ["dropped messages[1]: function messages are deprecated by OpenAI and not translated; send tool messages"]


def test_auth_headers():
    assert gemini_chat.auth_headers("AIza-key") == {"x-goog-api-key": "AIza-key"}


# -- whole responses --------------------------------------------------------------------------------


def test_text_response_fixture():
    answer = gemini_chat.chat_response(fixture_json("gemini", "generate_content_text.json"), "gemini-2.5-flash-alias")
    conforms("openai", OPENAI_CHAT, answer)
    assert answer["id"] == "chatcmpl-bzlXaa_EE_aHqtsPi_zw8Ao"
    assert answer["object"] == "chat.completion" and isinstance(answer["created"], int)
    assert answer["model"] == "gemini-2.5-flash"  # modelVersion beats the name asked for
    assert answer["choices"] == [{"index": 0, "message": {
        "role": "assistant", "content": "Hello! How can I help you today?", "refusal": None},
        "logprobs": None, "finish_reason": "stop"}]
    assert answer["usage"] == {"prompt_tokens": 9, "completion_tokens": 43, "total_tokens": 52,
                               "prompt_tokens_details": {"cached_tokens": 0},
                               "completion_tokens_details": {"reasoning_tokens": 34}}


def test_function_call_response_fixture():
    answer = gemini_chat.chat_response(fixture_json("gemini", "generate_content_function_call.json"), "m")
    conforms("openai", OPENAI_CHAT, answer)
    choice = answer["choices"][0]
    assert choice["finish_reason"] == "tool_calls" and choice["message"]["content"] is None
    (call,) = choice["message"]["tool_calls"]
    assert call["id"].startswith("call_") and call["type"] == "function"
    assert call["function"]["name"] == "weather"
    assert json.loads(call["function"]["arguments"]) == {"location": "San Francisco"}
    assert answer["usage"]["completion_tokens"] == 15 + 893 and answer["usage"]["total_tokens"] == 937


def candidate(parts, finish="STOP", **extra) -> dict:
    return {"content": {"role": "model", "parts": parts}, "finishReason": finish, **extra}


@pytest.mark.parametrize("reason, expected", [
    ("STOP", "stop"), ("MAX_TOKENS", "length"), ("SAFETY", "content_filter"), ("RECITATION", "content_filter"),
    ("BLOCKLIST", "content_filter"), ("PROHIBITED_CONTENT", "content_filter"), ("SPII", "content_filter"),
    ("IMAGE_SAFETY", "content_filter"), ("LANGUAGE", "stop"), ("OTHER", "stop"), ("MALFORMED_FUNCTION_CALL", "stop"),
    ("SOMETHING_NEW", "stop"),
])
def test_finish_reasons(reason, expected):
    answer = gemini_chat.chat_response({"candidates": [candidate([{"text": "x"}], reason)]}, "m")
    conforms("openai", OPENAI_CHAT, answer)
    assert answer["choices"][0]["finish_reason"] == expected


def test_thoughts_are_left_out_and_ids_kept():
    body = {"candidates": [candidate([
        {"text": "Let me think", "thought": True},
        {"text": "It is "}, {"text": "42."},
        {"functionCall": {"id": "fc-1", "name": "log", "args": {"n": 42}}},
    ])], "modelVersion": "gemini-2.5-pro"}
    answer = gemini_chat.chat_response(body, "m")
    conforms("openai", OPENAI_CHAT, answer)
    message = answer["choices"][0]["message"]
    assert message["content"] == "It is 42."
    assert message["tool_calls"] == [{"id": "fc-1", "type": "function", "function": {"name": "log", "arguments": '{"n": 42}'}}]
    assert answer["choices"][0]["finish_reason"] == "tool_calls"
    assert answer["id"].startswith("chatcmpl-") and answer["id"] != gemini_chat.chat_response(body, "m")["id"]
    assert "usage" not in answer


def test_several_candidates_become_several_choices():
    body = {"candidates": [candidate([{"text": "a"}]), candidate([{"text": "b"}], "MAX_TOKENS", index=1)]}
    answer = gemini_chat.chat_response(body, "m")
    conforms("openai", OPENAI_CHAT, answer)
    assert [(c["index"], c["message"]["content"], c["finish_reason"]) for c in answer["choices"]] == [
        (0, "a", "stop"), (1, "b", "length")]


def test_blocked_prompt_is_a_content_filter_finish():
    body = {"promptFeedback": {"blockReason": "SAFETY"}, "usageMetadata": {"promptTokenCount": 7, "totalTokenCount": 7}}
    answer = gemini_chat.chat_response(body, "gemini-2.5-flash")
    conforms("openai", OPENAI_CHAT, answer)
    assert answer["choices"] == [{"index": 0, "message": {"role": "assistant", "content": None, "refusal": None},
                                  "logprobs": None, "finish_reason": "content_filter"}]
    assert answer["usage"]["prompt_tokens"] == 7 and answer["usage"]["completion_tokens"] == 0
    assert answer["model"] == "gemini-2.5-flash"


def test_tool_use_and_cached_tokens_count_into_the_prompt():
    usage = {"promptTokenCount": 100, "cachedContentTokenCount": 60, "toolUsePromptTokenCount": 20,
             "candidatesTokenCount": 5, "thoughtsTokenCount": 7, "totalTokenCount": 132}
    answer = gemini_chat.chat_response({"candidates": [candidate([{"text": "ok"}])], "usageMetadata": usage}, "m")
    assert answer["usage"] == {"prompt_tokens": 120, "completion_tokens": 12, "total_tokens": 132,
                               "prompt_tokens_details": {"cached_tokens": 60},
                               "completion_tokens_details": {"reasoning_tokens": 7}}


def test_logprobs():
    result = {"chosenCandidates": [{"token": "Hé", "logProbability": -0.25}, {"token": "!"}],
              "topCandidates": [{"candidates": [{"token": "Hé", "logProbability": -0.25}, {"token": "Hi", "logProbability": -1.5}]},
                                {"candidates": [{"token": "!"}]}]}
    answer = gemini_chat.chat_response({"candidates": [candidate([{"text": "Hé!"}], logprobsResult=result)]}, "m")
    conforms("openai", OPENAI_CHAT, answer)
    content = answer["choices"][0]["logprobs"]["content"]
    assert content[0] == {"token": "Hé", "logprob": -0.25, "bytes": [72, 195, 169], "top_logprobs": [
        {"token": "Hé", "logprob": -0.25, "bytes": [72, 195, 169]}, {"token": "Hi", "logprob": -1.5, "bytes": [72, 105]}]}
    assert content[1]["logprob"] == 0.0  # proto3 JSON leaves zero out


@pytest.mark.parametrize("body, status", [
    (fixture_json("gemini", "error_429_resource_exhausted.json"), 429),
    (fixture_json("gemini", "error_400_api_key_invalid.json"), 400),
    ({"error": {"message": "quota", "status": "RESOURCE_EXHAUSTED"}}, 429),
    ({"error": {"message": "boom", "status": "INTERNAL"}}, 500),
    ("not json", 502),
])
def test_error_bodies_raise_with_their_http_status(body, status):
    with pytest.raises(ProviderStreamError) as caught:
        gemini_chat.chat_response(body, "m")
    assert caught.value.status == status


# -- streams ----------------------------------------------------------------------------------------

# fixture -> (text, tool calls {name: args}, finish_reason, prompt, completion, reasoning, model)
STREAMS = {
    "stream_generate_content_after_function_response.sse":
        ("The capital of Mexico is Mexico City.", {}, "stop", 257, 8, 0, "gemini-3-pro-preview"),
    "stream_generate_content_function_call.sse": ("", {"get_country": {}}, "tool_calls", 29, 10 + 202, 202, "gemini-3-pro-preview"),
    "stream_generate_content_text.sse": ("The capital of France is Paris.\n", {}, "stop", 13, 8, 0, "gemini-2.0-flash-exp"),
    "stream_generate_content_usage_growing.sse":
        ("\n".join(str(n) for n in range(1, 31)), {}, "stop", 18, 80 + 35, 35, "gemini-2.5-flash"),
    "vertex_stream_generate_content.sse": ("OK", {}, "stop", 5, 1 + 100, 100, "gemini-3-flash-preview"),
}


def events(pieces: list[bytes]) -> list[dict]:
    decoder = SSEDecoder()
    frames = [f for piece in pieces for f in decoder.feed(piece)] + decoder.close()
    return [json.loads(f.data) for f in frames if f.data]


def run(stream, payloads: list) -> list[dict]:
    chunks = [chunk for data in payloads for chunk in stream.feed(None, data)]
    return chunks + stream.close()


def test_every_stream_fixture_is_covered():
    assert sorted(STREAMS) == [n for n in fixture_names("gemini", ".sse") if "stream" in n]


@pytest.mark.parametrize("name", sorted(STREAMS))
def test_stream_fixtures(name):
    text, calls, finish, prompt, completion, reasoning, model = STREAMS[name]
    chunks = run(gemini_chat.chat_stream("asked-model", include_usage=True), events([fixture_bytes("gemini", name)]))
    for chunk in chunks:
        conforms("openai", OPENAI_CHAT_CHUNK, chunk)
    assert len({(c["id"], c["created"], c["model"]) for c in chunks}) == 1
    assert chunks[0]["id"].startswith("chatcmpl-") and chunks[0]["model"] == model
    assert chunks[0]["choices"][0]["delta"] == {"role": "assistant", "content": ""}
    *body, last = chunks
    assert all(c["usage"] is None for c in body)
    assert last["choices"] == [] and last["usage"] == {
        "prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion,
        "prompt_tokens_details": {"cached_tokens": 0}, "completion_tokens_details": {"reasoning_tokens": reasoning}}
    deltas = [c["choices"][0] for c in body]
    assert "".join(d["delta"].get("content") or "" for d in deltas) == text
    streamed = [t for d in deltas for t in d["delta"].get("tool_calls", ())]
    assert {t["function"]["name"]: json.loads(t["function"]["arguments"]) for t in streamed} == calls
    assert [t["index"] for t in streamed] == list(range(len(calls)))
    assert [d["finish_reason"] for d in deltas] == [None] * (len(deltas) - 1) + [finish]
    assert deltas[-1]["delta"] == {}


def without_call_ids(chunks: list[dict]) -> list[dict]:
    """chunks with minted tool call ids (random) and the clock's `created` blanked, for comparing two translations."""
    text = json.dumps([{**c, "created": 0} for c in chunks])
    for call in (t for c in chunks for ch in c["choices"] for t in ch["delta"].get("tool_calls", ())):
        text = text.replace(json.dumps(call["id"]), "null")
    return json.loads(text)


@pytest.mark.parametrize("name", sorted(STREAMS))
def test_stream_fixtures_in_any_chunking_translate_alike(name):
    data = fixture_bytes("gemini", name)
    whole = without_call_ids(run(gemini_chat.chat_stream("m", include_usage=True), events([data])))
    for seed in range(4):
        pieces = random_splits(data, random.Random(seed))
        assert without_call_ids(run(gemini_chat.chat_stream("m", include_usage=True), events(pieces))) == whole


def test_vertex_create_time_is_the_created_stamp():
    chunks = run(gemini_chat.chat_stream("m", include_usage=False),
                 events([fixture_bytes("gemini", "vertex_stream_generate_content.sse")]))
    assert {c["created"] for c in chunks} == {1774116715}  # createTime 2026-03-21T18:11:55.919086Z


def test_stream_without_include_usage_has_no_usage_at_all():
    chunks = run(gemini_chat.chat_stream("m", include_usage=False),
                 events([fixture_bytes("gemini", "stream_generate_content_usage_growing.sse")]))
    assert chunks and all("usage" not in c and c["choices"] for c in chunks)


def test_stream_function_call_keeps_its_thought_signature():
    payloads = events([fixture_bytes("gemini", "stream_generate_content_function_call.sse")])
    signature = payloads[0]["candidates"][0]["content"]["parts"][0]["thoughtSignature"]
    chunks = run(gemini_chat.chat_stream("m", include_usage=False), payloads)
    (call,) = [t for c in chunks for t in c["choices"][0]["delta"].get("tool_calls", ())]
    assert call["id"].startswith("call_") and call["id"].endswith(SIGNATURE_MARK + signature.replace("+", "-").replace("/", "_").rstrip("="))
    assert call["type"] == "function"


def text_chunk(text=None, finish=None, calls=(), usage=None, index=None) -> dict:
    parts = ([{"text": text}] if text is not None else []) + [{"functionCall": c} for c in calls]
    cand = {"content": {"role": "model", "parts": parts}}
    if finish:
        cand["finishReason"] = finish
    if index is not None:
        cand["index"] = index
    out = {"candidates": [cand], "responseId": "r1", "modelVersion": "gemini-x"}
    if usage:
        out["usageMetadata"] = usage
    return out


def test_stream_tool_calls_number_on_across_chunks():
    stream = gemini_chat.chat_stream("m", include_usage=False)
    chunks = run(stream, [text_chunk(calls=[{"name": "a", "args": {"x": 1}}, {"name": "b"}]),
                          text_chunk(calls=[{"name": "c", "id": "given", "args": {}}], finish="STOP")])
    streamed = [t for c in chunks for t in c["choices"][0]["delta"].get("tool_calls", ())]
    assert [(t["index"], t["function"]["name"], t["function"]["arguments"]) for t in streamed] == [
        (0, "a", '{"x": 1}'), (1, "b", "{}"), (2, "c", "{}")]
    assert streamed[2]["id"] == "given" and len({t["id"] for t in streamed}) == 3
    assert chunks[-1]["choices"][0]["finish_reason"] == "tool_calls"
    for chunk in chunks:
        conforms("openai", OPENAI_CHAT_CHUNK, chunk)


def test_stream_max_tokens_and_cut_off_streams():
    stream = gemini_chat.chat_stream("m", include_usage=True)
    chunks = run(stream, [text_chunk("a", usage={"promptTokenCount": 3}), text_chunk("b", "MAX_TOKENS")])
    assert [c["choices"][0]["finish_reason"] for c in chunks[:-1]] == [None, None, None, "length"]
    assert chunks[-1]["usage"]["prompt_tokens"] == 3
    # ended with no finishReason: nothing is made up, the usage chunk still comes
    cut = run(gemini_chat.chat_stream("m", include_usage=True), [text_chunk("a", usage={"promptTokenCount": 3})])
    assert [c["choices"][0]["finish_reason"] for c in cut[:-1]] == [None, None] and cut[-1]["choices"] == []
    # nothing at all: nothing owed
    assert gemini_chat.chat_stream("m", include_usage=True).close() == []


def test_stream_blocked_prompt_finishes_with_content_filter():
    stream = gemini_chat.chat_stream("m", include_usage=True)
    chunks = run(stream, [{"promptFeedback": {"blockReason": "PROHIBITED_CONTENT"},
                           "usageMetadata": {"promptTokenCount": 4, "totalTokenCount": 4}}])
    assert [c["choices"][0]["delta"] for c in chunks[:2]] == [{"role": "assistant", "content": ""}, {}]
    assert chunks[1]["choices"][0]["finish_reason"] == "content_filter"
    assert chunks[2]["usage"]["prompt_tokens"] == 4
    for chunk in chunks:
        conforms("openai", OPENAI_CHAT_CHUNK, chunk)


def test_stream_candidates_interleave_by_index():
    stream = gemini_chat.chat_stream("m", include_usage=False)
    first = {"candidates": [{"content": {"parts": [{"text": "a"}]}}, {"content": {"parts": [{"text": "b"}]}, "index": 1}]}
    last = {"candidates": [{"content": {"parts": [{"text": "!"}]}, "finishReason": "STOP"},
                           {"content": {"parts": []}, "finishReason": "SAFETY", "index": 1}]}
    chunks = run(stream, [first, last])
    by_index: dict[int, list] = {}
    for chunk in chunks:
        (choice,) = chunk["choices"]
        by_index.setdefault(choice["index"], []).append(choice)
    assert "".join(c["delta"].get("content", "") for c in by_index[0]) == "a!"
    assert [c["finish_reason"] for c in by_index[1]] == [None, None, "content_filter"]


@pytest.mark.parametrize("chunk, status", [
    (fixture_json("gemini", "error_429_resource_exhausted.json"), 429),
    ({"error": {"code": 503, "message": "The model is overloaded.", "status": "UNAVAILABLE"}}, 503),
    ({"error": {"message": "Internal error", "status": "INTERNAL"}}, 500),
])
def test_stream_error_chunks_raise(chunk, status):
    stream = gemini_chat.chat_stream("m", include_usage=True)
    assert stream.feed(None, text_chunk("partial"))
    with pytest.raises(ProviderStreamError) as caught:
        stream.feed(None, chunk)
    assert caught.value.status == status and str(caught.value)


def test_stream_logprobs_ride_on_content_chunks():
    data = text_chunk("Hi")
    data["candidates"][0]["logprobsResult"] = {"chosenCandidates": [{"token": "Hi", "logProbability": -0.5}]}
    chunks = gemini_chat.chat_stream("m", include_usage=False).feed(None, data)
    conforms("openai", OPENAI_CHAT_CHUNK, chunks[1])
    assert chunks[1]["choices"][0]["logprobs"] == {
        "content": [{"token": "Hi", "logprob": -0.5, "bytes": [72, 105], "top_logprobs": []}], "refusal": None}
