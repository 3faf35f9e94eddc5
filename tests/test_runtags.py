"""core/runtags.py: tags through a proxy user name and back; the gateway key stays the password."""

import base64

from core.runtags import decode, encode, split

TAGS = {"program": "claude", "cwd": "/home/me/proj", "repo": "git@example.org:me/proj.git", "branch": "main"}


def basic(user: str, password: str = "") -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


def test_round_trip_and_url_safe():
    user = encode({**TAGS, "other": "dropped", "branch": "feature/ü"})
    assert all(c.isalnum() or c in "-_." for c in user)
    assert decode(user) == {**TAGS, "branch": "feature/ü"}


def test_split_keeps_the_key_for_auth():
    tags, rest = split(basic(encode(TAGS), "tg-key-1"))
    assert tags == TAGS
    assert rest == basic("", "tg-key-1")
    assert split(basic(encode(TAGS))) == (TAGS, None)  # no key: no credential left to check
    assert split(basic(encode(TAGS), "-")) == (TAGS, None)  # what tapgate run sends when there is no key


def test_other_credentials_untouched():
    for value in (basic("tg-key-2"), "Bearer tg-key-3", "Basic !!!", basic("tapgate-run.!!!", "k")):
        assert split(value) == (None, value)
