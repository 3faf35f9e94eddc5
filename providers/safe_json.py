"""The gateway's one JSON parser, above all for what it did not write itself: request bodies, tag headers,
provider answers and stream events. Excessive nesting is malformed input (a ValueError like any
other), never a RecursionError escaping into a hook, and never a value deep enough to break a
recursive walker further on (json.dumps, the cache's canonical form, pydantic).

MAX_DEPTH is 256 levels: the deepest request the providers accept is far shallower (OpenAI's
structured outputs allow 10 schema levels, some 25 JSON levels with the body around them), while
256 keeps every recursive walker well under Python's recursion limit of 1000, even when it starts
deep in mitmproxy's or aiohttp's call stack. The check is cheap on the hot path: the number of
opening brackets (a C-speed count) bounds the depth, so only a document with more than MAX_DEPTH
brackets has its parsed value walked, once, level by level (about half the time json.loads took
for it)."""

from __future__ import annotations

import json
from typing import Any

import orjson

MAX_DEPTH = 256


class TooDeep(ValueError):
    """JSON nested deeper than MAX_DEPTH."""

    def __init__(self) -> None:
        super().__init__(f"JSON nested deeper than {MAX_DEPTH} levels")


def loads(raw: str | bytes | bytearray) -> Any:
    """json.loads with a depth limit; raises ValueError (json.JSONDecodeError or TooDeep)."""
    try:
        value = json.loads(raw)
    except RecursionError:
        raise TooDeep() from None
    if isinstance(value, (dict, list)) and _brackets(raw) > MAX_DEPTH and _too_deep(value):
        raise TooDeep()
    return value


def loads_event(raw: str | bytes | bytearray) -> Any:
    """loads for a stream event whose value is only read (the stream tap takes its facts), never
    written back: orjson parses it about four times faster, and json.loads has the last word on
    anything orjson refuses, so the same texts are accepted. orjson reads integers past 64 bits as
    floats, which no fact the tap keeps (tokens, model, text) can notice."""
    try:
        value = orjson.loads(raw)
    except orjson.JSONDecodeError:  # NaN, lone surrogates, deeper than orjson's own limit: json decides
        return loads(raw)
    if isinstance(value, (dict, list)) and _brackets(raw) > MAX_DEPTH and _too_deep(value):
        raise TooDeep()
    return value


def parse_json(raw: str | bytes | bytearray | None) -> Any:
    """The JSON value of a body, or None when it is empty, not JSON or too deep (never raises)."""
    if not raw:
        return None
    try:
        return loads(raw)
    except ValueError:
        return None


def _brackets(raw: str | bytes | bytearray) -> int:
    """An upper bound of the nesting depth: every level opens with a bracket."""
    if isinstance(raw, str):
        return raw.count("[") + raw.count("{")
    return raw.count(b"[") + raw.count(b"{")


def _too_deep(value: dict | list) -> bool:
    """Walk the containers one level at a time (no recursion, no per-node tuples)."""
    level = [value]
    for _ in range(MAX_DEPTH):  # after n rounds, `level` holds the containers n + 1 deep
        level = [c for node in level for c in (node.values() if type(node) is dict else node)
                 if type(c) is dict or type(c) is list]
        if not level:
            return False
    return True
