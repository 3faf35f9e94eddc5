"""specs.conforms passes real provider replies and rejects broken ones, so router tests that use it can fail."""

from __future__ import annotations

import copy
import json
import re

import pytest
from specs import (
    ALLOWANCES,
    ANTHROPIC_ERROR,
    ANTHROPIC_MESSAGE,
    ANTHROPIC_STREAM_EVENT,
    OPENAI_CHAT,
    OPENAI_CHAT_CHUNK,
    OPENAI_EMBEDDINGS,
    OPENAI_EMBEDDINGS_REQUEST,
    OPENAI_ERROR,
    OPENAI_MODELS,
    OPENAI_REQUEST,
    OPENAI_SPEC,
    _openapi_to_jsonschema,
    conforms,
    schema,
    violations,
)
from support import FIXTURES, fixture_json, fixture_names, load_script

from providers.openai.chat import DOCUMENTED_PARAMS


def sse_data(provider: str, name: str) -> list[dict]:
    """The JSON of each `data:` line of an SSE fixture, without OpenAI's closing [DONE]."""
    lines = (FIXTURES / provider / name).read_text().splitlines()
    return [json.loads(line[5:]) for line in lines if line.startswith("data:") and line[5:].strip() != "[DONE]"]


def anthropic_name(event: dict) -> str:
    return ANTHROPIC_ERROR if event["type"] == "error" else ANTHROPIC_STREAM_EVENT


# Every reply fixture of the two providers, with the component it is an instance of.
# Azure's are left out: test_azure_2023_reply_predates_the_spec says where they differ.
OPENAI_REPLIES = [
    *((OPENAI_CHAT, n) for n in fixture_names("openai", ".json") if n.startswith("chat_completion_")),
    (OPENAI_EMBEDDINGS, "embeddings_base64.json"),
    *((OPENAI_ERROR, n) for n in fixture_names("openai", ".json") if n.startswith("error_")),
]
OPENAI_STREAMS = [n for n in fixture_names("openai", ".sse") if n.startswith("chat_completion_stream_")]
ANTHROPIC_REPLIES = [
    (ANTHROPIC_ERROR if n.startswith("error_") else ANTHROPIC_MESSAGE, n) for n in fixture_names("anthropic", ".json")
]
ANTHROPIC_STREAMS = fixture_names("anthropic", ".sse")


def test_the_fixtures_the_router_tests_lean_on_are_covered():
    for name in (
        "chat_completion_text.json",
        "chat_completion_tool_call.json",
        "chat_completion_parallel_tool_calls.json",
    ):
        assert (OPENAI_CHAT, name) in OPENAI_REPLIES
    assert (OPENAI_ERROR, "error_404_model_not_found.json") in OPENAI_REPLIES
    assert "chat_completion_stream_tool_call_include_usage.sse" in OPENAI_STREAMS
    for name in ("messages_text.json", "messages_tool_use.json"):
        assert (ANTHROPIC_MESSAGE, name) in ANTHROPIC_REPLIES
    assert (ANTHROPIC_ERROR, "error_529_overloaded.json") in ANTHROPIC_REPLIES


@pytest.mark.parametrize("name, fixture", OPENAI_REPLIES)
def test_openai_reply_conforms(name, fixture):
    conforms("openai", name, fixture_json("openai", fixture))


@pytest.mark.parametrize("fixture", OPENAI_STREAMS)
def test_openai_stream_chunks_conform(fixture):
    chunks = sse_data("openai", fixture)
    assert chunks
    for chunk in chunks:
        conforms("openai", OPENAI_CHAT_CHUNK, chunk)


@pytest.mark.parametrize("name, fixture", ANTHROPIC_REPLIES)
def test_anthropic_reply_conforms(name, fixture):
    conforms("anthropic", name, fixture_json("anthropic", fixture))


@pytest.mark.parametrize("fixture", ANTHROPIC_STREAMS)
def test_anthropic_stream_events_conform(fixture):
    events = sse_data("anthropic", fixture)
    assert events
    for event in events:
        conforms("anthropic", anthropic_name(event), event)


def test_models_list_conforms():
    # No recorded fixture; the example of GET /v1/models in the OpenAI API reference.
    models = {
        "object": "list",
        "data": [{"id": "gpt-4o", "object": "model", "created": 1715367049, "owned_by": "system"}],
    }
    conforms("openai", OPENAI_MODELS, models)
    del models["data"][0]["owned_by"]
    with pytest.raises(AssertionError, match=r"\$\.data\[0\] \(Model\): 'owned_by' is a required property"):
        conforms("openai", OPENAI_MODELS, models)


# Broken copies of real replies: each must be rejected, with the path of what broke.


@pytest.fixture
def chat():
    return fixture_json("openai", "chat_completion_tool_call.json")


@pytest.fixture
def chunk():
    return sse_data("openai", "chat_completion_stream_tool_call_include_usage.sse")[0]


def test_missing_choices_is_rejected(chat):
    del chat["choices"]
    with pytest.raises(AssertionError, match=r"\$ \(CreateChatCompletionResponse\): 'choices' is a required property"):
        conforms("openai", OPENAI_CHAT, chat)


def test_unknown_finish_reason_is_rejected(chat):
    chat["choices"][0]["finish_reason"] = "banana"
    with pytest.raises(AssertionError, match=r"\$\.choices\[0\]\.finish_reason: 'banana' is not one of"):
        conforms("openai", OPENAI_CHAT, chat)


def test_created_as_a_string_is_rejected(chat):
    chat["created"] = str(chat["created"])
    with pytest.raises(AssertionError, match=r"\$\.created: '\d+' is not of type 'integer'"):
        conforms("openai", OPENAI_CHAT, chat)


def test_chunk_with_the_object_of_a_whole_reply_is_rejected(chunk):
    chunk["object"] = "chat.completion"
    with pytest.raises(
        AssertionError, match=r"\$\.object: 'chat\.completion' is not one of \['chat\.completion\.chunk'\]"
    ):
        conforms("openai", OPENAI_CHAT_CHUNK, chunk)


def test_every_violation_is_listed(chat):
    chat["created"] = "now"
    chat["choices"][0]["finish_reason"] = "banana"
    del chat["choices"][0]["message"]["role"]
    with pytest.raises(AssertionError) as raised:
        conforms("openai", OPENAI_CHAT, chat)
    lines = str(raised.value).splitlines()
    assert lines[0] == "does not conform to openai CreateChatCompletionResponse:"
    assert [line.split(":")[0].strip() for line in lines[1:]] == [
        "$.choices[0].finish_reason",
        "$.choices[0].message (ChatCompletionResponseMessage)",
        "$.created",
    ]


def test_null_is_allowed_only_where_the_spec_says_nullable(chat, chunk):
    # OpenAPI 3.0's `nullable: true`, still in the 3.1 OpenAI spec: a chunk's finish_reason is nullable,
    # a whole reply's is not.
    assert chunk["choices"][0]["finish_reason"] is None
    conforms("openai", OPENAI_CHAT_CHUNK, chunk)
    chunk["choices"][0]["finish_reason"] = "banana"
    assert violations("openai", OPENAI_CHAT_CHUNK, chunk)
    chat["choices"][0]["finish_reason"] = None
    with pytest.raises(AssertionError, match=r"\$\.choices\[0\]\.finish_reason: None is not one of"):
        conforms("openai", OPENAI_CHAT, chat)


def test_embedding_of_the_wrong_type_is_rejected():
    reply = fixture_json("openai", "embeddings_base64.json")
    reply["data"][0]["embedding"] = 0.5
    with pytest.raises(AssertionError, match=r"\$\.data\[0\]\.embedding: matches none of its anyOf branches"):
        conforms("openai", OPENAI_EMBEDDINGS, reply)


def test_openai_error_without_message_is_rejected():
    error = fixture_json("openai", "error_404_model_not_found.json")
    del error["error"]["message"]
    with pytest.raises(AssertionError, match=r"\$\.error \(Error\): 'message' is a required property"):
        conforms("openai", OPENAI_ERROR, error)


def test_anthropic_message_with_an_unknown_stop_reason_is_rejected():
    message = fixture_json("anthropic", "messages_tool_use.json")
    message["stop_reason"] = "banana"
    with pytest.raises(AssertionError, match=r"\$\.stop_reason: matches none of its anyOf branches"):
        conforms("anthropic", ANTHROPIC_MESSAGE, message)


def test_anthropic_tool_use_without_input_names_the_block_it_meant():
    message = fixture_json("anthropic", "messages_tool_use.json")
    block = next(i for i, b in enumerate(message["content"]) if b["type"] == "tool_use")
    del message["content"][block]["input"]
    with pytest.raises(AssertionError) as raised:
        conforms("anthropic", ANTHROPIC_MESSAGE, message)
    assert f"$.content[{block}] (ToolUseBlock): 'input' is a required property" in str(raised.value)


def test_anthropic_stream_event_of_an_unknown_type_is_rejected():
    event = sse_data("anthropic", "messages_stream_tool_use.sse")[-1]
    assert event == {"type": "message_stop"}
    conforms("anthropic", ANTHROPIC_STREAM_EVENT, event)
    with pytest.raises(AssertionError, match="matches none of its anyOf branches"):
        conforms("anthropic", ANTHROPIC_STREAM_EVENT, {"type": "message_end"})


def test_anthropic_error_of_an_unknown_type_is_rejected():
    error = fixture_json("anthropic", "error_529_overloaded_2026.json")
    error["error"]["type"] = "overload"
    with pytest.raises(AssertionError, match=r"\$\.error: matches none of its anyOf branches"):
        conforms("anthropic", ANTHROPIC_ERROR, error)
    del error["error"]
    with pytest.raises(AssertionError, match="'error' is a required property"):
        conforms("anthropic", ANTHROPIC_ERROR, error)


# The allowances: exactly what real replies need.

REQUIRED = re.compile(r"\((\w+)\): '(\w+)' is a required property")


def strict_misses(spec: str, replies, streams) -> set[tuple[str, str, str]]:
    """(spec, component, property) of every required field absent from a fixture, ignoring ALLOWANCES."""
    objects = [(name, fixture_json(spec, fixture)) for name, fixture in replies]
    for fixture in streams:
        for event in sse_data(spec, fixture):
            objects.append((anthropic_name(event) if spec == "anthropic" else OPENAI_CHAT_CHUNK, event))
    found = set()
    for name, obj in objects:
        for line in violations(spec, name, obj, strict=True):
            if match := REQUIRED.search(line):
                found.add((spec, *match.groups()))
    return found


def test_anthropic_replies_leave_out_no_required_field():
    # The SDK's types make every field with a default optional, so no allowance is needed (specs.py).
    assert strict_misses("anthropic", ANTHROPIC_REPLIES, ANTHROPIC_STREAMS) == set()
    assert not [key for key in ALLOWANCES if key[0] == "anthropic"]


def test_openai_replies_leave_out_no_required_field():
    assert strict_misses("openai", OPENAI_REPLIES, OPENAI_STREAMS) == set()


def test_base64_embedding_breaks_the_strict_spec_only():
    reply = fixture_json("openai", "embeddings_base64.json")
    assert isinstance(reply["data"][0]["embedding"], str)
    with pytest.raises(AssertionError, match=r"\$\.data\[0\]\.embedding: '.*' is not of type 'array'"):
        conforms("openai", OPENAI_EMBEDDINGS, reply, strict=True)
    conforms("openai", OPENAI_EMBEDDINGS, reply)


def test_anthropic_message_without_usage_is_rejected():
    message = fixture_json("anthropic", "messages_text.json")
    del message["usage"]
    with pytest.raises(AssertionError, match=r"\$ \(Message\): 'usage' is a required property"):
        conforms("anthropic", ANTHROPIC_MESSAGE, message)


def test_anthropic_stream_events_include_ping_and_still_check_their_fields():
    conforms("anthropic", ANTHROPIC_STREAM_EVENT, {"type": "ping"})
    with pytest.raises(AssertionError, match=r"\$\.usage \(MessageDeltaUsage\): 'banana' is not of type 'object'"):
        conforms("anthropic", ANTHROPIC_STREAM_EVENT, {"type": "message_delta", "delta": {}, "usage": "banana"})


def test_azure_2023_reply_predates_the_spec():
    # Azure OpenAI's 2023-11 API version sends neither choices[].logprobs nor message.refusal, both required now.
    assert violations("openai", OPENAI_CHAT, fixture_json("openai", "azure_chat_completion_2023.json")) == [
        "$.choices[0]: 'logprobs' is a required property",
        "$.choices[0].message (ChatCompletionResponseMessage): 'refusal' is a required property",
    ]


# The spec rewrite and the loader.


def test_the_trimmed_openai_spec_holds_exactly_the_components_named_and_what_they_reference():
    trim = load_script("trim_openai_spec")
    named = {OPENAI_REQUEST, OPENAI_CHAT, OPENAI_CHAT_CHUNK, OPENAI_EMBEDDINGS_REQUEST, OPENAI_EMBEDDINGS,
             OPENAI_MODELS, OPENAI_ERROR}
    assert set(trim.ROOTS) == named
    shipped = json.loads(OPENAI_SPEC.read_bytes())
    assert shipped["info"]["license"]["identifier"] == "MIT"
    assert trim.trim(shipped) == shipped  # every $ref resolves inside the file, and nothing unreachable is kept
    schemas = shipped["components"]["schemas"]
    with pytest.raises(KeyError, match="no component schema 'Missing'"):
        broken = {**schemas, OPENAI_CHAT: {"$ref": "#/components/schemas/Missing"}}
        trim.trim({**shipped, "components": {"schemas": broken}})
    extra = {**shipped, "components": {"schemas": {**schemas, "Unused": {"type": "string"}}}}
    assert trim.trim(extra) == shipped


def test_schema_names_a_missing_component():
    assert schema("openai", OPENAI_CHAT)["type"] == "object"
    with pytest.raises(KeyError, match="openai spec has no component schema 'ChatCompletion'"):
        schema("openai", "ChatCompletion")


def test_openapi_3_0_leftovers_become_json_schema():
    node = {
        "type": "object",
        "x-oaiMeta": {"name": "dropped"},
        "properties": {
            "nullable": {"type": "string"},  # a property's name, not the keyword
            "x-kept": {"type": "string", "nullable": True, "enum": ["a"], "description": "d"},
            "ref": {"allOf": [{"$ref": "#/components/schemas/A"}, {"nullable": True}]},
            "rate": {"type": "number", "minimum": 0, "exclusiveMinimum": True},
            "plain": {"type": "integer", "nullable": False},
        },
    }
    before = copy.deepcopy(node)
    assert _openapi_to_jsonschema(node) == {
        "type": "object",
        "properties": {
            "nullable": {"type": "string"},
            "x-kept": {"description": "d", "anyOf": [{"type": "string", "enum": ["a"]}, {"type": "null"}]},
            "ref": {"anyOf": [{"allOf": [{"$ref": "#/components/schemas/A"}]}, {"type": "null"}]},
            "rate": {"type": "number", "exclusiveMinimum": 0},
            "plain": {"type": "integer"},
        },
    }
    assert node == before


@pytest.mark.parametrize("endpoint, component", [("chat.completions", OPENAI_REQUEST),
                                                 ("embeddings", OPENAI_EMBEDDINGS_REQUEST)])
def test_the_routers_parameter_allow_list_is_openais_documented_one(endpoint, component):
    """What the router forwards to OpenAI-dialect deployments (providers/openai/chat.py) is exactly
    the request's properties in OpenAI's spec, allOf parts included."""
    def properties(node: dict) -> set[str]:
        if "$ref" in node:
            node = schema("openai", node["$ref"].rsplit("/", 1)[-1])
        return set(node.get("properties", {})).union(*(properties(part) for part in node.get("allOf", [])))

    assert DOCUMENTED_PARAMS[endpoint] == properties(schema("openai", component))
