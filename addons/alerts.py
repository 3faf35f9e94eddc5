"""Alerts: the addon that starts and stops core's Alerting (core/alerting.py) with the gateway: budget
alerts to Slack, a webhook and email, sent by one thread with retries, once per threshold and period."""

from __future__ import annotations

from pathlib import Path

from mitmproxy import ctx

from core.alerting import Alerting
from core.keys import KeyRing


class Alerts(Alerting):
    """`ring`: the gateway keys, whose per-key destinations alerts also go to."""

    def __init__(self, settings, spend=None, ring: KeyRing | None = None, **kwargs) -> None:
        super().__init__(settings, spend, **kwargs)
        self.ring = ring

    def running(self) -> None:
        store = getattr(self.spend, "store", None)
        if ctx.options.tapgate_postgres and store is not None:  # alerts reach PostgreSQL through the journal
            self.mirror = lambda row: store.add("alerts", row)
        else:
            self.mirror = None
        self.start(Path(ctx.options.tapgate_db).expanduser(), self.ring)

    def done(self) -> None:
        self.stop()
