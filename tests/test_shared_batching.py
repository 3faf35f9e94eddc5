"""Script calls batched on one connection, against a real Redis: one batch for the calls queued
together, settlements riding with the next admission, each caller its own answer or error, scripts the
server forgot loaded again, and a server that stops answering failing the batch, not the process."""

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
    def __init__(self, client, **options) -> None:
        super().__init__(client, **options)
        self.pipelines: list[int] = []

    async def _batch(self, batch: list) -> list:
        self.pipelines.append(len(batch))
        return await super()._batch(batch)


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
    await calls.close()
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


@pytest.mark.anyio
async def test_calls_queued_while_a_batch_is_out_go_together_as_the_next(shared):
    url, prefix = shared
    client = aredis.from_url(url)
    calls, incr = Counted(client), client.register_script(INCR)
    await client.script_load(INCR)
    first = calls.run(incr, [f"{prefix}q"], [1])
    for _ in range(10):  # a few loop turns: the sender starts and writes the first batch
        if calls.pipelines:
            break
        await asyncio.sleep(0)
    assert calls.pipelines == [1] and not first.done()
    later = [calls.run(incr, [f"{prefix}q"], [1]) for _ in range(5)]  # queued while it is out
    assert await first == 1
    assert sorted(await asyncio.gather(*later)) == [2, 3, 4, 5, 6]
    assert calls.pipelines == [1, 5]
    await calls.close()
    await client.aclose()


@pytest.mark.anyio
async def test_a_settlement_rides_with_the_next_admission_or_goes_alone_after_the_linger(shared):
    url, prefix = shared
    client = aredis.from_url(url)
    calls, incr = Counted(client, linger=30), client.register_script(INCR)  # a linger no test outwaits
    await client.script_load(INCR)
    rider = calls.ride(incr, [f"{prefix}r"], [10])
    for _ in range(10):  # loop turns in which nothing else is sent
        await asyncio.sleep(0)
    assert calls.pipelines == [] and not rider.done()  # waiting for company
    assert await calls.run(incr, [f"{prefix}r"], [1]) == 11  # the rider went first, in the same batch
    assert await rider == 10
    assert calls.pipelines == [2]
    await calls.close()

    alone = Counted(client, linger=0.001)
    assert await alone.ride(incr, [f"{prefix}r"], [1]) == 12  # no admission came: it went by itself
    assert alone.pipelines == [1]
    await alone.close()
    await client.aclose()


@pytest.mark.anyio
async def test_a_server_that_stops_answering_fails_the_batch_and_the_next_call_reconnects(shared, monkeypatch):
    from core.shared import batching

    url, prefix = shared
    accepted: list[asyncio.StreamWriter] = []

    async def mute(reader, writer):  # reads and never answers
        accepted.append(writer)
        while await reader.read(65536):
            pass

    server = await asyncio.start_server(mute, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    monkeypatch.setattr(batching, "TIMEOUT_SECONDS", 0.2)
    client = aredis.from_url(f"redis://127.0.0.1:{port}/0", protocol=2)
    calls = ScriptCalls(client)
    incr = client.register_script(INCR)
    results = await asyncio.gather(*(calls.run(incr, ["k"], [1]) for _ in range(3)), return_exceptions=True)
    assert all("did not answer 3 script call(s)" in str(r) for r in results), results
    assert calls._conn is None  # dropped: a late answer must not be read as the next batch's
    server.close()
    await client.aclose()

    real = aredis.from_url(url)  # the same object, now pointed at a server that answers
    calls.client = real
    await real.script_load(INCR)
    assert await calls.run(incr, [f"{prefix}s"], [4]) == 4
    await calls.close()
    await real.aclose()
