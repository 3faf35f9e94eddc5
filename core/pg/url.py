"""The `tapgate_postgres` URL: checked once, and never printed with its password."""

from __future__ import annotations

import re

SCHEMES = ("postgresql://", "postgres://")
_PASSWORD = re.compile(r"(://[^:/?#@]*:)([^@/?#]*)(@)")  # the password between "user:" and "@"
_QUERY_PASSWORD = re.compile(r"((?:[?&]|\b)password=)([^&#\s]*)", re.IGNORECASE)  # URL query or key=value


def check(url: str) -> str:
    """The URL, stripped; raises ValueError (with the password redacted) when it is not a PostgreSQL URL."""
    url = url.strip()
    if not url.startswith(SCHEMES):
        raise ValueError(f"{redact(url)!r} is not a postgresql:// URL")
    from psycopg.conninfo import conninfo_to_dict

    try:
        conninfo_to_dict(url)
    except Exception as e:  # psycopg.ProgrammingError: a malformed URL
        raise ValueError(f"{redact(url)!r} is not a valid PostgreSQL URL ({redact(str(e), url)})") from None
    return url


def password(url: str) -> str:
    found = _PASSWORD.search(url) or _QUERY_PASSWORD.search(url)
    return found.group(2) if found else ""


def redact(text: str, url: str | None = None) -> str:
    """text with the password of `url` (or of the URL it is) replaced by ***: for logs, errors, status."""
    secret = password(url if url is not None else text)
    text = _QUERY_PASSWORD.sub(r"\1***", _PASSWORD.sub(r"\1***\3", text))
    # A very short password would match everywhere; the URL forms above still hide it.
    return text.replace(secret, "***") if len(secret) >= 3 else text
