"""OpenAI chat <-> Anthropic Messages: requests from real OpenAI request fixtures and hand-written
bodies (checked against Anthropic's CreateMessageParams), replies and streams from every Anthropic
fixture (checked against OpenAI's chat.completion and chunk schemas)."""

from __future__ import annotations

import json
import random

import pytest
from specs import ANTHROPIC_REQUEST, OPENAI_CHAT, OPENAI_CHAT_CHUNK, conforms
from support import fixture_bytes, fixture_json, fixture_names, random_splits

from providers.anthropic.chat import DEFAULT_MAX_TOKENS, JSON_OBJECT_INSTRUCTION, NO_EQUIVALENT, AnthropicChat
from providers.chat import InvalidRequest, ProviderStreamError, UnsupportedParam
from providers.sse import SSEDecoder

NOW = 1_760_000_000
chat = AnthropicChat(clock=lambda: NOW + 0.9)
MODEL = "claude-sonnet-4-5"
USER = {"role": "user", "content": "Hi"}
WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Weather in a city",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
    },
}
TIME = {"type": "function", "function": {"name": "get_time", "parameters": {"type": "object", "properties": {}}}}


def translate(body, unsupported="drop", stream=False):
    """The upstream request, held to Anthropic's CreateMessageParams."""
    req = chat.chat_request(body, MODEL, stream=stream, unsupported=unsupported)
    conforms("anthropic", ANTHROPIC_REQUEST, req.body)
    return req


def call(call_id, name, arguments):
    return {"id": call_id, "type": "function", "function": {"name": name, "arguments": arguments}}


# -- requests from real OpenAI request fixtures ----------------------------------------------------

CHAT_REQUESTS = [
    ("openai", name)
    for name in (
        "chat_completion_stream_parallel_tool_calls_include_usage.request.json",
        "chat_completion_stream_text_after_tool_result_include_usage.request.json",
        "chat_completion_stream_tool_call_include_usage.request.json",
    )
] + [
    ("openai-compatible", f"{name}.request.json")
    for name in (
        "deepseek_chat_stream_reasoning_include_usage",
        "groq_chat_stream_compound_x_groq_usage",
        "groq_error_400_tool_use_failed",
        "huggingface_router_together_chat_stream",
        "mistral_chat_stream_thinking",
        "ollama_v1_chat_completion",
        "openrouter_chat_stream_anthropic_cache_control",
        "openrouter_chat_stream_midstream_error",
        "openrouter_chat_stream_usage_cost",
    )
]


@pytest.mark.parametrize("provider,name", CHAT_REQUESTS)
def test_every_captured_chat_request_translates_to_a_valid_messages_body(provider, name):
    body = fixture_json(provider, name)["body"]
    req = translate(body, stream=body.get("stream") is True)
    assert req.path == "/v1/messages" and req.headers == {"anthropic-version": "2023-06-01"}
    assert req.body["model"] == MODEL and req.body["stream"] is (body.get("stream") is True)
    assert req.body["messages"][0]["role"] == "user"


def test_tool_round_trip_fixture_becomes_tool_use_and_tool_result():
    body = fixture_json("openai", "chat_completion_stream_text_after_tool_result_include_usage.request.json")["body"]
    req = translate(body, stream=True)
    assert req.body["messages"] == [
        {
            "role": "user",
            "content": [{"type": "text", "text": "What is the capital of the UK? Use the tool, then answer."}],
        },
        {
            "role": "assistant",
            "content": [
                {
                    "type": "tool_use",
                    "id": "call_ZR5UUuTt3pf61kjwAJIYdVMj",
                    "name": "get_capital",
                    "input": {"country": "UK"},
                }
            ],
        },
        {
            "role": "user",
            "content": [
                {
                    "type": "tool_result",
                    "tool_use_id": "call_ZR5UUuTt3pf61kjwAJIYdVMj",
                    "content": [{"type": "text", "text": "London"}],
                }
            ],
        },
    ]
    assert req.body["tools"] == [
        {"name": "get_capital", "strict": True, "input_schema": body["tools"][0]["function"]["parameters"]}
    ]
    assert req.body["tool_choice"] == {"type": "auto"}
    assert req.notes == []  # stream_options is the router's business, not a dropped parameter


def test_parallel_tools_fixture_keeps_every_tool_and_required_becomes_any():
    body = fixture_json("openai", "chat_completion_stream_parallel_tool_calls_include_usage.request.json")["body"]
    req = translate(body, stream=True)
    assert [t["name"] for t in req.body["tools"]] == [t["function"]["name"] for t in body["tools"]]
    final = next(t for t in req.body["tools"] if t["name"] == "final_result")
    assert final["input_schema"]["$defs"]["Answer"]["required"] == ["label", "answer"]
    assert "description" not in req.body["tools"][0]  # "" is no description
    assert req.body["tool_choice"] == {"type": "any"}


def test_fixture_system_message_and_n1_and_cache_control():
    groq = translate(fixture_json("openai-compatible", "groq_error_400_tool_use_failed.request.json")["body"])
    assert groq.body["system"] == [
        {"type": "text", "text": "Be concise. Never use pretty double quotes, just regular ones."}
    ]
    assert groq.notes == []  # n: 1 asks for nothing Anthropic lacks
    routed = translate(
        fixture_json("openai-compatible", "openrouter_chat_stream_anthropic_cache_control.request.json")["body"]
    )
    assert routed.body["system"][0]["cache_control"] == {"ttl": "5m", "type": "ephemeral"}
    assert routed.body["messages"][0]["content"][0]["cache_control"] == {"ttl": "5m", "type": "ephemeral"}


def test_fixture_json_schema_and_max_completion_tokens():
    ollama = fixture_json("openai-compatible", "ollama_v1_chat_completion.request.json")["body"]
    req = translate(ollama)
    assert req.body["output_config"] == {
        "format": {"type": "json_schema", "schema": ollama["response_format"]["json_schema"]["schema"]}
    }
    assert "output_format" not in req.body  # deprecated in the spec
    midstream = translate(
        fixture_json("openai-compatible", "openrouter_chat_stream_midstream_error.request.json")["body"]
    )
    assert midstream.body["max_tokens"] == 10


def test_fixture_with_openrouter_only_fields_notes_or_refuses_them():
    body = fixture_json("openai-compatible", "openrouter_chat_stream_usage_cost.request.json")["body"]
    assert sorted(n.split(":")[0] for n in translate(body).notes) == [
        "dropped models",
        "dropped provider",
        "dropped transforms",
    ]
    with pytest.raises(UnsupportedParam) as err:
        translate(body, "refuse")
    assert err.value.param == "models"


# -- requests: messages ------------------------------------------------------------------------------


def test_system_and_developer_messages_join_the_system_prompt_in_order():
    req = translate(
        {
            "messages": [
                {"role": "system", "content": "Be brief."},
                USER,
                {
                    "role": "developer",
                    "content": [{"type": "text", "text": "Use French."}, {"type": "text", "text": "No emoji."}],
                },
                {"role": "assistant", "content": "Bonjour"},
            ]
        }
    )
    assert req.body["system"] == [{"type": "text", "text": t} for t in ("Be brief.", "Use French.", "No emoji.")]
    assert [m["role"] for m in req.body["messages"]] == ["user", "assistant"]


def test_consecutive_turns_of_one_role_merge_so_roles_alternate():
    req = translate(
        {
            "messages": [
                USER,
                {"role": "user", "content": "there"},
                {"role": "assistant", "content": "A"},
                {"role": "assistant", "content": None},
                {"role": "assistant", "content": "B"},
            ]
        }
    )
    assert req.body["messages"] == [
        {"role": "user", "content": [{"type": "text", "text": "Hi"}, {"type": "text", "text": "there"}]},
        {"role": "assistant", "content": [{"type": "text", "text": "A"}, {"type": "text", "text": "B"}]},
    ]


def test_image_parts_by_url_and_inline_base64():
    req = translate(
        {
            "messages": [
                {
                    "role": "user",
                    "content": [
                        {"type": "text", "text": "Compare"},
                        {"type": "image_url", "image_url": {"url": "https://example.com/cat.jpg", "detail": "high"}},
                        {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}},
                    ],
                }
            ]
        }
    )
    assert req.body["messages"][0]["content"][1:] == [
        {"type": "image", "source": {"type": "url", "url": "https://example.com/cat.jpg"}},
        {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "iVBORw0KGgo="}},
    ]


@pytest.mark.parametrize("url", ["ftp://example.com/a.png", "data:image/png,notbase64", "data:;base64,AAAA", ""])
def test_images_anthropic_cannot_fetch_are_invalid(url):
    with pytest.raises(InvalidRequest) as err:
        translate({"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": url}}]}]})
    assert err.value.param == "messages[0].content[0].image_url.url"


def test_pdf_file_part_becomes_a_document_and_a_file_id_is_dropped():
    pdf = {"type": "file", "file": {"filename": "a.pdf", "file_data": "data:application/pdf;base64,JVBERi0x"}}
    by_id = {"type": "file", "file": {"file_id": "file-abc"}}
    req = translate({"messages": [{"role": "user", "content": [{"type": "text", "text": "Sum up"}, pdf, by_id]}]})
    assert req.body["messages"][0]["content"][1] == {
        "type": "document",
        "source": {"type": "base64", "media_type": "application/pdf", "data": "JVBERi0x"},
    }
    assert len(req.body["messages"][0]["content"]) == 2
    assert req.notes[0].startswith("dropped messages[0].content[2]:")


def test_audio_part_is_dropped_with_a_note_or_refused_naming_its_path():
    body = {
        "messages": [
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "Transcribe"},
                    {"type": "input_audio", "input_audio": {"data": "AAAA", "format": "wav"}},
                ],
            }
        ]
    }
    req = translate(body)
    assert req.body["messages"][0]["content"] == [{"type": "text", "text": "Transcribe"}]
    assert req.notes == ["dropped messages[0].content[1]: input_audio content parts have no Anthropic equivalent"]
    with pytest.raises(UnsupportedParam) as err:
        translate(body, "refuse")
    assert err.value.param == "messages[0].content[1]"


def test_parallel_tool_calls_and_their_results_go_in_one_user_turn():
    req = translate(
        {
            "messages": [
                {"role": "user", "content": "Weather in Paris and the time?"},
                {
                    "role": "assistant",
                    "content": "Checking.",
                    "tool_calls": [call("call_1", "get_weather", '{"city": "Paris"}'), call("call_2", "get_time", "")],
                },
                {"role": "tool", "tool_call_id": "call_1", "content": "Sunny"},
                {"role": "tool", "tool_call_id": "call_2", "content": [{"type": "text", "text": "12:00"}]},
                {"role": "user", "content": "Thanks"},
            ],
            "tools": [WEATHER, TIME],
        }
    )
    assistant, results = req.body["messages"][1:]
    assert assistant["content"] == [
        {"type": "text", "text": "Checking."},
        {"type": "tool_use", "id": "call_1", "name": "get_weather", "input": {"city": "Paris"}},
        {"type": "tool_use", "id": "call_2", "name": "get_time", "input": {}},
    ]
    assert results == {
        "role": "user",
        "content": [
            {"type": "tool_result", "tool_use_id": "call_1", "content": [{"type": "text", "text": "Sunny"}]},
            {"type": "tool_result", "tool_use_id": "call_2", "content": [{"type": "text", "text": "12:00"}]},
            {"type": "text", "text": "Thanks"},
        ],
    }


def test_tool_results_open_their_user_turn_even_after_user_text():
    req = translate(
        {
            "messages": [
                USER,
                {"role": "assistant", "tool_calls": [call("call_1", "get_time", "{}")], "content": None},
                {"role": "user", "content": "(result below)"},
                {"role": "tool", "tool_call_id": "call_1", "content": "noon"},
            ],
            "tools": [TIME],
        }
    )
    assert [b["type"] for b in req.body["messages"][2]["content"]] == ["tool_result", "text"]


@pytest.mark.parametrize("arguments", ['{"city": ', "[1, 2]", "null"])
def test_tool_call_arguments_that_are_not_a_json_object_name_their_path(arguments):
    body = {
        "messages": [
            USER,
            {"role": "assistant", "content": "ok"},
            {"role": "assistant", "tool_calls": [call("call_1", "get_weather", arguments)]},
        ]
    }
    with pytest.raises(InvalidRequest) as err:
        translate(body)
    assert err.value.param == "messages[2].tool_calls[0].function.arguments"


def test_earlier_assistant_refusal_part_stays_in_history_as_text():
    req = translate(
        {"messages": [USER, {"role": "assistant", "content": [{"type": "refusal", "refusal": "I can't."}]}, USER]}
    )
    assert req.body["messages"][1]["content"] == [{"type": "text", "text": "I can't."}]


def test_openai_prompt_cache_breakpoint_becomes_cache_control():
    req = translate(
        {
            "messages": [
                {
                    "role": "user",
                    "content": [
                        {"type": "text", "text": "long context", "prompt_cache_breakpoint": {"mode": "explicit"}}
                    ],
                }
            ]
        }
    )
    assert req.body["messages"][0]["content"][0]["cache_control"] == {"type": "ephemeral"}


@pytest.mark.parametrize(
    "body,param",
    [
        ([USER], None),
        ({"model": "x"}, "messages"),
        ({"messages": []}, "messages"),
        ({"messages": "Hi"}, "messages"),
        ({"messages": [{"role": "system", "content": "Only a system prompt"}]}, "messages"),
        ({"messages": [USER, {"role": "function", "name": "f", "content": "x"}]}, "messages[1].role"),
        ({"messages": [USER, "Hi"]}, "messages[1]"),
        ({"messages": [{"role": "tool", "content": "x"}]}, "messages[0].tool_call_id"),
        ({"messages": [{"role": "user", "content": 5}]}, "messages[0].content"),
        ({"messages": [USER], "tools": [{"type": "function", "function": {}}]}, "tools[0].function.name"),
    ],
)
def test_bodies_that_cannot_be_translated_are_invalid_requests(body, param):
    with pytest.raises(InvalidRequest) as err:
        chat.chat_request(body, MODEL, stream=False)
    assert err.value.param == param


# -- requests: parameters ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "choice,expected",
    [
        ("auto", {"type": "auto"}),
        ("required", {"type": "any"}),
        ("none", {"type": "none"}),
        ({"type": "function", "function": {"name": "get_time"}}, {"type": "tool", "name": "get_time"}),
        (None, None),
    ],
)
def test_tool_choice_forms(choice, expected):
    req = translate({"messages": [USER], "tools": [WEATHER, TIME], "tool_choice": choice})
    assert req.body.get("tool_choice") == expected
    assert req.body["tools"][0] == {
        "name": "get_weather",
        "description": "Weather in a city",
        "input_schema": WEATHER["function"]["parameters"],
    }


def test_allowed_tools_choice_narrows_the_tools_offered():
    choice = {
        "type": "allowed_tools",
        "allowed_tools": {"mode": "required", "tools": [{"type": "function", "function": {"name": "get_time"}}]},
    }
    req = translate({"messages": [USER], "tools": [WEATHER, TIME], "tool_choice": choice})
    assert [t["name"] for t in req.body["tools"]] == ["get_time"]
    assert req.body["tool_choice"] == {"type": "any"}


@pytest.mark.parametrize(
    "choice,expected",
    [
        (None, {"type": "auto", "disable_parallel_tool_use": True}),
        ("required", {"type": "any", "disable_parallel_tool_use": True}),
        ("none", {"type": "none"}),  # ToolChoiceNone takes no other field
    ],
)
def test_parallel_tool_calls_false_disables_parallel_tool_use(choice, expected):
    req = translate({"messages": [USER], "tools": [WEATHER], "tool_choice": choice, "parallel_tool_calls": False})
    assert req.body["tool_choice"] == expected


def test_tool_choice_without_tools_is_not_sent():
    req = translate({"messages": [USER], "tools": [], "tool_choice": "none", "parallel_tool_calls": False})
    assert "tools" not in req.body and "tool_choice" not in req.body and req.notes == []


def test_response_format_json_schema_uses_output_config_format():
    schema = {
        "type": "object",
        "properties": {"a": {"type": "integer"}},
        "required": ["a"],
        "additionalProperties": False,
    }
    fmt = {"type": "json_schema", "json_schema": {"name": "A", "strict": True, "schema": schema}}
    req = translate({"messages": [USER], "response_format": fmt, "reasoning_effort": "high"})
    assert req.body["output_config"] == {"format": {"type": "json_schema", "schema": schema}, "effort": "high"}
    assert "system" not in req.body and req.notes == []


def test_response_format_json_object_asks_in_the_system_prompt_with_a_note():
    req = translate(
        {
            "messages": [{"role": "system", "content": "You list fruit."}, USER],
            "response_format": {"type": "json_object"},
        }
    )
    assert req.body["system"] == [
        {"type": "text", "text": "You list fruit."},
        {"type": "text", "text": JSON_OBJECT_INSTRUCTION},
    ]
    assert "output_config" not in req.body
    assert req.notes == ["response_format json_object without a schema: asked for a JSON object in the system prompt"]
    assert "system" not in translate({"messages": [USER], "response_format": {"type": "text"}}).body
    with pytest.raises(InvalidRequest) as err:
        translate({"messages": [USER], "response_format": {"type": "yaml"}})
    assert err.value.param == "response_format.type"


@pytest.mark.parametrize(
    "stop,expected", [("END", ["END"]), (["\n\n", "END"], ["\n\n", "END"]), ([], None), (None, None)]
)
def test_stop_becomes_stop_sequences(stop, expected):
    assert translate({"messages": [USER], "stop": stop}).body.get("stop_sequences") == expected


@pytest.mark.parametrize(
    "params,expected",
    [
        ({}, DEFAULT_MAX_TOKENS),
        ({"max_tokens": 300}, 300),
        ({"max_completion_tokens": 200, "max_tokens": 300}, 200),
        ({"max_completion_tokens": None, "max_tokens": 300}, 300),
    ],
)
def test_max_tokens_is_always_sent(params, expected):
    assert translate({"messages": [USER], **params}).body["max_tokens"] == expected


@pytest.mark.parametrize(
    "params,param",
    [
        ({"max_tokens": 0}, "max_tokens"),
        ({"max_completion_tokens": "9"}, "max_completion_tokens"),
        ({"temperature": "hot"}, "temperature"),
        ({"stop": [1]}, "stop"),
        ({"tool_choice": "sometimes", "tools": [TIME]}, "tool_choice"),
        ({"reasoning_effort": "huge"}, "reasoning_effort"),
    ],
)
def test_malformed_parameters_are_invalid(params, param):
    with pytest.raises(InvalidRequest) as err:
        translate({"messages": [USER], **params})
    assert err.value.param == param


def test_temperature_above_one_is_clamped_with_a_note_and_top_p_passes():
    req = translate({"messages": [USER], "temperature": 1.6, "top_p": 0.9})
    assert (req.body["temperature"], req.body["top_p"]) == (1.0, 0.9)
    assert req.notes == ["clamped temperature 1.6 to 1.0: Anthropic allows 0..1"]
    assert translate({"messages": [USER], "temperature": 0.2}).notes == []


def test_end_user_id_goes_to_metadata():
    assert translate({"messages": [USER], "user": "u-1"}).body["metadata"] == {"user_id": "u-1"}
    both = translate({"messages": [USER], "user": "u-1", "safety_identifier": "hash-9", "metadata": {"k": "v"}})
    assert both.body["metadata"] == {"user_id": "hash-9"} and both.notes == []


@pytest.mark.parametrize("effort,expected", [("low", "low"), ("max", "max"), ("minimal", "low"), ("none", None)])
def test_reasoning_effort_maps_to_output_config_effort(effort, expected):
    req = translate({"messages": [USER], "reasoning_effort": effort})
    assert req.body.get("output_config", {}).get("effort") == expected
    assert bool(req.notes) is (effort == "minimal")


ASKING = {
    "n": 2,
    "logprobs": True,
    "top_logprobs": 3,
    "presence_penalty": 0.5,
    "frequency_penalty": -0.5,
    "logit_bias": {"50256": -100},
    "seed": 7,
    "audio": {"voice": "alloy", "format": "mp3"},
    "modalities": ["text", "audio"],
    "prediction": {"type": "content", "content": "x"},
    "verbosity": "low",
    "service_tier": "flex",
    "web_search_options": {},
    "moderation": {"model": "omni-moderation-latest"},
    "functions": [{"name": "f"}],
    "function_call": "auto",
}


def test_every_parameter_without_an_equivalent_has_a_test_value():
    assert set(ASKING) == set(NO_EQUIVALENT)


@pytest.mark.parametrize("param", sorted(ASKING))
def test_parameter_without_equivalent_is_dropped_with_a_note_or_refused(param):
    body = {"messages": [USER], param: ASKING[param]}
    req = translate(body)
    assert param not in req.body
    assert req.notes == [f"dropped {param}: {NO_EQUIVALENT[param][1]}"]
    with pytest.raises(UnsupportedParam) as err:
        translate(body, "refuse")
    assert err.value.param == param and param in str(err.value)


def test_default_values_of_those_parameters_pass_silently_even_when_refusing():
    body = {
        "messages": [USER],
        "n": 1,
        "logprobs": False,
        "top_logprobs": 0,
        "presence_penalty": 0,
        "frequency_penalty": 0.0,
        "logit_bias": {},
        "seed": None,
        "modalities": ["text"],
        "verbosity": "medium",
        "service_tier": "auto",
        "store": True,
        "stream_options": {"include_usage": True},
        "parallel_tool_calls": True,
    }
    assert translate(body, "refuse").notes == []


def test_custom_tools_and_non_text_system_parts_are_dropped_or_refused():
    custom = {"type": "custom", "custom": {"name": "grammar_tool"}}
    body = {"messages": [USER], "tools": [custom, TIME], "tool_choice": {"type": "custom", "custom": {"name": "x"}}}
    req = translate(body)
    assert [t["name"] for t in req.body["tools"]] == ["get_time"] and "tool_choice" not in req.body
    assert [n.split(":")[0] for n in req.notes] == ["dropped tools[0]", "dropped tool_choice"]
    with pytest.raises(UnsupportedParam) as err:
        translate(body, "refuse")
    assert err.value.param == "tools[0]"
    image = {"type": "image_url", "image_url": {"url": "https://example.com/logo.png"}}
    system = {"role": "system", "content": [{"type": "text", "text": "Brand voice"}, image]}
    req = translate({"messages": [system, USER]})
    assert req.body["system"] == [{"type": "text", "text": "Brand voice"}]
    assert req.notes == ["dropped messages[0].content: Anthropic's system prompt takes text only"]


def test_json_schema_without_a_schema_falls_back_to_the_instruction():
    req = translate({"messages": [USER], "response_format": {"type": "json_schema", "json_schema": {"name": "A"}}})
    assert req.body["system"] == [{"type": "text", "text": JSON_OBJECT_INSTRUCTION}] and "output_config" not in req.body


def test_stream_flag_comes_from_the_router_not_the_body():
    assert translate({"messages": [USER], "stream": False}, stream=True).body["stream"] is True
    assert translate({"messages": [USER], "stream": True}).body["stream"] is False


def test_auth_header_is_x_api_key():
    assert chat.auth_headers("sk-ant-1") == {"x-api-key": "sk-ant-1"}


# -- whole responses -------------------------------------------------------------------------------

# fixture -> (content, tool calls as (id, name, input), finish_reason, usage)
RESPONSES = {
    "messages_text.json": (
        '{"product_name": "Green Tea", "price": 5.50, "quantity": 2}',
        [],
        "stop",
        {"prompt_tokens": 249, "completion_tokens": 26, "total_tokens": 275, "cached": 0, "written": 0},
    ),
    "messages_text_simple.json": (
        "Hello! I'm doing well, thanks for asking. How are you doing today? Is there anything I can help you with?",
        [],
        "stop",
        {"prompt_tokens": 12, "completion_tokens": 29, "total_tokens": 41, "cached": 0, "written": 0},
    ),
    "messages_tool_use.json": (
        None,
        [("toolu_01A9HHF5Ezy3oBrKmSgfASm9", "get_weather", {"location": "San Francisco, CA", "units": "f"})],
        "tool_calls",
        {"prompt_tokens": 656, "completion_tokens": 74, "total_tokens": 730, "cached": 0, "written": 0},
    ),
    # input_tokens 3 is the uncached part: 3 + 418 written + 1111 read.
    "messages_prompt_cache_read_and_write.json": (
        "Python is a beginner-friendly, versatile programming language widely used for web development, data science, "
        "machine learning, automation, and scientific computing.",
        [],
        "stop",
        {"prompt_tokens": 1532, "completion_tokens": 33, "total_tokens": 1565, "cached": 1111, "written": 418},
    ),
    # The server_tool_use block ran at Anthropic; only the client tool_use is the client's to run.
    "messages_programmatic_tool_call_with_ratelimit_headers.json": (
        "I'll check the weather for all three cities in Celsius simultaneously.",
        [("toolu_011MDRpaZRMRRjtFkJizD6nS", "get_weather", {"location": "San Francisco, CA", "units": "c"})],
        "tool_calls",
        {"prompt_tokens": 3182, "completion_tokens": 237, "total_tokens": 3419, "cached": 0, "written": 0},
    ),
}


def test_every_message_fixture_has_expectations():
    assert set(RESPONSES) == set(fixture_names("anthropic", ".json")) - {
        n for n in fixture_names("anthropic", ".json") if n.startswith("error_")
    }


@pytest.mark.parametrize("name", sorted(RESPONSES))
def test_message_fixture_becomes_a_chat_completion(name):
    body = fixture_json("anthropic", name)
    out = chat.chat_response(body, "requested-model")
    conforms("openai", OPENAI_CHAT, out)
    content, calls, finish, usage = RESPONSES[name]
    assert (out["id"], out["object"], out["created"], out["model"]) == (
        f"chatcmpl-{body['id']}",
        "chat.completion",
        NOW,
        body["model"],
    )
    (choice,) = out["choices"]
    assert choice["message"]["content"] == content and choice["message"]["refusal"] is None
    assert choice["finish_reason"] == finish and choice["logprobs"] is None
    got = [
        (c["id"], c["function"]["name"], json.loads(c["function"]["arguments"]))
        for c in choice["message"].get("tool_calls", [])
    ]
    assert got == calls
    assert out["usage"] == {
        "prompt_tokens": usage["prompt_tokens"],
        "completion_tokens": usage["completion_tokens"],
        "total_tokens": usage["total_tokens"],
        "prompt_tokens_details": {"cached_tokens": usage["cached"], "cache_write_tokens": usage["written"]},
    }


@pytest.mark.parametrize(
    "stop_reason,finish",
    [
        ("end_turn", "stop"),
        ("stop_sequence", "stop"),
        ("pause_turn", "stop"),
        ("max_tokens", "length"),
        ("model_context_window_exceeded", "length"),
        ("tool_use", "tool_calls"),
        ("refusal", "content_filter"),
        ("new_reason", "stop"),
    ],
)
def test_stop_reasons_become_finish_reasons(stop_reason, finish):
    body = {**fixture_json("anthropic", "messages_text_simple.json"), "stop_reason": stop_reason}
    assert chat.chat_response(body, MODEL)["choices"][0]["finish_reason"] == finish


def test_thinking_stays_out_of_the_message_and_reasoning_tokens_are_reported():
    body = {
        **fixture_json("anthropic", "messages_text_simple.json"),
        "model": None,
        "content": [
            {"type": "thinking", "thinking": "Let me think", "signature": "sig"},
            {"type": "redacted_thinking", "data": "xx"},
            {"type": "text", "text": "Four."},
        ],
        "usage": {"input_tokens": 10, "output_tokens": 50, "output_tokens_details": {"thinking_tokens": 40}},
    }
    out = chat.chat_response(body, MODEL)
    conforms("openai", OPENAI_CHAT, out)
    assert out["model"] == MODEL and out["choices"][0]["message"]["content"] == "Four."
    assert out["usage"]["completion_tokens_details"] == {"reasoning_tokens": 40}


def test_a_body_without_content_is_a_provider_error():
    with pytest.raises(ProviderStreamError) as err:
        chat.chat_response({"type": "message"}, MODEL)
    assert err.value.status == 502


# -- streams ---------------------------------------------------------------------------------------


def events(name: str, rng: random.Random | None = None) -> list[tuple[str | None, dict]]:
    """The fixture's (event, parsed data) pairs, decoded by the real SSEDecoder from random splits."""
    decoder, frames = SSEDecoder(), []
    for piece in random_splits(fixture_bytes("anthropic", name), rng or random.Random(name)):
        frames += decoder.feed(piece)
    frames += decoder.close()
    return [(f.event, json.loads(f.data)) for f in frames if f.data]


def run(name: str, include_usage: bool, close: bool = True) -> list[dict]:
    stream = chat.chat_stream("requested-model", include_usage)
    chunks = [chunk for event, data in events(name) for chunk in stream.feed(event, data)]
    if close:
        chunks += stream.close()
    for chunk in chunks:
        conforms("openai", OPENAI_CHAT_CHUNK, chunk)
    return chunks


def carried(name: str) -> tuple[str, list[tuple[str, str, str]]]:
    """What the Anthropic events themselves say: the answer text and each client tool call's (id, name, input JSON)."""
    text, calls, tool_blocks = "", [], {}
    for _, data in events(name):
        if data["type"] == "content_block_start" and data["content_block"]["type"] == "tool_use":
            tool_blocks[data["index"]] = len(calls)
            calls.append([data["content_block"]["id"], data["content_block"]["name"], ""])
        elif data["type"] == "content_block_delta" and data["delta"]["type"] == "text_delta":
            text += data["delta"]["text"]
        elif data["type"] == "content_block_delta" and data["index"] in tool_blocks:
            calls[tool_blocks[data["index"]]][2] += data["delta"]["partial_json"]
    return text, [tuple(c) for c in calls]


def assemble(chunks: list[dict]) -> tuple[str, list[tuple[str, str, str]], list[str]]:
    """A client's view: text, tool calls by index, and every finish_reason sent."""
    text, calls, finishes = "", {}, []
    for chunk in chunks:
        for choice in chunk["choices"]:
            delta = choice["delta"]
            text += delta.get("content") or ""
            for tc in delta.get("tool_calls", []):
                entry = calls.setdefault(tc["index"], [None, None, ""])
                entry[0] = tc.get("id", entry[0])
                entry[1] = tc.get("function", {}).get("name", entry[1])
                entry[2] += tc.get("function", {}).get("arguments", "")
            if choice["finish_reason"]:
                finishes.append(choice["finish_reason"])
    return text, [tuple(calls[i]) for i in sorted(calls)], finishes


# fixture -> (finish_reason, OpenAI usage or None for no usage chunk)
STREAMS = {
    "messages_stream_after_tool_result.sse": ("stop", (770, 38, 0, 0, None)),
    "messages_stream_extended_thinking.sse": ("stop", (43, 282, 0, 0, None)),
    # message_delta's counts win: 6 + 3337 written + 6289 read, not message_start's 2 + 3068.
    "messages_stream_prompt_cache_server_tools.sse": ("stop", (9632, 198, 6289, 3337, 0)),
    "messages_stream_text.sse": ("stop", (135, 10, 0, 0, None)),
    # This older message_delta carries output_tokens only; the input comes from message_start.
    "messages_stream_text_then_tool_use.sse": ("tool_calls", (377, 65, 0, 0, None)),
    "messages_stream_tool_use.sse": ("tool_calls", (656, 74, 0, 0, None)),
}


def test_every_stream_fixture_has_expectations():
    assert set(STREAMS) | {"messages_stream_error_overloaded.sse"} == set(fixture_names("anthropic", ".sse"))


@pytest.mark.parametrize("name", sorted(STREAMS))
def test_stream_fixture_becomes_chunks_carrying_the_same_answer(name):
    chunks = run(name, include_usage=True)
    start = events(name)[0][1]["message"]
    assert {(c["id"], c["created"], c["model"], c["object"]) for c in chunks} == {
        (f"chatcmpl-{start['id']}", NOW, start["model"], "chat.completion.chunk")
    }
    assert chunks[0]["choices"] == [
        {"index": 0, "delta": {"role": "assistant", "content": ""}, "logprobs": None, "finish_reason": None}
    ]
    text, calls = carried(name)
    finish, (prompt, completion, cached, written, reasoning) = STREAMS[name]
    assert assemble(chunks) == (text, calls, [finish])
    assert all(c["usage"] is None for c in chunks[:-1])
    usage = {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
        "prompt_tokens_details": {"cached_tokens": cached, "cache_write_tokens": written},
    }
    if reasoning is not None:
        usage["completion_tokens_details"] = {"reasoning_tokens": reasoning}
    assert chunks[-1]["choices"] == [] and chunks[-1]["usage"] == usage


@pytest.mark.parametrize("name", sorted(STREAMS))
def test_without_include_usage_no_chunk_has_usage(name):
    chunks = run(name, include_usage=False)
    assert all("usage" not in c and c["choices"] for c in chunks)
    assert assemble(chunks)[2] == [STREAMS[name][0]]


def test_usage_chunk_comes_once_whether_message_stop_or_close_ends_the_stream():
    stream = chat.chat_stream(MODEL, include_usage=True)
    chunks = [c for event, data in events("messages_stream_text.sse") for c in stream.feed(event, data)]
    assert [c["choices"] for c in chunks].count([]) == 1  # sent at message_stop
    assert stream.close() == [] and stream.close() == []


def test_a_stream_cut_before_message_stop_still_reports_usage_at_close():
    stream = chat.chat_stream(MODEL, include_usage=True)
    for event, data in events("messages_stream_text.sse")[:5]:
        stream.feed(event, data)
    (last,) = stream.close()
    assert last["choices"] == [] and last["usage"]["prompt_tokens"] == 135


def test_tool_calls_are_numbered_among_tool_blocks_only():
    _, calls, _ = assemble(run("messages_stream_text_then_tool_use.sse", include_usage=False))
    assert calls == [("toolu_01NRLabsLyVHZPKxbKvkfSMn", "get_weather", '{"location": "Paris"}')]
    tool_chunks = [
        c for c in run("messages_stream_text_then_tool_use.sse", False) if "tool_calls" in c["choices"][0]["delta"]
    ]
    assert tool_chunks[0]["choices"][0]["delta"]["tool_calls"] == [
        {
            "index": 0,
            "id": "toolu_01NRLabsLyVHZPKxbKvkfSMn",
            "type": "function",
            "function": {"name": "get_weather", "arguments": ""},
        }
    ]
    assert all(set(c["choices"][0]["delta"]["tool_calls"][0]) == {"index", "function"} for c in tool_chunks[1:])


def test_server_tools_and_thinking_produce_no_client_output():
    text, calls, _ = assemble(run("messages_stream_prompt_cache_server_tools.sse", False))
    assert calls == [] and text == "The sum of the squares of the numbers 1 through 12 is **650**."
    thinking = assemble(run("messages_stream_extended_thinking.sse", False))[0]
    assert thinking.startswith("Here are the basic steps") and "pedestrian safety" not in thinking


def test_error_event_raises_with_the_status_the_error_has_unstreamed():
    stream = chat.chat_stream(MODEL, include_usage=True)
    with pytest.raises(ProviderStreamError) as err:
        for event, data in events("messages_stream_error_overloaded.sse"):
            stream.feed(event, data)
    assert (err.value.status, err.value.type, str(err.value)) == (529, "overloaded_error", "Overloaded")


@pytest.mark.parametrize(
    "kind,status",
    [("rate_limit_error", 429), ("api_error", 500), ("invalid_request_error", 400), ("something_new", 500)],
)
def test_error_types_map_to_statuses(kind, status):
    stream = chat.chat_stream(MODEL, include_usage=False)
    stream.feed("message_start", events("messages_stream_text.sse")[0][1])
    with pytest.raises(ProviderStreamError) as err:
        stream.feed("error", {"type": "error", "error": {"type": kind, "message": "boom"}})
    assert err.value.status == status
