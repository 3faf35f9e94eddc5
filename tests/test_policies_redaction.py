"""Typed placeholders, restore, and the stream restorer that holds a placeholder split across chunks."""

import pytest

from core.policies.findings import Match
from core.policies.redaction import Redactor, StreamRestorer


def redacted(text, *spans):
    r = Redactor()
    return r, r.redact(text, [Match(t, s, e, "x") for t, s, e in spans])


def test_placeholders_are_typed_numbered_and_reused_for_the_same_value():
    r, out = redacted("a@x.io b@x.io a@x.io 4111", ("EMAIL", 0, 6), ("EMAIL", 7, 13), ("EMAIL", 14, 20), ("CARD", 21, 25))
    assert out == "<EMAIL_1> <EMAIL_2> <EMAIL_1> <CARD_1>"
    assert r.restore("to <EMAIL_2> and <EMAIL_1>, not <EMAIL_9> or <CARD_1>") == "to b@x.io and a@x.io, not <EMAIL_9> or 4111"


def test_overlapping_matches_replace_each_character_once():
    _, out = redacted("token sk-abc", ("SECRET", 6, 12), ("CUSTOM", 9, 12))
    assert out == "token <SECRET_1>"


@pytest.mark.parametrize("cut", range(1, 24))
def test_stream_restore_with_a_placeholder_split_anywhere(cut):
    r, _ = redacted("bob@example.com", ("EMAIL", 0, 15))
    answer = "Mail <EMAIL_1> at once."
    s = StreamRestorer(r)
    out = s.feed(answer[:cut]) + s.feed(answer[cut:]) + s.flush()
    assert out == "Mail bob@example.com at once."


def test_stream_restore_one_character_at_a_time_and_a_lone_bracket():
    r, _ = redacted("4111", ("CARD", 0, 4))
    s = StreamRestorer(r)
    text = "a < b, <CARD_1>, <CARD_"
    out = "".join(s.feed(c) for c in text) + s.flush()
    assert out == "a < b, 4111, <CARD_"
