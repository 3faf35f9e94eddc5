"""Alerts: the addon that starts and stops core's Alerting (core/alerting.py) with the gateway: budget
alerts to Slack, a webhook and email, sent by one thread with retries, once per threshold and period."""

from __future__ import annotations

from pathlib import Path

from mitmproxy import ctx

from core.alerting import Alerting


class Alerts(Alerting):
    def running(self) -> None:
        # The key ring lives in the Auth addon, when there is one: per-key destinations come from it.
        auth = ctx.master.addons.get("auth")
        self.start(Path(ctx.options.tapgate_db).expanduser(), auth.ring if auth is not None else None)

    def done(self) -> None:
        self.stop()
