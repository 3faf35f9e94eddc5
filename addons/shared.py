"""Shared: the `tapgate_redis` options. With a Redis URL set, budgets and rate limits are admitted and
settled in Redis (core/shared/), so every gateway process naming the same Redis enforces one set of
caps and counts the others' deployment failures in its cooldowns; with none set nothing changes (one process, its ledger in memory)."""

from __future__ import annotations

import logging

from mitmproxy import ctx, exceptions

from addons.spend import Spend
from addons.store import store_location
from core.keys import SHARED_REFRESH, KeyRing
from core.secrets import redact_password
from core.shared.gate import SharedGate

log = logging.getLogger(__name__)

POOL = 16  # connections to Redis per process


class Shared:
    def __init__(self, spend: Spend, ring: KeyRing, router=None) -> None:
        self.spend = spend
        self.ring = ring
        self.router = router  # its deployments' cooldowns are shared too
        self.gate: SharedGate | None = None
        self.health = None

    def load(self, loader) -> None:
        loader.add_option(
            "tapgate_redis", str, "",
            "redis:// URL of the Redis every gateway process shares budgets, rate limits and the response cache "
            "through (docs/scaleout.md). Empty: each process keeps its own, in memory.",
        )
        loader.add_option(
            "tapgate_redis_prefix", str, "tapgate:",
            "Prefix of every key tapgate writes in Redis: gateways that should share state use the same one.",
        )
        loader.add_option(
            "tapgate_redis_failure", str, "closed",
            "While Redis is unreachable: closed refuses calls that need a budget or rate-limit check with a "
            "503; open admits them against this process's share (1/N of N live processes) of each cap.",
            choices=("closed", "open"),
        )
        loader.add_option(
            "tapgate_reuse_port", bool, False,
            "Open the router's port with SO_REUSEPORT, so several gateway processes can listen on the same "
            "address and the kernel spreads connections over them (docs/scaleout.md).",
        )
        loader.add_option(
            "tapgate_reservation_seconds", int, 60,
            "How long a call's budget reservation outlives its process in Redis: a gateway that dies "
            "holds nothing longer (running calls renew theirs).",
        )

    def configure(self, updated: set[str]) -> None:
        if "tapgate_redis" in updated and ctx.options.tapgate_redis:
            if not ctx.options.tapgate_redis.startswith(("redis://", "rediss://", "unix://")):
                raise exceptions.OptionsError(
                    f"tapgate_redis must be a redis:// URL, got {redact_password(ctx.options.tapgate_redis)!r}")
        if "tapgate_redis_failure" in updated and ctx.options.tapgate_redis_failure not in ("closed", "open"):
            raise exceptions.OptionsError(
                f"tapgate_redis_failure must be closed or open, got {ctx.options.tapgate_redis_failure!r}")
        if "tapgate_reservation_seconds" in updated and ctx.options.tapgate_reservation_seconds <= 0:
            raise exceptions.OptionsError("tapgate_reservation_seconds must be positive")

    async def running(self) -> None:
        # After Spend's running: its ledger and policies are in place.
        if not ctx.options.tapgate_redis:
            return
        import redis.asyncio as redis

        from core.shared.ledger import SharedLedger

        # A bounded pool: a burst of calls waits for one of a few connections instead of opening one each.
        pool = redis.BlockingConnectionPool.from_url(ctx.options.tapgate_redis, max_connections=POOL, timeout=None,
                                                     socket_timeout=5, socket_connect_timeout=2)
        client = redis.Redis(connection_pool=pool)
        ledger = SharedLedger(client, ctx.options.tapgate_redis_prefix, self.spend.settings.config.timezone,
                              ctx.options.tapgate_reservation_seconds)
        db = store_location()  # budgets rebuilt from it when Redis has lost them
        self.gate = SharedGate(ledger, lambda: self.spend._totals_from_store(db),
                               ctx.options.tapgate_redis_failure, self.spend.on_crossing)
        await self.gate.start()
        self.spend.shared = self.gate
        if self.router is not None:
            from core.shared.health import SharedHealth

            router = self.router
            self.health = SharedHealth(client, ctx.options.tapgate_redis_prefix, self.gate.ident,
                                       lambda: router.routes.cooling if router.routes is not None else None)
            self.health.start()
        self.ring.refresh = SHARED_REFRESH
        log.info("tapgate: budgets and rate limits shared through %s (prefix %r, fail-%s)",
                 redact_password(ctx.options.tapgate_redis), ctx.options.tapgate_redis_prefix, self.gate.failure)

    async def done(self) -> None:
        if self.router is not None:  # routed calls still in flight settle here: let them end first
            await self.router.drain()
        if self.health is not None:
            await self.health.stop()
            self.health = None
        if self.gate is not None:
            self.spend.shared = None
            await self.gate.stop()
            self.gate = None
