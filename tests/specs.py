"""Checks objects against OpenAI's OpenAPI spec and Anthropic's SDK types, so the router is held to them.

OpenAI: the request and reply components of the official spec (MIT), trimmed into testdata/ by
scripts/trim_openai_spec.py.
Anthropic: its OpenAPI spec states no licence, so it is not redistributed here; the same components come from
the official `anthropic` SDK (MIT), whose pydantic models Stainless generates from that spec. Those models make
every field with a default optional, so they hold a reply to the spec's shapes, types and enums but not to
fields the spec lists as required yet nullable (testdata/SOURCES.md).
"""

from __future__ import annotations

import functools
import json
from typing import Literal, NamedTuple

import pydantic
from jsonschema import Draft202012Validator
from jsonschema.exceptions import ValidationError
from referencing import Registry
from referencing.jsonschema import DRAFT202012
from support import DATA

OPENAI_SPEC = DATA / "specs" / "openai-openapi.json"

# Component names under #/components/schemas, as the router tests use them (OpenAI's: the ROOTS that
# scripts/trim_openai_spec.py keeps).
OPENAI_REQUEST = "CreateChatCompletionRequest"  # the body of POST /v1/chat/completions
OPENAI_CHAT = "CreateChatCompletionResponse"
OPENAI_CHAT_CHUNK = "CreateChatCompletionStreamResponse"
OPENAI_EMBEDDINGS_REQUEST = "CreateEmbeddingRequest"  # the body of POST /v1/embeddings
OPENAI_EMBEDDINGS = "CreateEmbeddingResponse"
OPENAI_MODELS = "ListModelsResponse"
OPENAI_ERROR = "ErrorResponse"
ANTHROPIC_MESSAGE = "Message"  # the 200 body of POST /v1/messages
ANTHROPIC_STREAM_EVENT = "MessageStreamEvent"  # the SDK's six stream events and ping, one per SSE `data:` line
ANTHROPIC_ERROR = "ErrorResponse"  # the 4XX/5XX body, and the data of an SSE `event: error`
ANTHROPIC_REQUEST = "CreateMessageParams"  # the body of POST /v1/messages


class Ping(pydantic.BaseModel):
    """The `event: ping` Anthropic sends in streams; the SDK skips it, so its union has no type for it."""

    type: Literal["ping"]


def _anthropic_types() -> dict:
    """Component name -> the SDK type it is read from."""
    from anthropic import types
    from anthropic.types.shared import ErrorResponse

    return {
        ANTHROPIC_MESSAGE: types.Message,
        ANTHROPIC_STREAM_EVENT: types.RawMessageStreamEvent | Ping,
        ANTHROPIC_ERROR: ErrorResponse,
        ANTHROPIC_REQUEST: types.MessageCreateParams,
    }


class Allowance(NamedTuple):
    """Where a real reply breaks the spec: the field may be absent (also=None) or may also match `also`."""

    why: str
    also: dict | None = None


# (spec, component, property) -> how a real reply departs from the spec there. conforms() applies these unless
# strict=True; test_specs.py checks that the fixtures need exactly these, no fewer and no more.
ALLOWANCES: dict[tuple[str, str, str], Allowance] = {
    ("openai", "Embedding", "embedding"): Allowance(
        "a base64 string of float32s when the request has encoding_format=base64, which the official SDKs send by "
        "default; the spec has only the float array (embeddings_base64.json)",
        also={"type": "string", "contentEncoding": "base64"},
    ),
}

_ANNOTATIONS = {"description", "title", "default", "example", "examples", "deprecated"}
_DATA = {"enum", "const", "default", "example", "examples", "required", "discriminator"}  # values, not schemas
_SCHEMA_MAPS = {"properties", "patternProperties", "$defs", "definitions", "dependentSchemas"}


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


def _sdk_components(named: dict) -> dict:
    """JSON Schemas of pydantic types, each under its name, with every type they use beside them.

    The SDK's request params are TypedDicts, whose schemas leave other keys open, where the spec closed them
    (`additionalProperties: false`). They stay open: the installed SDK may be newer than the API the router
    speaks (anthropic 2.16 has no `temperature`), so only the fields it knows are checked.
    """
    schemas = {}
    for name, annotation in named.items():
        found = pydantic.TypeAdapter(annotation).json_schema(ref_template="#/components/schemas/{model}")
        for sub_name, sub in [*found.pop("$defs", {}).items(), (name, found)]:
            assert schemas.get(sub_name, sub) == sub, f"two SDK types are both named {sub_name}"
            schemas[sub_name] = sub
    return schemas


@functools.cache
def _spec(spec: str) -> dict:
    if spec == "anthropic":
        return {"components": {"schemas": _sdk_components(_anthropic_types())}}
    raw = json.loads(OPENAI_SPEC.read_bytes())
    assert raw["openapi"].startswith("3.1"), f"{OPENAI_SPEC.name} is OpenAPI {raw['openapi']}; this reads 3.1 only"
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
