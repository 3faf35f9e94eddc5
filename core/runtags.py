"""`tapgate run`'s tags (program, working directory, git repository and branch) carried to the gateway
in the proxy URL's user name, the one thing every client sends unchanged on each connection; the password
stays the gateway key, if any."""

from __future__ import annotations

import base64
import binascii
import json
from urllib.parse import unquote

PREFIX = "tapgate-run."
FIELDS = ("program", "cwd", "repo", "branch")
MAX_CHARS = 500  # each tag: a path or a URL, not a document
# The password when there is no gateway key: some clients (Claude Code's runtime) fail to connect through
# a proxy URL whose user name has no password.
NO_KEY = "-"


def encode(tags: dict[str, str | None]) -> str:
    """The proxy user name for these tags (URL-safe: base64url without padding)."""
    data = json.dumps({k: v[:MAX_CHARS] for k, v in tags.items() if k in FIELDS and v}, separators=(",", ":"))
    return PREFIX + base64.urlsafe_b64encode(data.encode()).decode().rstrip("=")


def decode(user: str) -> dict[str, str] | None:
    """The tags in a proxy user name, or None when it is not one of tapgate run's (or is malformed)."""
    if not user.startswith(PREFIX):
        return None
    text = user[len(PREFIX):]
    try:
        data = json.loads(base64.urlsafe_b64decode(text + "=" * (-len(text) % 4)))
    except (binascii.Error, ValueError):
        return None
    if not isinstance(data, dict):
        return None
    return {k: v[:MAX_CHARS] for k, v in data.items() if k in FIELDS and isinstance(v, str) and v}


def split(proxy_authorization: str) -> tuple[dict[str, str] | None, str | None]:
    """(tags, the Proxy-Authorization to leave for gateway-key checks: Basic with the key as password, or
    None when there is no key). Tags None: not a run credential, the header is left as it is."""
    scheme, _, token = proxy_authorization.strip().partition(" ")
    if scheme.lower() != "basic":
        return None, proxy_authorization
    try:
        user, _, password = base64.b64decode(token.strip(), validate=True).decode("utf-8").partition(":")
    except (binascii.Error, UnicodeDecodeError):
        return None, proxy_authorization
    tags = decode(unquote(user))
    if tags is None:
        return None, proxy_authorization
    if not password or password == NO_KEY:
        return tags, None
    return tags, "Basic " + base64.b64encode(f":{password}".encode()).decode()
