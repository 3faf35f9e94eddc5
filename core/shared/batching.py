"""Script calls batched per event-loop turn: the calls that reach Redis in the same turn (a busy gateway
admits several at once) go as one pipeline, one write and one read for all of them. On these machines a
socket round trip costs far more CPU than the scripts themselves (redis-py spends about 130 µs a call
alone, 45 µs a call pipelined by 16), so this is what sharing state costs per call.

Scripts are called by EVALSHA; a server that does not know one (restarted, SCRIPT FLUSH) answers
NOSCRIPT, and those calls are loaded and sent again. redis-py's own pipelined scripts would instead ask
SCRIPT EXISTS on every batch: one more round trip each time."""

from __future__ import annotations

import asyncio
from typing import Any

from redis.exceptions import NoScriptError, ResponseError

MAX_BATCH = 256  # script calls per pipeline; more wait for the next one


class ScriptCalls:
    """`await calls.run(script, keys, args)`: the script's answer, sent with whatever else is queued.
    Errors are the call's own (a script that raised) or the batch's (the server unreachable)."""

    def __init__(self, client) -> None:
        self.client = client
        self._queued: list[tuple[Any, list, list, asyncio.Future]] = []
        self._tasks: set[asyncio.Task] = set()

    def run(self, script, keys: list, args: list) -> asyncio.Future:
        loop = asyncio.get_running_loop()
        future = loop.create_future()
        self._queued.append((script, keys, args, future))
        if len(self._queued) == 1:  # the first of this turn: send once the turn's other calls are queued
            loop.call_soon(self._send_queued)
        return future

    def _send_queued(self) -> None:
        while self._queued:
            batch, self._queued = self._queued[:MAX_BATCH], self._queued[MAX_BATCH:]
            task = asyncio.get_running_loop().create_task(self._send(batch))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _send(self, batch: list) -> None:
        try:
            results = await self._pipeline(batch)
            missing = [i for i, r in enumerate(results) if isinstance(r, NoScriptError)]
            if missing:  # a server that lost its scripts: load them, send those calls again
                for script in {id(batch[i][0]): batch[i][0] for i in missing}.values():
                    script.sha = await self.client.script_load(script.script)
                again = await self._pipeline([batch[i] for i in missing])
                for i, r in zip(missing, again, strict=True):
                    results[i] = r
        except BaseException as e:  # the whole batch failed: every caller gets the error
            for *_, future in batch:
                if not future.done():
                    future.set_exception(e if isinstance(e, Exception) else ConnectionError(repr(e)))
            if not isinstance(e, Exception):
                raise
            return
        for (*_, future), result in zip(batch, results, strict=True):
            if future.done():  # its caller gave up (timed out, cancelled): nothing to deliver
                continue
            if isinstance(result, Exception):
                future.set_exception(result)
            else:
                future.set_result(result)

    async def _pipeline(self, batch: list) -> list:
        if len(batch) == 1:  # alone in its turn (a quiet gateway): a plain command costs less than a pipeline
            script, keys, args, _ = batch[0]
            try:
                return [await self.client.evalsha(script.sha, len(keys), *keys, *args)]
            except ResponseError as e:  # the script's own error, or NOSCRIPT: this call's answer
                return [e]
        pipe = self.client.pipeline(transaction=False)
        for script, keys, args, _ in batch:
            pipe.evalsha(script.sha, len(keys), *keys, *args)
        return await pipe.execute(raise_on_error=False)
