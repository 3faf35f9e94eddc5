"""The `tapgate_postgres` URL: checked once, and never printed with its password (`redact`)."""

from __future__ import annotations

from core.secrets import redact_password as redact

SCHEMES = ("postgresql://", "postgres://")


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
