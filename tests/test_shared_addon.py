"""The Shared addon's options: a bad Redis URL or reservation period is refused at configure, with the
password kept out of the message; with no URL set nothing is shared."""

from __future__ import annotations

import pytest
from mitmproxy import exceptions
from mitmproxy.test import taddons

from addons.settings import Settings
from addons.shared import Shared
from addons.spend import Spend
from core.keys import KeyRing
from core.secrets import redact_password


def addon() -> Shared:
    settings = Settings()
    return Shared(Spend(settings, []), KeyRing())


def test_a_url_that_is_not_redis_is_refused_without_its_password():
    shared = addon()
    with taddons.context(shared) as tctx:
        with pytest.raises(exceptions.OptionsError) as e:
            tctx.configure(shared, tapgate_redis="http://user:hunter2@127.0.0.1:6379")
        assert "redis://" in str(e.value) and "hunter2" not in str(e.value)
        with pytest.raises(exceptions.OptionsError):
            tctx.configure(shared, tapgate_reservation_seconds=0)
        with pytest.raises(exceptions.OptionsError):
            tctx.configure(shared, tapgate_redis_failure="sometimes")
        tctx.configure(shared, tapgate_redis="redis://127.0.0.1:6379/3", tapgate_redis_failure="open")


def test_nothing_is_shared_without_a_url():
    import asyncio

    shared = addon()
    with taddons.context(shared):
        asyncio.run(shared.running())
    assert shared.gate is None and shared.spend.shared is None and shared.ring.refresh == 1.0


def test_the_log_never_shows_a_redis_password():
    assert redact_password("redis://:s3cret@127.0.0.1:6379/0") == "redis://:***@127.0.0.1:6379/0"
    assert redact_password("redis://127.0.0.1:6379/0") == "redis://127.0.0.1:6379/0"
