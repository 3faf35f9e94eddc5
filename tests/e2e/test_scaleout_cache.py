"""Three gateway processes sharing one Redis share the response cache: a miss on one is a hit on
another (whole and streamed), another tenant misses, and 30 identical calls spread over the three make
exactly one upstream call, through the router and through the proxy; a leader that fails hands over to
one waiter; /metrics counts Redis' hits; with Redis away the process's own cache still serves."""

from __future__ import annotations

import asyncio
import json
import signal
import socket
import ssl
import time
import urllib.request
import uuid

import openai
import pytest
from harness import Process, admin, router_url, start_gateway, wait_rows
from services import clear_prefix, redis_server, unique_prefix

MASTER = "sk-shared-cache-master"
CACHE_ON = {"X-Tapgate-Cache-Enabled": "true"}
# Generous for a loaded two-core machine running three gateways: a round trip past it would be a miss,
# a second upstream call, and the count below off by one. The default (250 ms) is for the hot path.
TIMEOUT_MS = 2000


def config(mock: int) -> str:
    base = f"http://127.0.0.1:{mock}"
    return f"""
router:
  master_key: {MASTER}
  retry: {{num_retries: 0}}
  providers:
    openai: {{base_url: "{base}/v1"}}
  models:
    slow:
      deployments: [{{provider: openai, model: gpt-4o-mini, headers: {{x-mock-delay-ms: "800"}}}}]
"""


@pytest.fixture(scope="module")
def trio(mock, tmp_path_factory):
    url, prefix = redis_server(), unique_prefix()
    tmp = tmp_path_factory.mktemp("shared-cache")
    (tmp / "tapgate.yaml").write_text(config(mock))
    procs: list[tuple[Process, int]] = []
    for _ in range(3):
        procs.append(start_gateway(mock, tmp / "conf", tmp / "t.db", "--set", f"tapgate_config={tmp / 'tapgate.yaml'}",
                                   "--set", f"tapgate_redis={url}", "--set", f"tapgate_redis_prefix={prefix}",
                                   "--set", f"tapgate_redis_cache_timeout_ms={TIMEOUT_MS}"))
    yield {"routers": [router_url(p) for p, _ in procs], "proxies": [port for _, port in procs], "db": tmp / "t.db",
           "ca": tmp / "conf" / "mitmproxy-ca-cert.pem"}
    for p, _ in procs:
        assert p.stop() in (0, -signal.SIGKILL), "\n".join(p.lines[-30:])
    clear_prefix(url, prefix)


def prompt() -> list[dict]:
    """A message no other test sends: the mock's log and the store are searched for it."""
    return [{"role": "user", "content": f"shared {uuid.uuid4().hex}"}]


def upstream(mock: int, msgs: list[dict]) -> int:
    """How many requests with this prompt reached the provider."""
    marker = msgs[0]["content"]
    return sum(marker in r["body"] for r in admin(mock, "GET", "/_mock/requests"))


def recorded(trio, msgs: list[dict], n: int) -> list[dict]:
    marker = msgs[0]["content"].split()[-1]
    return wait_rows(trio["db"], "SELECT * FROM requests WHERE request_body LIKE ? ORDER BY started_at, rowid", (f"%{marker}%",), n)


def router(url: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=url, api_key=MASTER, max_retries=0, default_headers=CACHE_ON)


def proxied(trio, port: int, api_key: str = "sk-tenant-a", client=openai.DefaultHttpxClient, sdk=openai.OpenAI):
    verify = ssl.create_default_context(cafile=trio["ca"])
    return sdk(api_key=api_key, max_retries=0, default_headers={**CACHE_ON, "x-mock-delay-ms": "800"},
               http_client=client(proxy=f"http://127.0.0.1:{port}", verify=verify))


def test_a_miss_on_one_process_is_a_hit_on_another(trio, mock):
    msgs = prompt()
    a, b, c = (router(u) for u in trio["routers"])
    first = a.chat.completions.with_raw_response.create(model="gpt-4o-mini", messages=msgs)
    second = b.chat.completions.with_raw_response.create(model="gpt-4o-mini", messages=msgs)
    assert first.headers["x-tapgate-cache"] == "MISS" and second.headers["x-tapgate-cache"] == "HIT"
    text = first.parse().choices[0].message.content
    assert second.parse().choices[0].message.content == text
    streamed = c.chat.completions.create(model="gpt-4o-mini", messages=msgs, stream=True)  # replayed as a stream
    assert "".join(ch.choices[0].delta.content or "" for ch in streamed if ch.choices) == text
    assert upstream(mock, msgs) == 1
    rows = recorded(trio, msgs, 3)
    assert [r["cache_hit"] for r in rows] == [0, 1, 1]
    assert rows[1]["routed_to"] == rows[0]["routed_to"] and rows[1]["model"] == rows[0]["model"]  # same columns


def test_30_identical_router_calls_over_three_processes_go_upstream_once(trio, mock):
    msgs = prompt()

    async def burst():
        clients = [openai.AsyncOpenAI(base_url=u, api_key=MASTER, max_retries=0, default_headers=CACHE_ON, timeout=60)
                   for u in trio["routers"]]
        try:
            return await asyncio.gather(*(clients[i % 3].chat.completions.create(model="slow", messages=msgs)
                                          for i in range(30)))
        finally:
            for c in clients:
                await c.close()

    answers = asyncio.run(burst())
    assert upstream(mock, msgs) == 1
    assert len({a.choices[0].message.content for a in answers}) == 1
    assert sum(r["cache_hit"] for r in recorded(trio, msgs, 30)) == 29


def test_a_leader_that_fails_hands_over_to_a_waiter_in_another_process(trio, mock):
    msgs = prompt()
    admin(mock, "POST", "/_mock/program", {"path_contains": "/chat/completions", "status": 500, "delay_ms": 1500})

    async def burst():
        clients = [openai.AsyncOpenAI(base_url=u, api_key=MASTER, max_retries=0, default_headers=CACHE_ON, timeout=60)
                   for u in trio["routers"]]
        try:
            first = asyncio.create_task(clients[0].chat.completions.create(model="gpt-4o-mini", messages=msgs))
            deadline = time.monotonic() + 30
            while not upstream(mock, msgs):  # the leader's call has reached the provider (and will fail)
                assert time.monotonic() < deadline, "the leader's call never reached the mock"
                await asyncio.sleep(0.05)
            rest = [clients[1 + i % 2].chat.completions.create(model="gpt-4o-mini", messages=msgs) for i in range(8)]
            return await asyncio.gather(first, *rest, return_exceptions=True)
        finally:
            for c in clients:
                await c.close()

    failed, *answers = asyncio.run(burst())
    assert isinstance(failed, openai.InternalServerError)
    assert not any(isinstance(a, Exception) for a in answers), answers
    assert upstream(mock, msgs) == 2  # the failed leader's, and one waiter's that took over; the rest hit
    assert len({a.choices[0].message.content for a in answers}) == 1
    assert sum(r["cache_hit"] for r in recorded(trio, msgs, 9)) == 7


def test_30_identical_proxied_calls_over_three_processes_go_upstream_once(trio, mock):
    msgs = prompt()

    async def one(client) -> str:
        stream = await client.chat.completions.create(model="gpt-4o-mini", messages=msgs, stream=True,
                                                      stream_options={"include_usage": True})
        return "".join([ch.choices[0].delta.content or "" async for ch in stream if ch.choices])

    async def texts():
        clients = [proxied(trio, port, client=openai.DefaultAsyncHttpxClient, sdk=openai.AsyncOpenAI)
                   for port in trio["proxies"]]
        try:
            return await asyncio.gather(*(one(clients[i % 3]) for i in range(30)))
        finally:
            for c in clients:
                await c.close()

    answers = asyncio.run(texts())
    assert upstream(mock, msgs) == 1
    assert len(set(answers)) == 1 and answers[0]
    assert sum(r["cache_hit"] for r in recorded(trio, msgs, 30)) == 29


def test_passthrough_hits_across_processes_and_tenants_stay_apart(trio, mock):
    msgs = prompt()
    a, b, c = (proxied(trio, port) for port in trio["proxies"])
    first = a.chat.completions.create(model="gpt-4o-mini", messages=msgs).choices[0].message.content
    assert b.chat.completions.create(model="gpt-4o-mini", messages=msgs).choices[0].message.content == first
    assert upstream(mock, msgs) == 1
    other = proxied(trio, trio["proxies"][2], api_key="sk-tenant-b")  # same prompt, another caller: a miss
    other.chat.completions.create(model="gpt-4o-mini", messages=msgs)
    assert upstream(mock, msgs) == 2
    c.close()


def test_metrics_count_the_shared_caches_hits(trio, mock):
    msgs = prompt()
    a, b = router(trio["routers"][0]), router(trio["routers"][1])
    a.chat.completions.create(model="gpt-4o-mini", messages=msgs)
    b.chat.completions.create(model="gpt-4o-mini", messages=msgs)
    base = trio["routers"][1].removesuffix("/v1")
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    with opener.open(base + "/metrics", timeout=10) as resp:
        text = resp.read().decode()
    hits = [line for line in text.splitlines() if line.startswith('tapgate_cache_redis_total{outcome="hit"}')]
    assert hits and float(hits[0].split()[-1]) >= 1, json.dumps(text[-2000:])


def test_with_redis_away_calls_are_served_and_the_process_cache_still_hits(mock, tmp_path):
    with socket.socket() as s:  # a port nothing listens on: Redis is away
        s.bind(("127.0.0.1", 0))
        away = f"redis://127.0.0.1:{s.getsockname()[1]}/0"
    (tmp_path / "tapgate.yaml").write_text(config(mock))
    process, _ = start_gateway(mock, tmp_path / "conf", tmp_path / "t.db", "--set",
                               f"tapgate_config={tmp_path / 'tapgate.yaml'}", "--set", f"tapgate_redis={away}")
    try:
        msgs, client = prompt(), router(router_url(process))
        first = client.chat.completions.with_raw_response.create(model="gpt-4o-mini", messages=msgs)
        second = client.chat.completions.with_raw_response.create(model="gpt-4o-mini", messages=msgs)
        assert (first.headers["x-tapgate-cache"], second.headers["x-tapgate-cache"]) == ("MISS", "HIT")
        assert upstream(mock, msgs) == 1
        process.wait_for(r"shared response cache's Redis failed")
        assert sum("shared response cache's Redis failed" in line for line in process.lines) == 1  # said once
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        with opener.open(router_url(process).removesuffix("/v1") + "/metrics", timeout=10) as resp:
            text = resp.read().decode()
        errors = [line for line in text.splitlines() if line.startswith('tapgate_cache_redis_total{outcome="error"}')]
        assert errors and float(errors[0].split()[-1]) >= 1
    finally:
        assert process.stop() == 0, "\n".join(process.lines[-30:])
