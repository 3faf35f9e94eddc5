"""Real processes for end-to-end tests: the mock provider and mitmdump with tapgate's addons."""

from __future__ import annotations

import os
import re
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
# Every provider host the tests use; map_remote sends them all to the one loopback mock.
PROVIDER_HOSTS = (
    "api.openai.com",
    "api.anthropic.com",
    "generativelanguage.googleapis.com",
    "aiplatform.googleapis.com",
    "us-central1-aiplatform.googleapis.com",
    "myres.openai.azure.com",
    "api.groq.com",
    "api.x.ai",
    "openrouter.ai",
)

# What the router's deployments authenticate with at the mock: stand-ins, never a developer's real keys
# (a deployment whose key variable is unset is refused before it is called).
MOCK_PROVIDER_KEYS = {name: f"sk-mock-{name.split('_')[0].lower()}" for name in (
    "OPENAI_API_KEY", "ANTHROPIC_API_KEY", "GEMINI_API_KEY", "GROQ_API_KEY", "MISTRAL_API_KEY", "DEEPSEEK_API_KEY",
    "OPENROUTER_API_KEY", "TOGETHER_API_KEY", "XAI_API_KEY", "FIREWORKS_API_KEY")}


@dataclass
class Process:
    """A child process whose output lines are collected by a thread and can be awaited."""

    proc: subprocess.Popen
    lines: list[str] = field(default_factory=list)
    _cond: threading.Condition = field(default_factory=threading.Condition)

    @classmethod
    def start(cls, args: list[str], env: dict[str, str] | None = None, cwd: Path = ROOT) -> Process:
        proc = subprocess.Popen(
            args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env, cwd=cwd, bufsize=1
        )
        p = cls(proc)
        threading.Thread(target=p._read, daemon=True).start()
        return p

    def _read(self) -> None:
        for line in self.proc.stdout:
            with self._cond:
                self.lines.append(line.rstrip("\n"))
                self._cond.notify_all()
        with self._cond:
            self._cond.notify_all()

    def wait_for(self, pattern: str, timeout: float = 30, start: int = 0) -> re.Match:
        """The first output line from index `start` matching pattern; fails if the process exits first."""
        rx = re.compile(pattern)
        deadline = time.monotonic() + timeout
        seen = start
        with self._cond:
            while True:
                for line in self.lines[seen:]:
                    if m := rx.search(line):
                        return m
                seen = len(self.lines)
                if self.proc.poll() is not None:
                    raise RuntimeError(f"process exited ({self.proc.returncode}):\n" + "\n".join(self.lines[-40:]))
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise TimeoutError(f"no line matching {pattern!r}:\n" + "\n".join(self.lines[-40:]))
                self._cond.wait(remaining)

    def stop(self, sig: int = signal.SIGINT, timeout: float = 20) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return self.proc.returncode


def start_mock(env: dict[str, str] | None = None) -> tuple[Process, int]:
    p = Process.start([sys.executable, str(ROOT / "scripts" / "mock_provider.py"), "--port", "0"], env=env)
    return p, int(p.wait_for(r"MOCK_PORT=(\d+)").group(1))


def map_remote_to(port: int) -> str:
    hosts = "|".join(re.escape(h) for h in PROVIDER_HOSTS)
    return f"@^https://({hosts})(?::443)?@http://127.0.0.1:{port}"  # "@" separates: the regex uses "|"


def gateway_command(mock_port: int, confdir: Path, db: Path, *extra: str, port: int = 0,
                    addons: bool = True, root: Path = ROOT) -> list[str]:
    """The mitmdump command line of a test gateway: provider hosts mapped to the mock (lazy
    connections, so the redirect happens before any upstream connection is made)."""
    args = [str(BIN / "mitmdump"), "--listen-port", str(port), "--set", f"confdir={confdir}"]
    args += ["--set", "connection_strategy=lazy", "--map-remote", map_remote_to(mock_port)]
    if addons:
        # The router on any free port: several gateways run at once in the suite, never on 4000.
        args += ["-s", str(root / "addons" / "gateway.py"), "--set", f"tapgate_db={db}"]
        if not any(a.startswith("tapgate_router=") for a in extra):  # mitmdump stalls on an option set twice
            args += ["--set", "tapgate_router=127.0.0.1:0"]
    return [*args, *extra]


def start_gateway(
    mock_port: int, confdir: Path, db: Path, *extra: str, addons: bool = True, root: Path = ROOT,
    env: dict[str, str] | None = None,
) -> tuple[Process, int]:
    """mitmdump on a free loopback port in front of the mock. `root`: another checkout's addons
    (benchmarks compare code before and after a change), imported from there first. `env`: variables
    only this gateway sees (a master key, a provider key its config names)."""
    env = {**os.environ, **MOCK_PROVIDER_KEYS, **(env or {}), "PYTHONUNBUFFERED": "1"}
    if root != ROOT:
        env["PYTHONPATH"] = os.pathsep.join(filter(None, (str(root), env.get("PYTHONPATH"))))
    p = Process.start(gateway_command(mock_port, confdir, db, *extra, addons=addons, root=root), env=env)
    host = r"127\.0\.0\.1" if addons else r"\S+"
    port = int(p.wait_for(rf"proxy listening at {host}:(\d+)").group(1))
    if addons:
        p.wait_for(r"tapgate ready")
    return p, port


def configured_gateway(mock_port: int, tmp: Path, config: str, *extra: str,
                       env: dict[str, str] | None = None) -> tuple[Process, int]:
    """A gateway with a tapgate.yaml of its own, written into tmp with its store (t.db) and CA (conf/)."""
    (tmp / "tapgate.yaml").write_text(config)
    return start_gateway(mock_port, tmp / "conf", tmp / "t.db", "--set", f"tapgate_config={tmp / 'tapgate.yaml'}",
                         *extra, env=env)


def router_url(process: Process) -> str:
    """The router's base URL for an OpenAI client, from the gateway's start-up line."""
    return process.wait_for(r"tapgate router listening at (http://\S+)").group(1) + "/v1"


def admin(mock_port: int, method: str, path: str, body: dict | None = None) -> object:
    """A call to the mock's /_mock/ admin API (programs that make it fail, its request log)."""
    import json
    import urllib.request

    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(f"http://127.0.0.1:{mock_port}{path}", data=data, method=method,
                                 headers={"content-type": "application/json"})
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # loopback, never via a proxy
    with opener.open(req, timeout=10) as resp:
        return json.loads(resp.read())


def query(db: Path | str, sql: str, params: tuple = ()) -> list[dict]:
    """Rows of the store: a SQLite file, or a postgresql:// URL (read through core/database.py, which
    answers the same SQL)."""
    if str(db).startswith("postgresql://"):
        from core.database import connect

        conn = connect(str(db))
        try:
            return [dict(r) for r in conn.execute(sql, params)]
        finally:
            conn.close()
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5)
    conn.row_factory = sqlite3.Row
    try:
        return [dict(r) for r in conn.execute(sql, params)]
    finally:
        conn.close()


def store_files(db: Path) -> list[Path]:
    """Every file the gateway keeps for a store: the db, its WAL and shared memory, its journal."""
    return [p for p in [*db.parent.glob(db.name + "*"), *db.parent.glob(db.name + ".journal/*")] if p.is_file()]


def wait_rows(db: Path, sql: str, params: tuple = (), count: int = 1, timeout: float = 15) -> list[dict]:
    """Rows of a query once there are at least `count`: the writer commits within a second."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            rows = query(db, sql, params)
        except Exception as e:  # the table not made yet (SQLite's OperationalError, PostgreSQL's own)
            if not isinstance(e, sqlite3.OperationalError) and type(e).__module__.split(".")[0] != "psycopg":
                raise
            rows = []
        if len(rows) >= count or time.monotonic() > deadline:
            assert len(rows) >= count, f"expected {count} rows, got {len(rows)}: {sql} {params}"
            return rows
        time.sleep(0.05)
