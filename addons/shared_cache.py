"""CacheSharing: with `tapgate_redis` set, the response cache's entries and its wait for identical calls
are shared by every gateway process naming the same Redis (core/shared/cache.py); its own options."""

from __future__ import annotations

import logging

from mitmproxy import ctx, exceptions

from core.cache import Caching
from core.secrets import redact_password

log = logging.getLogger(__name__)

POOL = 16  # connections to Redis per process for the cache, apart from the budgets' (a slow one never starves the other)


class CacheSharing:
    def __init__(self, caching: Caching) -> None:
        self.caching = caching

    def load(self, loader) -> None:
        loader.add_option(
            "tapgate_redis_cache", bool, True,
            "With tapgate_redis set, share the response cache through it too: an answer cached by one gateway "
            "process serves the others, and identical calls across processes make one upstream call.",
        )
        loader.add_option(
            "tapgate_redis_cache_timeout_ms", int, 250,
            "Longest a call waits on one Redis round trip of the shared cache; a slower or failed one is a "
            "cache miss (counted on /metrics), never a failed call.",
        )
        loader.add_option(
            "tapgate_redis_cache_lock_seconds", int, 10,
            "How long the lock of a call leading identical ones outlives its process (renewed while the call "
            "runs): when the process dies, a waiting call in another process calls upstream after this at most.",
        )
        loader.add_option(
            "tapgate_redis_cache_max_entry_bytes", int, 1024 * 1024,
            "Largest answer stored in Redis (body plus a small header); larger ones stay in the process's own "
            "cache only, counted on /metrics.",
        )

    def configure(self, updated: set[str]) -> None:
        for name in ("tapgate_redis_cache_timeout_ms", "tapgate_redis_cache_lock_seconds",
                     "tapgate_redis_cache_max_entry_bytes"):
            if name in updated and getattr(ctx.options, name) <= 0:
                raise exceptions.OptionsError(f"{name} must be positive")

    async def running(self) -> None:
        if not (ctx.options.tapgate_redis and ctx.options.tapgate_redis_cache):
            return
        import redis.asyncio as redis

        from core.shared.cache import SharedCache

        timeout = ctx.options.tapgate_redis_cache_timeout_ms / 1000
        pool = redis.BlockingConnectionPool.from_url(ctx.options.tapgate_redis, max_connections=POOL, timeout=None,
                                                     socket_timeout=5, socket_connect_timeout=min(timeout, 2))
        shared = SharedCache(redis.Redis(connection_pool=pool), ctx.options.tapgate_redis_prefix, timeout=timeout,
                             lock_seconds=ctx.options.tapgate_redis_cache_lock_seconds,
                             max_entry_bytes=ctx.options.tapgate_redis_cache_max_entry_bytes)
        shared.start()
        self.caching.shared = shared
        log.info("tapgate: response cache shared through %s (prefix %r)", redact_password(ctx.options.tapgate_redis),
                 ctx.options.tapgate_redis_prefix)

    async def done(self) -> None:
        if (shared := self.caching.shared) is not None:
            self.caching.shared = None
            await shared.stop()
