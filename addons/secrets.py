"""API keys never reach the store or the terminal: they are fingerprinted, and URLs are redacted."""

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


def redact_url(path: str) -> str:
    """The path with `key=` query values replaced, safe to store and print."""
    return _KEY_QUERY.sub(r"\1REDACTED", path)
