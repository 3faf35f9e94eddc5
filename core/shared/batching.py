"""Script calls batched on one connection: the calls queued while a batch is out go together as the next
one (one write, one read for all of them), and settlements ride along with the next admission instead
of making a round trip of their own. On these machines a round trip costs far more CPU than the scripts
themselves: redis-py spends about 110 µs on a lone EVALSHA through its pool, a batch on a connection of
its own about 50 µs plus a few per call (packed by hiredis: redis-py's own packing takes 21 µs a
command, hiredis's 1.5), so this is what sharing state costs per call.

The connection is redis-py's own (the pool's settings: address, password, TLS, database, timeouts), used
without the pool: one batch at a time is in flight on it, which is what makes the next one gather.

Scripts are called by EVALSHA; a server that does not know one (restarted, SCRIPT FLUSH) answers
NOSCRIPT, and those calls are loaded and sent again. redis-py's own pipelined scripts would instead ask
SCRIPT EXISTS on every batch: one more round trip each time."""

from __future__ import annotations

import asyncio
import math
from typing import Any

from hiredis import pack_command
from redis.exceptions import NoScriptError, ResponseError
from redis.exceptions import TimeoutError as RedisTimeout

MAX_BATCH = 256  # script calls per batch; more wait for the next one
LINGER_SECONDS = 0.01  # how long a rider waits for an admission to go with before it goes alone
TIMEOUT_SECONDS = 5.0  # a batch unanswered this long fails its callers, and the connection is replaced


class ScriptCalls:
    """`await calls.run(script, keys, args)`: the script's answer, sent with whatever else is queued;
    `calls.ride(...)` the same for a call that can wait a little (a settlement) to share a round trip.
    Errors are the call's own (a script that raised) or the batch's (the server unreachable)."""

    def __init__(self, client, linger: float = LINGER_SECONDS) -> None:
        self.client = client
        self.linger = linger
        self._queued: list[tuple[Any, list, list, asyncio.Future]] = []
        self._riders: list[tuple[Any, list, list, asyncio.Future]] = []
        self._conn = None
        self._sender: asyncio.Task | None = None
        self._timer: asyncio.TimerHandle | None = None

    def run(self, script, keys: list, args: list) -> asyncio.Future:
        future = asyncio.get_running_loop().create_future()
        self._queued.append((script, keys, args, future))
        self._schedule()
        return future

    def ride(self, script, keys: list, args: list) -> asyncio.Future:
        loop = asyncio.get_running_loop()
        future = loop.create_future()
        self._riders.append((script, keys, args, future))
        if self._timer is None and self._sender is None:
            self._timer = loop.call_later(self.linger, self._schedule)
        return future

    def _schedule(self) -> None:
        """Start the sender unless it is running (then the calls go as its next batch). Its first step
        runs on the loop's next turn, so this turn's other calls are queued by then and go with it."""
        if self._sender is None:
            self._sender = asyncio.get_running_loop().create_task(self._send_all())

    async def _send_all(self) -> None:
        try:
            while self._queued or self._riders:
                if self._timer is not None:
                    self._timer.cancel()
                    self._timer = None
                pending = self._riders + self._queued  # settlements first: they free what admissions check
                batch, rest = pending[:MAX_BATCH], pending[MAX_BATCH:]
                self._riders, self._queued = [], rest
                await self._send(batch)
        finally:
            self._sender = None

    async def _send(self, batch: list) -> None:
        try:
            results = await self._batch(batch)
            missing = [i for i, r in enumerate(results) if isinstance(r, NoScriptError)]
            if missing:  # a server that lost its scripts: load them, send those calls again
                for script in {id(batch[i][0]): batch[i][0] for i in missing}.values():
                    script.sha = await self.client.script_load(script.script)
                again = await self._batch([batch[i] for i in missing])
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

    async def _batch(self, batch: list) -> list:
        """One write and the batch's answers, in order; a script's error is its own answer. Anything
        else (a reset, a timeout, a cancel) drops the connection: its answers can no longer be matched."""
        if self._conn is None:
            self._conn = self.client.connection_pool.make_connection()
        conn = self._conn
        try:
            async with asyncio.timeout(TIMEOUT_SECONDS):
                await conn.send_packed_command(b"".join(  # hiredis packs in C, some 15x faster than redis-py
                    pack_command(("EVALSHA", script.sha, len(keys), *keys, *args)) for script, keys, args, _ in batch),
                    check_health=False)
                results: list = []
                for _ in batch:
                    try:
                        results.append(await conn.read_response(timeout=math.inf))  # the batch's timeout
                    except ResponseError as e:  # the script's own error, or NOSCRIPT
                        results.append(e)
                return results
        except TimeoutError:
            await self._drop(conn)
            raise RedisTimeout(f"Redis did not answer {len(batch)} script call(s) within {TIMEOUT_SECONDS:g} s") \
                from None
        except BaseException:
            await self._drop(conn)
            raise

    async def _drop(self, conn) -> None:
        if self._conn is conn:
            self._conn = None
        try:
            await conn.disconnect(nowait=True)
        except Exception:
            pass

    async def close(self) -> None:
        """Send what is queued, then close the connection."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._queued or self._riders:
            self._schedule()
        if self._sender is not None:
            await asyncio.gather(self._sender, return_exceptions=True)
        if self._conn is not None:
            await self._drop(self._conn)
