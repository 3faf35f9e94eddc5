"""API keys never reach the store or the terminal: they are fingerprinted, URLs are redacted, and
text a provider sent back (an error that echoes the key it was given) is scrubbed."""

from __future__ import annotations

import functools
import hashlib
import hmac
import re

# Headers that carry a provider's API key, in the order a client is likely to use them.
KEY_HEADERS = ("authorization", "x-api-key", "x-goog-api-key", "api-key")
_KEY_QUERY = re.compile(r"([?&](?:key|api[-_]key)=)[^&#]*", re.IGNORECASE)


@functools.lru_cache(maxsize=1024)  # the same few keys come by on every call
def fingerprint_key(secret: str, salt: str) -> str:
    """A short salted fingerprint: the same key always gets the same id, and the id reveals nothing."""
    digest = hmac.new(salt.encode(), secret.encode(), hashlib.sha256).hexdigest()
    return f"fp_{digest[:12]}"


def key_from(headers, query: str = "") -> str | None:
    """The API key a request carries in a header or a `key=` query value, if any."""
    for name in KEY_HEADERS:
        value = headers.get(name)
        if value:
            scheme, _, token = value.partition(" ")
            return token.strip() if name == "authorization" and token else value.strip()
    match = re.search(r"(?:^|[?&])(?:key|api[-_]key)=([^&#]+)", query, re.IGNORECASE)
    return match.group(1) if match else None


_URL_PASSWORD = re.compile(r"(://[^:/?#@]*:)([^@/?#]*)(@)")  # the password between "user:" and "@"
_QUERY_PASSWORD = re.compile(r"((?:[?&]|\b)password=)([^&#\s]*)", re.IGNORECASE)  # URL query or key=value


def redact_password(text: str, url: str | None = None) -> str:
    """text with the password of a server's URL (`url`, or the URL `text` is) replaced by ***: what
    logs, errors and status show of a redis:// or postgresql:// URL."""
    found = _URL_PASSWORD.search(url if url is not None else text) or _QUERY_PASSWORD.search(
        url if url is not None else text)
    secret = found.group(2) if found else ""
    text = _QUERY_PASSWORD.sub(r"\1***", _URL_PASSWORD.sub(r"\1***\3", text))
    # A very short password would match everywhere; the URL forms above still hide it.
    return text.replace(secret, "***") if len(secret) >= 3 else text


def redact_url(path: str) -> str:
    """The path with `key=` query values replaced, safe to store and print."""
    return _KEY_QUERY.sub(r"\1REDACTED", path)


REDACTED = "[REDACTED]"
# Key-shaped values in the formats providers and the gateway issue: a Bearer token, OpenAI's sk-…
# (sk-proj-…, sk-svcacct-…), Anthropic's sk-ant-…, Google's AIza…, the gateway's own tg-…, a JWT
# anywhere (a subscription login's access token: Codex CLI's ChatGPT login; its header is base64 of
# '{"', hence "eyJ") and any `key=` query value. Eight characters at least, so prose ("sk-learn",
# "Bearer of") stays.
_KEY_SHAPED = re.compile(
    r"(?i:bearer)\s+[A-Za-z0-9._~+/=-]{8,}"
    r"|\b(?:sk|tg)-[A-Za-z0-9_-]{8,}"
    r"|\bAIza[A-Za-z0-9_-]{8,}"
    r"|\beyJ[A-Za-z0-9_-]{5,}\.[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]*"
)
_KEY_VALUE = re.compile(r"((?:^|[?&\s\"'])(?:key|api[-_]key)=)[^&#\s\"']+", re.IGNORECASE)
SHORTEST_KNOWN = 8  # a shorter "key" would scrub ordinary words


def scrub(text: str | None, known=()) -> str | None:
    """`text` with the known secrets and every key-shaped value replaced by [REDACTED]: for anything
    a provider sent back that the gateway stores, prints or shows another client."""
    if not text:
        return text
    for secret in known:
        if secret and len(secret) >= SHORTEST_KNOWN and secret in text:
            text = text.replace(secret, REDACTED)
    text = _KEY_SHAPED.sub(_redact_token, text)
    return _KEY_VALUE.sub(r"\1" + REDACTED, text)


def _redact_token(match: re.Match) -> str:
    token = match.group(0)
    return f"{token.split()[0]} {REDACTED}" if token[:6].lower() == "bearer" else REDACTED
