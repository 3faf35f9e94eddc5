"""The clock the router's retries, backoffs and timeouts read and wait on, given to them as one object
so tests can run them on a virtual clock instantly and deterministically."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable
from typing import Protocol


class Clock(Protocol):
    def now(self) -> float:
        """Monotonic seconds: deadlines, backoffs and cooldowns are measured in these."""

    def wall(self) -> float:
        """Seconds since the epoch, for the spans' timestamps."""

    async def sleep(self, seconds: float) -> None: ...

    async def within[T](self, aw: Awaitable[T], seconds: float) -> T:
        """aw's result, or TimeoutError once `seconds` pass first (aw is then cancelled)."""


class SystemClock:
    """The real clock: time.monotonic, time.time and asyncio's sleep and wait_for."""

    now = staticmethod(time.monotonic)
    wall = staticmethod(time.time)
    sleep = staticmethod(asyncio.sleep)

    async def within[T](self, aw: Awaitable[T], seconds: float) -> T:
        return await asyncio.wait_for(aw, seconds)


SYSTEM = SystemClock()
