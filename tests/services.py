"""Servers and tools a test needs (Redis and PostgreSQL on loopback, Prometheus, npm, a JDK): found, or the test
skips saying what is missing; with TAPGATE_REQUIRE_SERVICES=1 (CI, .ci/run) a missing one fails the
test instead."""

from __future__ import annotations

import os
import shutil
import socket
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

import pytest

REDIS_URL = os.environ.get("TAPGATE_TEST_REDIS", "redis://127.0.0.1:6379/0")
# A database the tests may create others from (CREATE DATABASE): trust auth on loopback, as on CI.
POSTGRES_URL = os.environ.get("TAPGATE_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432/postgres")


def _missing(message: str) -> None:
    if os.environ.get("TAPGATE_REQUIRE_SERVICES") == "1":
        pytest.fail(f"{message}; TAPGATE_REQUIRE_SERVICES=1 requires it")
    pytest.skip(message)


def require(tool: str, how: str) -> str:
    """The path of an executable the test needs."""
    if path := shutil.which(tool):
        return path
    _missing(f"{tool} is not installed ({how})")


def require_server(name: str, host: str, port: int) -> None:
    """A server the test needs is listening."""
    try:
        socket.create_connection((host, port), timeout=1).close()
    except OSError as e:
        _missing(f"{name} is not reachable at {host}:{port} ({e}); start it to run this test")


def redis_server() -> str:
    """The test Redis's URL, once it is known to listen."""
    rest = REDIS_URL.split("://", 1)[1].split("/", 1)[0].rpartition("@")[2]
    host, _, port = rest.rpartition(":")
    require_server("Redis", host or "127.0.0.1", int(port or 6379))
    return REDIS_URL


def unique_prefix() -> str:
    """A Redis key prefix of its own, so tests running at once never share counters."""
    return f"tapgate-test-{uuid.uuid4().hex[:12]}:"


def clear_prefix(url: str, prefix: str) -> None:
    import redis

    client = redis.Redis.from_url(url)
    try:
        keys = list(client.scan_iter(match=prefix + "*", count=1000))
        if keys:
            client.delete(*keys)
    finally:
        client.close()


def postgres_server() -> str:
    """The test PostgreSQL's URL, once it is known to listen."""
    from psycopg.conninfo import conninfo_to_dict

    info = conninfo_to_dict(POSTGRES_URL)
    require_server("PostgreSQL", info.get("host") or "127.0.0.1", int(info.get("port") or 5432))
    return POSTGRES_URL


@contextmanager
def fresh_database() -> Iterator[str]:
    """The URL of a new, empty PostgreSQL database of this test's own, dropped afterwards (a
    postgresql:// URL, as `tapgate --db` and tapgate_postgres take it)."""
    import psycopg

    admin = postgres_server()
    name = f"tapgate_test_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        base, _, query = admin.partition("?")
        yield base.rsplit("/", 1)[0] + "/" + name + (f"?{query}" if query else "")
    finally:
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
