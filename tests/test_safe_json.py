"""The one JSON parser for outside input: excessive nesting is a ValueError, never a RecursionError."""

import json

import pytest

from providers.safe_json import MAX_DEPTH, TooDeep, loads, loads_event, parse_json


def nested(depth: int, open_: str = "[", close: str = "]") -> str:
    return open_ * depth + close * depth


@pytest.mark.parametrize("depth", [MAX_DEPTH + 1, 5_000, 20_000, 100_000])
def test_too_deep_is_a_value_error_at_any_depth(depth):
    with pytest.raises(TooDeep):
        loads(nested(depth))
    with pytest.raises(ValueError):
        loads(nested(depth).encode())
    assert parse_json(nested(depth)) is None


def test_objects_and_arrays_both_count():
    doc = '{"a":' * (MAX_DEPTH // 2) + "[" * (MAX_DEPTH // 2 + 1) + "]" * (MAX_DEPTH // 2 + 1) + "}" * (MAX_DEPTH // 2)
    with pytest.raises(TooDeep):
        loads(doc)


def test_up_to_the_limit_parses():
    assert loads(nested(MAX_DEPTH)) == json.loads(nested(MAX_DEPTH))


def test_many_brackets_side_by_side_are_not_depth():
    wide = json.dumps({"messages": [{"role": "user", "content": [{"type": "text", "text": "x"}]}] * 5_000})
    assert len(loads(wide)["messages"]) == 5_000


def test_brackets_inside_strings_do_not_count():
    doc = json.dumps({"text": "[" * 100_000})
    assert loads(doc)["text"] == "[" * 100_000


def test_malformed_is_still_a_plain_value_error():
    with pytest.raises(ValueError) as e:
        loads(b"{not json")
    assert not isinstance(e.value, TooDeep)
    assert parse_json(b"") is None and parse_json(None) is None


@pytest.mark.parametrize("text", ['{"a":1,"a":2}', '{"t":"\\ud83d\\ude00 \\u00e9"}', "[NaN, Infinity]", '"\\ud800"',
                                  '{"n": -0.0, "f": 1e-7}', nested(MAX_DEPTH), "[1, 2,]", "", "{"])
def test_an_event_parses_to_what_loads_gives_and_fails_where_it_fails(text):
    try:
        expected = loads(text)
    except ValueError as e:
        with pytest.raises(type(e)):
            loads_event(text)
    else:
        assert repr(loads_event(text)) == repr(expected)  # repr: NaN is not equal to itself


@pytest.mark.parametrize("depth", [MAX_DEPTH + 1, 2_000])
def test_a_too_deep_event_is_too_deep(depth):
    with pytest.raises(TooDeep):
        loads_event(nested(depth))
