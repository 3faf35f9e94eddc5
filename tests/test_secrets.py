"""Scrubbing what a provider sent back: known keys and key-shaped values go, prose stays."""

import pytest

from core.secrets import scrub


@pytest.mark.parametrize("text, expected", [
    ("Incorrect API key provided: sk-proj-abc123456789.", "Incorrect API key provided: [REDACTED]."),
    ("bad x-api-key sk-ant-api03-abcdefgh", "bad x-api-key [REDACTED]"),
    ("API key not valid: AIzaSyA1234567890abc", "API key not valid: [REDACTED]"),
    ("Authorization: Bearer eyJhbGciOi.abc.def", "Authorization: Bearer [REDACTED]"),
    ("GET /v1beta/models?key=whatever&alt=sse", "GET /v1beta/models?key=[REDACTED]&alt=sse"),
    ("gateway key tg-AbCdEfGh1234 unknown", "gateway key [REDACTED] unknown"),
    # A JWT anywhere (a ChatGPT login's access token quoted bare, or in JSON), signature included.
    ('{"access_token":"eyJhbGciOiJSUzI1NiJ9.eyJleHAiOjE3MDB9.c2lnbmF0dXJl-_x"}', '{"access_token":"[REDACTED]"}'),
    ("token eyJhbGciOiJub25lIn0.eyJzdWIiOiJ4In0. expired", "token [REDACTED] expired"),
    ("an eyJ-ish word, eyJhbGciOi alone, a.b.c", None),  # no JWT: three dot-joined base64url parts
    ("use scikit sk-learn, a risk-assessment, the Bearer of news", None),  # unchanged
])
def test_key_shaped_values_are_scrubbed(text, expected):
    assert scrub(text) == (expected or text)


def test_known_keys_are_scrubbed_whatever_their_shape():
    assert scrub("echo: my-odd-key-42 twice my-odd-key-42", ["my-odd-key-42"]) == "echo: [REDACTED] twice [REDACTED]"
    assert scrub("a b c", ["a"]) == "a b c"  # too short to be a key: words stay
    assert scrub(None, ["x" * 10]) is None
