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


def as_url(conninfo: str) -> str:
    """A conninfo (`host=... dbname=...`) or URL as the postgresql:// URL options take."""
    from psycopg.conninfo import conninfo_to_dict

    info = conninfo_to_dict(conninfo)
    auth = info.get("user", "") + (f":{info['password']}" if info.get("password") else "")
    return (f"postgresql://{auth}{'@' if auth else ''}{info.get('host', '127.0.0.1')}:{info.get('port', 5432)}"
            f"/{info['dbname']}")


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


class OwnPostgres:
    """A throwaway PostgreSQL server of the test's own (initdb into a temp dir, a free loopback port),
    which the test may stop and start: the machine's server must never be stopped."""

    def __init__(self, directory: str, port: int, initdb: str) -> None:
        self.directory, self.port = directory, port
        self.pg_ctl = os.path.join(os.path.dirname(initdb), "pg_ctl")
        self.url = f"postgresql://postgres@127.0.0.1:{port}/postgres"

    def _as_owner(self, *args: str, check: bool = True) -> None:
        import subprocess

        run = [*args] if os.geteuid() != 0 else ["runuser", "-u", "postgres", "--", *args]
        subprocess.run(run, check=check, capture_output=True, timeout=60)

    def start(self) -> None:
        """Start the server and wait until it accepts connections (pg_ctl -w)."""
        options = f"-p {self.port} -h 127.0.0.1 -k {self.directory}"
        self._as_owner(self.pg_ctl, "start", "-w", "-D", f"{self.directory}/data", "-l",
                       f"{self.directory}/log", "-o", options)

    def stop(self, check: bool = True) -> None:
        """Stop it at once (clients are disconnected), as an outage would."""
        self._as_owner(self.pg_ctl, "stop", "-w", "-m", "fast", "-D", f"{self.directory}/data", check=check)


@contextmanager
def own_postgres() -> Iterator[OwnPostgres]:
    """A PostgreSQL server of this test's own (see OwnPostgres), removed afterwards."""
    import pwd
    import tempfile

    initdb = shutil.which("initdb") or require("initdb", "PostgreSQL's server binaries")
    if os.geteuid() == 0:
        try:
            owner = pwd.getpwnam("postgres")
        except KeyError:
            _missing("initdb refuses root and there is no postgres OS user to run it as")
    directory = tempfile.mkdtemp(prefix="tapgate-pg-")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = OwnPostgres(directory, port, initdb)
    try:
        if os.geteuid() == 0:
            os.chown(directory, owner.pw_uid, owner.pw_gid)
        server._as_owner(initdb, "-D", f"{directory}/data", "-U", "postgres", "--auth=trust", "-E", "UTF8")
        server.start()
        yield server
    finally:
        server.stop(check=False)  # it may never have started, or be stopped already
        shutil.rmtree(directory, ignore_errors=True)
