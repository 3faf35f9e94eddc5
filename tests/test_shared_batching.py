"""Script calls batched per event-loop turn, against a real Redis: one pipeline for a turn's calls,
each caller its own answer or error, and scripts the server forgot loaded again."""

from __future__ import annotations

import asyncio

import pytest
import redis.asyncio as aredis
from services import clear_prefix, redis_server, unique_prefix

from core.shared.batching import ScriptCalls

INCR = "return redis.call('INCRBY', KEYS[1], ARGV[1])"
FAIL = "return redis.error_reply('no such thing: ' .. ARGV[1])"


@pytest.fixture
def shared():
    url, prefix = redis_server(), unique_prefix()
    yield url, prefix
    clear_prefix(url, prefix)


class Counted(ScriptCalls):
    def __init__(self, client) -> None:
        super().__init__(client)
        self.pipelines: list[int] = []

    async def _pipeline(self, batch: list) -> list:
        self.pipelines.append(len(batch))
        return await super()._pipeline(batch)


@pytest.mark.anyio
async def test_one_turns_calls_go_as_one_pipeline_each_with_its_answer(shared):
    url, prefix = shared
    client = aredis.from_url(url)
    calls, incr = Counted(client), client.register_script(INCR)
    await client.script_load(INCR)
    answers = await asyncio.gather(*(calls.run(incr, [f"{prefix}n"], [i]) for i in range(1, 21)))
    assert answers == [sum(range(1, i + 1)) for i in range(1, 21)]  # sent in order, in one pipeline
    assert calls.pipelines == [20]
    assert int(await client.get(f"{prefix}n")) == 210
    await client.aclose()


@pytest.mark.anyio
async def test_a_failing_script_fails_its_own_caller_only(shared):
    url, prefix = shared
    client = aredis.from_url(url)
    calls = ScriptCalls(client)
    incr, fail = client.register_script(INCR), client.register_script(FAIL)
    ok, bad = await asyncio.gather(calls.run(incr, [f"{prefix}m"], [2]), calls.run(fail, [f"{prefix}m"], ["x"]),
                                   return_exceptions=True)
    assert ok == 2
    assert isinstance(bad, Exception) and "no such thing: x" in str(bad)
    await client.aclose()


@pytest.mark.anyio
async def test_scripts_a_server_forgot_are_loaded_and_sent_again(shared):
    url, prefix = shared
    client = aredis.from_url(url)
    calls = Counted(client)
    incr = client.register_script(INCR + " -- " + prefix)  # a script of this test's own
    assert not (await client.script_exists(incr.sha))[0]
    assert await asyncio.gather(calls.run(incr, [f"{prefix}k"], [1]), calls.run(incr, [f"{prefix}k"], [1])) in ([1, 2], [2, 1])
    assert calls.pipelines == [2, 2]  # NOSCRIPT for both, then both again after SCRIPT LOAD
    assert (await client.script_exists(incr.sha))[0]
    await client.aclose()


@pytest.mark.anyio
async def test_an_unreachable_server_fails_every_caller_of_the_batch(shared):
    client = aredis.from_url("redis://127.0.0.1:1/0", socket_connect_timeout=1)
    calls = ScriptCalls(client)
    incr = client.register_script(INCR)
    results = await asyncio.gather(*(calls.run(incr, ["k"], [1]) for _ in range(3)), return_exceptions=True)
    assert all(isinstance(r, Exception) for r in results), results
    await client.aclose()


@pytest.mark.anyio
async def test_a_call_alone_in_its_turn_gets_its_answer_or_its_error(shared):
    url, prefix = shared
    client = aredis.from_url(url)
    calls = Counted(client)
    incr = client.register_script(INCR + " -- alone " + prefix)  # unknown to the server: NOSCRIPT first
    assert await calls.run(incr, [f"{prefix}j"], [5]) == 5
    assert await calls.run(incr, [f"{prefix}j"], [1]) == 6
    with pytest.raises(Exception, match="no such thing: y"):
        await calls.run(client.register_script(FAIL), [f"{prefix}j"], ["y"])
    assert calls.pipelines == [1, 1, 1, 1]  # the first twice: NOSCRIPT, then loaded and sent again
    await client.aclose()
