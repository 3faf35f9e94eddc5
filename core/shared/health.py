"""Shared deployment health: a process's failures and recoveries of a deployment are published on a
Redis channel and counted by every other process's cooldown (core/routing.py's Cooling), so a failing
deployment cools down everywhere rather than failing a few calls on each process first."""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Callable

from core.shared.channel import follow

log = logging.getLogger(__name__)

BACKLOG = 10_000  # events waiting to be published; past this the oldest are dropped
ATTACH_SECONDS = 0.5


class SharedHealth:
    def __init__(self, client, prefix: str, ident: str, cooling: Callable[[], object | None]) -> None:
        self.client = client
        self.channel = f"{prefix}health"
        self.ident = ident
        self.cooling = cooling  # the Cooling in use now (a config reload makes a new one)
        self.outbox: asyncio.Queue[tuple[str, str]] = asyncio.Queue(BACKLOG)
        self.applied = 0  # events from other processes counted here
        self._tasks: list[asyncio.Task] = []

    def relay(self, event: str, name: str) -> None:
        """Cooling's hook: never waits (the event loop's hot path)."""
        try:
            self.outbox.put_nowait((event, name))
        except asyncio.QueueFull:
            self.outbox.get_nowait()
            self.outbox.put_nowait((event, name))

    def attach(self) -> None:
        """Hook the Cooling in use now (again after a config reload made a new one)."""
        if (cooling := self.cooling()) is not None and cooling.relay is None:
            cooling.relay = self.relay

    def start(self) -> None:
        self.attach()
        self._tasks = [asyncio.create_task(self._publish()), asyncio.create_task(self._listen())]

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    async def _publish(self) -> None:
        while True:
            try:
                event, name = await asyncio.wait_for(self.outbox.get(), ATTACH_SECONDS)
            except TimeoutError:
                self.attach()  # a config reload may have made a new Cooling
                continue
            message = json.dumps({"from": self.ident, "event": event, "name": name})
            try:
                await self.client.publish(self.channel, message)
            except Exception as e:  # Redis away: this process's cooldowns still work on their own
                log.debug("tapgate: deployment health not shared: %s", e)

    async def _listen(self) -> None:  # the heartbeat reports Redis being away
        await follow(self.client, self.channel, self.apply, "deployment health channel")

    def apply(self, data: bytes | str) -> None:
        """Another process's failure or recovery, counted in this one's cooldowns."""
        try:
            doc = json.loads(data)
        except ValueError:
            return
        if doc.get("from") == self.ident or (cooling := self.cooling()) is None:
            return
        self.attach()
        name = str(doc.get("name"))
        if doc.get("event") == "failed":
            was = cooling.available(name, time.monotonic())
            cooling.failed(name, time.monotonic(), relayed=True)
            if was and not cooling.available(name, time.monotonic()):
                log.info("tapgate: deployment %s cooling down: failing in another gateway process", name)
        elif doc.get("event") == "succeeded":
            cooling.succeeded(name, relayed=True)
        self.applied += 1
