"""Checks objects against the official OpenAI and Anthropic OpenAPI specs, so router replies are held to them."""

from __future__ import annotations

import datetime
import functools
import hashlib
import json
import os
import tempfile
from pathlib import Path
from typing import NamedTuple

from jsonschema import Draft202012Validator
from jsonschema.exceptions import ValidationError
from referencing import Registry
from referencing.jsonschema import DRAFT202012
from support import SHARED

SPECS = SHARED / "specs"
FILES = {"openai": SPECS / "openai-openapi.yaml", "anthropic": SPECS / "anthropic-openapi.json"}

# Component names under #/components/schemas, as the router tests use them.
OPENAI_CHAT = "CreateChatCompletionResponse"
OPENAI_CHAT_CHUNK = "CreateChatCompletionStreamResponse"
OPENAI_EMBEDDINGS = "CreateEmbeddingResponse"
OPENAI_MODELS = "ListModelsResponse"
OPENAI_ERROR = "ErrorResponse"
ANTHROPIC_MESSAGE = "Message"  # the 200 body of POST /v1/messages
ANTHROPIC_STREAM_EVENT = "MessageStreamEvent"  # oneOf the seven below, one per SSE `data:` line
ANTHROPIC_MESSAGE_START = "MessageStartEvent"
ANTHROPIC_MESSAGE_DELTA = "MessageDeltaEvent"
ANTHROPIC_MESSAGE_STOP = "MessageStopEvent"
ANTHROPIC_BLOCK_START = "ContentBlockStartEvent"
ANTHROPIC_BLOCK_DELTA = "ContentBlockDeltaEvent"
ANTHROPIC_BLOCK_STOP = "ContentBlockStopEvent"
ANTHROPIC_PING = "Ping"  # added to MessageStreamEvent by the mirror the file comes from (specs/SOURCES.md)
ANTHROPIC_ERROR = "ErrorResponse"  # the 4XX/5XX body, and the data of an SSE `event: error`


class Allowance(NamedTuple):
    """Where a real reply breaks the spec: the field may be absent (also=None) or may also match `also`."""

    why: str
    also: dict | None = None


# Anthropic's spec (Stainless, from the SDK's pydantic models) lists every reply field as required, including
# those with a default the SDK fills in when the field is absent: null for most (`Optional[X] = None`),
# {"type": "direct"} for a tool_use block's `caller`. The real API leaves such fields out; each
# (component, property) here is one that a real reply under ../shared/fixtures/anthropic/ leaves out.
_ANTHROPIC_NOT_SENT = {
    ("ErrorResponse", "request_id"): "error_529_overloaded.json (the 2024 body; error_529_overloaded_2026.json has it)",
    ("Message", "stop_details"): "messages_text.json",
    ("Message", "container"): "messages_text.json (set only with code execution)",
    ("MessageDelta", "stop_details"): "messages_stream_text.sse",
    ("MessageDelta", "container"): "messages_stream_text.sse",
    ("Usage", "output_tokens_details"): "messages_text.json",
    ("Usage", "server_tool_use"): "messages_text.json",
    ("Usage", "cache_creation"): "messages_stream_text_then_tool_use.sse",
    ("Usage", "inference_geo"): "messages_stream_text_then_tool_use.sse",
    ("MessageDeltaUsage", "input_tokens"): "messages_stream_text_then_tool_use.sse (usage is output_tokens only)",
    ("MessageDeltaUsage", "cache_creation_input_tokens"): "messages_stream_text_then_tool_use.sse",
    ("MessageDeltaUsage", "cache_read_input_tokens"): "messages_stream_text_then_tool_use.sse",
    ("MessageDeltaUsage", "output_tokens_details"): "messages_stream_text.sse",
    ("MessageDeltaUsage", "server_tool_use"): "messages_stream_text.sse",
    ("ResponseTextBlock", "citations"): "messages_text.json",
    ("ResponseToolUseBlock", "caller"): "messages_stream_text_then_tool_use.sse",
    ("ResponseServerToolUseBlock", "caller"): "messages_stream_prompt_cache_server_tools.sse",
    ("Container", "skills"): "messages_stream_prompt_cache_server_tools.sse (a container with no skills loaded)",
}

# (spec, component, property) -> how a real reply departs from the spec there. conforms() applies these unless
# strict=True; test_specs.py checks that the fixtures need exactly these, no fewer and no more.
ALLOWANCES: dict[tuple[str, str, str], Allowance] = {
    ("openai", "Embedding", "embedding"): Allowance(
        "a base64 string of float32s when the request has encoding_format=base64, which the official SDKs send by "
        "default; the spec has only the float array (embeddings_base64.json)",
        also={"type": "string", "contentEncoding": "base64"},
    ),
    **{
        ("anthropic", component, field): Allowance(f"has a default in the spec, and is absent in {fixture}")
        for (component, field), fixture in _ANTHROPIC_NOT_SENT.items()
    },
}

_ANNOTATIONS = {"description", "title", "default", "example", "examples", "deprecated"}
_DATA = {"enum", "const", "default", "example", "examples", "required", "discriminator"}  # values, not schemas
_SCHEMA_MAPS = {"properties", "patternProperties", "$defs", "definitions", "dependentSchemas"}


def _load_yaml(path: Path) -> dict:
    """The YAML spec as a dict, via a JSON copy in the temp dir keyed by the file's sha256.

    ruamel.yaml has no C loader here (ruamel.yaml.clib is not installed) and takes 4.5-7 s on the
    3 MB OpenAI spec; the JSON copy loads in ~0.05 s.
    """
    data = path.read_bytes()
    cached = Path(tempfile.gettempdir()) / "tapgate-specs" / f"{hashlib.sha256(data).hexdigest()}.json"
    if cached.exists():
        return json.loads(cached.read_bytes())
    from ruamel.yaml import YAML

    spec = YAML(typ="safe").load(data)
    cached.parent.mkdir(exist_ok=True)
    partial = cached.with_suffix(f".{os.getpid()}.tmp")
    # One `example` in the spec is an unquoted date (ChatSessionResource.workflow.version).
    partial.write_text(json.dumps(spec, default=lambda o: o.isoformat() if isinstance(o, datetime.date) else str(o)))
    os.replace(partial, cached)  # atomic, so parallel test runs never read half a file
    return spec


def _openapi_to_jsonschema(node):
    """Rewrites the OpenAPI 3.0 leftovers that the 3.1 OpenAI spec still carries into JSON Schema 2020-12.

    - `nullable: true` (about 100 places, e.g. a chunk's `finish_reason` and `usage`): the schema or null.
      Wrapping as anyOf keeps `enum` and `$ref` siblings right, which widening `type` alone would not.
    - `allOf: [{$ref: X}, {nullable: true}]`: the 3.0 idiom for a nullable reference.
    - boolean `exclusiveMinimum` next to `minimum` (fine-tuning hyperparameters): the 3.0 form.
    """
    if isinstance(node, list):
        return [_openapi_to_jsonschema(item) for item in node]
    if not isinstance(node, dict):
        return node
    node = {key: value for key, value in node.items() if not key.startswith("x-")}
    nullable = node.pop("nullable", False) is True
    if "allOf" in node:
        markers = [
            s
            for s in node["allOf"]
            if isinstance(s, dict) and s.get("nullable") is True and not set(s) - _ANNOTATIONS - {"nullable"}
        ]
        if markers:
            nullable = True
            node["allOf"] = [s for s in node["allOf"] if s not in markers]
    if isinstance(node.get("exclusiveMinimum"), bool):
        if node.pop("exclusiveMinimum") and "minimum" in node:
            node["exclusiveMinimum"] = node.pop("minimum")
    node = {key: _rewrite(key, value) for key, value in node.items()}
    if not nullable:
        return node
    outer = {key: node.pop(key) for key in list(node) if key in _ANNOTATIONS}
    return {**outer, "anyOf": [node, {"type": "null"}]}


def _rewrite(keyword: str, value):
    if keyword in _SCHEMA_MAPS:  # keys here are property (or schema) names, not keywords
        return {name: _openapi_to_jsonschema(sub) for name, sub in value.items()}
    if keyword in _DATA:
        return value
    return _openapi_to_jsonschema(value)


@functools.cache
def _spec(spec: str) -> dict:
    path = FILES[spec]
    raw = _load_yaml(path) if path.suffix == ".yaml" else json.loads(path.read_bytes())
    assert raw["openapi"].startswith("3.1"), f"{path.name} is OpenAPI {raw['openapi']}; this reads 3.1 only"
    # Only components are needed; skipping paths keeps the rewrite to a fraction of the file.
    return {"components": {"schemas": _rewrite("$defs", raw["components"]["schemas"])}}


def _allowing(document: dict, spec: str) -> dict:
    """A copy of the spec's components with this spec's ALLOWANCES applied; the spec's own dicts stay as they are."""
    schemas = dict(document["components"]["schemas"])
    for (owner, component, field), allowance in ALLOWANCES.items():
        if owner != spec:
            continue
        node = dict(schemas[component])
        assert field in node["properties"], f"stale allowance: {spec} {component} has no property {field!r}"
        if allowance.also is None:
            assert field in node["required"], f"stale allowance: {spec} {component}.{field} is not required"
            node["required"] = [name for name in node["required"] if name != field]
        else:
            node["properties"] = {**node["properties"], field: {"anyOf": [node["properties"][field], allowance.also]}}
        schemas[component] = node
    return {"components": {"schemas": schemas}}


@functools.cache
def _document(spec: str, strict: bool) -> dict:
    return _spec(spec) if strict else _allowing(_spec(spec), spec)


@functools.cache
def _component_names(spec: str, strict: bool) -> dict[int, str]:
    """id() of each component dict to its name, to say which component a failing keyword sits in."""
    return {id(node): name for name, node in _document(spec, strict)["components"]["schemas"].items()}


def schema(spec: str, name: str) -> dict:
    """The component schema `name` of spec "openai" or "anthropic", as JSON Schema 2020-12, without ALLOWANCES."""
    schemas = _spec(spec)["components"]["schemas"]
    if name not in schemas:
        raise KeyError(f"{spec} spec has no component schema {name!r}")
    return schemas[name]


@functools.cache
def _validator(spec: str, name: str, strict: bool) -> Draft202012Validator:
    schema(spec, name)  # a readable KeyError for a misspelt name
    uri = f"urn:tapgate:spec:{spec}"
    registry = Registry().with_resource(uri, DRAFT202012.create_resource(_document(spec, strict)))
    # A $ref into the registered document, so the component's own `#/components/schemas/...` refs resolve.
    # No format_checker: formats stay annotations (jsonschema's default), unknown ones included.
    return Draft202012Validator({"$ref": f"{uri}#/components/schemas/{name}"}, registry=registry)


def _closest_branch(error: ValidationError) -> list[ValidationError]:
    """The errors of the oneOf/anyOf branch obj most likely meant: not one whose `type` tag differs, then the fewest errors."""
    branches: dict[int, list[ValidationError]] = {}
    for sub in error.context:
        branches.setdefault(sub.relative_schema_path[0], []).append(sub)
    tagged = [
        errs
        for errs in branches.values()
        if not any(list(e.relative_path) == ["type"] and e.validator in ("const", "enum") for e in errs)
    ]
    return min(tagged or branches.values(), key=len)


def _short(text: str, limit: int = 200) -> str:
    """text cut in the middle, so a message about a long value keeps its verdict at the end."""
    return text if len(text) <= limit else f"{text[: limit // 2]} ... {text[-limit // 2 :]}"


def _lines(errors, names: dict[int, str], indent: str = "") -> list[str]:
    found = []
    for error in sorted(errors, key=lambda e: list(map(str, e.absolute_path))):
        where = "$" + "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in error.absolute_path)
        if id(error.schema) in names:
            where += f" ({names[id(error.schema)]})"
        if error.context:
            found.append(f"{indent}{where}: matches none of its {error.validator} branches; the closest fails with")
            found += _lines(_closest_branch(error), names, indent + "    ")
        else:
            found.append(f"{indent}{where}: {_short(error.message)}")
    return found


def violations(spec: str, name: str, obj, *, strict: bool = False) -> list[str]:
    """Each way obj breaks component `name`, as "path (component): message"; under a failed oneOf/anyOf, the
    closest branch's reasons, indented. strict=True leaves out ALLOWANCES."""
    return _lines(_validator(spec, name, strict).iter_errors(obj), _component_names(spec, strict))


def conforms(spec: str, name: str, obj, *, strict: bool = False) -> None:
    """Raises AssertionError listing every violation when obj does not conform to component `name` of the spec.

    The spec is held exactly, except for the documented ALLOWANCES (none with strict=True).
    """
    found = violations(spec, name, obj, strict=strict)
    assert not found, f"does not conform to {spec} {name}:\n  " + "\n  ".join(found)
