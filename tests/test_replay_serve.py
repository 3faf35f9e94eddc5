"""`tapgate replay serve`'s matching (core/evals/matching.py) and its server: recorded answers in turn,
streams paced as recorded, misses a 404."""

from __future__ import annotations

import asyncio
import json

from aiohttp.test_utils import TestClient, TestServer

from cli import replay
from core.evals.matching import request_key

ASK = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]}


def test_the_key_ignores_delivery_and_tags_but_not_what_is_asked():
    base = request_key("", ASK)
    assert request_key("", {**ASK, "user": "u1", "metadata": {"a": 1}, "stream_options": {}}) == base
    assert request_key("", {**ASK, "stream": True}) != base
    assert request_key("", {**ASK, "model": "gpt-4o"}) != base
    assert request_key("", {**ASK, "tools": [{"type": "function", "function": {"name": "f"}}]}) != base
    gemini = {"contents": [{"role": "user", "parts": [{"text": "hi"}]}]}
    assert request_key("/v1beta/models/gemini-2.5-flash:streamGenerateContent", gemini) == request_key(
        replay.row_path({"endpoint": "streamGenerateContent", "model": "gemini-2.5-flash"}), gemini)


def test_answers_in_turn_streams_paced_and_misses(monkeypatch):
    rows = [{"request_body": json.dumps(ASK), "response_body": '{"n": 1}'},
            {"request_body": json.dumps(ASK), "response_body": '{"n": 2}'},
            {"request_body": json.dumps({**ASK, "stream": True}), "content_type": "text/event-stream",
             "response_events": json.dumps([[100, "data: 1\n\n"], [300, "data: 2\n\n"]])}]
    waits = []
    real_sleep = asyncio.sleep

    async def sleep(seconds):
        waits.append(seconds)
        await real_sleep(0)

    monkeypatch.setattr(replay.asyncio, "sleep", sleep)

    async def run():
        async with TestClient(TestServer(replay.app(rows, speed=2.0))) as client:
            got = [await (await client.post("/v1/chat/completions", json=ASK)).text() for _ in range(3)]
            stream = await client.post("/v1/chat/completions", json={**ASK, "stream": True, "user": "x"})
            miss = await client.post("/v1/chat/completions", json={**ASK, "model": "other"})
            return got, stream.headers["content-type"], await stream.text(), miss.status

    got, ctype, text, miss = asyncio.run(run())
    assert got == ['{"n": 1}', '{"n": 2}', '{"n": 1}'] and miss == 404
    assert ctype.startswith("text/event-stream") and text == "data: 1\n\ndata: 2\n\n"
    # at speed 2: the first event 50 ms after the request, the second 150 ms after it (the fake sleep
    # lets no time pass, so each wait is counted from the request)
    paced = [w for w in waits if w]  # asyncio.sleep(0) elsewhere in aiohttp is not pacing
    assert len(paced) == 2 and 0.03 < paced[0] <= 0.05 and 0.13 < paced[1] <= 0.15
