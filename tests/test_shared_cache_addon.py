"""The CacheSharing addon: its options refused when not positive, nothing shared without a Redis URL
or with tapgate_redis_cache off, the shared cache started and stopped with one, the password never logged."""

from __future__ import annotations

import asyncio
import logging

import pytest
from mitmproxy import exceptions
from mitmproxy.test import taddons
from services import clear_prefix, redis_server, unique_prefix

from addons.settings import Settings
from addons.shared import Shared
from addons.shared_cache import CacheSharing
from addons.spend import Spend
from core.cache import Caching
from core.keys import KeyRing


def addons() -> tuple[Shared, CacheSharing]:
    settings = Settings()
    return Shared(Spend(settings, []), KeyRing()), CacheSharing(Caching(settings, []))


def test_bounds_that_are_not_positive_are_refused():
    shared, sharing = addons()
    with taddons.context(shared, sharing) as tctx:
        for name in ("tapgate_redis_cache_timeout_ms", "tapgate_redis_cache_lock_seconds",
                     "tapgate_redis_cache_max_entry_bytes"):
            with pytest.raises(exceptions.OptionsError, match=name):
                tctx.configure(sharing, **{name: 0})
        tctx.configure(sharing, tapgate_redis_cache_timeout_ms=50)


def test_nothing_is_shared_without_a_url_or_with_the_cache_off():
    shared, sharing = addons()
    with taddons.context(shared, sharing) as tctx:
        asyncio.run(sharing.running())
        assert sharing.caching.shared is None
        tctx.configure(shared, tapgate_redis=redis_server())
        tctx.configure(sharing, tapgate_redis_cache=False)
        asyncio.run(sharing.running())
        assert sharing.caching.shared is None


def test_with_a_url_the_cache_is_shared_and_the_password_never_logged(caplog):
    url = redis_server().replace("redis://", "redis://:hunter2@", 1)  # a server with none accepts any
    prefix = unique_prefix()
    shared, sharing = addons()
    caplog.set_level(logging.INFO)

    async def run() -> tuple:
        await sharing.running()
        cache = sharing.caching.shared
        found = await cache.fetch("some-key", 1)
        await sharing.done()
        return cache, found

    with taddons.context(shared, sharing) as tctx:
        tctx.configure(shared, tapgate_redis=url, tapgate_redis_prefix=prefix)
        cache, found = asyncio.run(run())
    clear_prefix(redis_server(), prefix)
    assert found[0] is None and found[1] is not None and cache.counts["miss"] == 1  # the first asks: it leads
    assert sharing.caching.shared is None  # stopped
    assert "shared through redis://:***@" in caplog.text and "hunter2" not in caplog.text
