"""scripts/gateways.py: N gateway processes behind one address, started by one command. Two real
mitmdump processes on one Redis, HAProxy in front of their proxy ports, the router port shared
with SO_REUSEPORT; calls through both addresses with the OpenAI SDK reach both processes, and every
one is recorded once."""

from __future__ import annotations

import asyncio
import json
import os
import sys

import openai
import pytest
from harness import BIN, MOCK_PROVIDER_KEYS, ROOT, Process, map_remote_to, query
from services import clear_prefix, redis_server, require, unique_prefix
from support import until

CALLS = 40  # per address, at once: enough connections for both the kernel and HAProxy to spread


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def committed_by_process(db) -> dict[int, int]:
    """Records each live gateway process's writer committed, from their status files."""
    statuses = (json.loads(p.read_text()) for p in db.with_name(db.name + ".journal").glob("*.status.json"))
    return {s["pid"]: s["committed"] for s in statuses}


@pytest.fixture
def pair(mock, gateway, tmp_path):
    require("haproxy", "apt-get install haproxy")
    url, prefix = redis_server(), unique_prefix()
    listen, router, db = free_port(), free_port(), tmp_path / "t.db"
    config = tmp_path / "tapgate.yaml"  # the router's OpenAI deployments at the mock
    config.write_text(f'router:\n  providers:\n    openai: {{base_url: "http://127.0.0.1:{mock}/v1"}}\n')
    process = Process.start(
        [sys.executable, str(ROOT / "scripts" / "gateways.py"), "2", "--redis", url,
         "--listen", f"127.0.0.1:{listen}", "--router", f"127.0.0.1:{router}", "--first-port", "0", "--",
         # The session gateway's CA: both processes sign with the one the client trusts.
         "--set", f"confdir={gateway.ca.parent}", "--set", f"tapgate_db={db}",
         "--set", f"tapgate_redis_prefix={prefix}", "--set", f"tapgate_config={config}",
         "--set", "connection_strategy=lazy", "--map-remote", map_remote_to(mock)],
        env={**os.environ, **MOCK_PROVIDER_KEYS, "PYTHONUNBUFFERED": "1", "PATH": f"{BIN}:{os.environ['PATH']}"})
    try:
        process.wait_for(r"behind HAProxy at")
        until(lambda: sum("tapgate ready" in line for line in process.lines) == 2, 60,
              "both gateways to start:\n" + "\n".join(process.lines[-30:]))
        yield listen, router, db, gateway.ca
    finally:
        code = process.stop()
        clear_prefix(url, prefix)
    assert code == 0, "\n".join(process.lines[-30:])
    assert not any("Traceback" in line for line in process.lines), "\n".join(process.lines[-30:])


async def calls(client: openai.AsyncOpenAI, tag: str) -> list:
    return await asyncio.gather(*(client.chat.completions.create(
        model="gpt-4o-mini", messages=[{"role": "user", "content": f"{tag} {i}"}]) for i in range(CALLS)))


def test_one_command_serves_both_addresses_from_both_processes(pair, monkeypatch):
    listen, router, db, ca = pair
    monkeypatch.setenv("HTTPS_PROXY", f"http://127.0.0.1:{listen}")  # HAProxy's address, CA trusted already

    async def drive():
        # Closed before the gateways are stopped: no client connection is left open through HAProxy.
        async with (openai.AsyncOpenAI(api_key="sk-test", max_retries=0, timeout=60) as proxied,
                    openai.AsyncOpenAI(base_url=f"http://127.0.0.1:{router}/v1", api_key="any", max_retries=0,
                                       timeout=60) as routed):
            return await calls(proxied, "proxied"), await calls(routed, "routed")

    proxied, routed = asyncio.run(drive())
    assert all(r.choices[0].message.content for r in proxied + routed)
    rows = until(lambda: (r := query(db, "SELECT mode, count(*) AS n, count(DISTINCT id) AS ids FROM requests "
                                         "GROUP BY mode ORDER BY mode")) and sum(x["n"] for x in r) == 2 * CALLS and r,
                 30, "every call recorded")
    assert [(r["mode"], r["n"], r["ids"]) for r in rows] == [("passthrough", CALLS, CALLS), ("router", CALLS, CALLS)]
    # Both processes answered some of them: each writer's status counts the records (rows and
    # spans) it committed.
    until(lambda: (c := committed_by_process(db)) and len(c) == 2 and all(c.values()), 10,
          "both processes to have committed calls")
