"""The Dashboard addon: off by default; when on, Console hands it the rows and goes quiet, mitmproxy's
own output is turned down while it draws and restored after, and it starts from what the store holds."""

import io
import time
from datetime import UTC, datetime

import pytest
from known_store import build, request
from mitmproxy import exceptions
from mitmproxy.addons.dumper import Dumper
from mitmproxy.addons.termlog import TermLog
from mitmproxy.test import taddons

from addons.console import Console
from addons.dashboard import Dashboard
from addons.store import Store
from cli import queries
from cli.snapshot import snapshot


def addons():
    dashboard = Dashboard(file=io.StringIO())
    return dashboard, Console(file=io.StringIO(), dashboard=dashboard), TermLog(out=io.StringIO()), Dumper(io.StringIO())


def test_off_by_default_and_the_console_prints():
    dashboard, console, termlog, dumper = addons()
    with taddons.context(dashboard, console, termlog, dumper):
        console.running()
        dashboard.running()
        assert not dashboard.active
        console.show(request(id="1" * 32, started_at="2025-06-01T10:00:00.000Z"))
        console.done()
    assert "gpt-4o-2024-08-06" in console._console.file.getvalue()


def test_a_window_under_a_minute_is_refused():
    dashboard = Dashboard()
    with taddons.context(dashboard) as tctx:
        with pytest.raises(exceptions.OptionsError, match="tapgate_dashboard_window"):
            tctx.configure(dashboard, tapgate_dashboard_window=0)


def test_on_it_takes_the_rows_quiets_mitmproxy_and_restores_it(tmp_path):
    calls = build(tmp_path / "t.db")
    dashboard, console, termlog, dumper = addons()
    store = Store()
    with taddons.context(dashboard, console, termlog, dumper, store) as tctx:
        tctx.configure(store, tapgate_db=str(tmp_path / "t.db"))
        tctx.configure(dashboard, tapgate_dashboard=True, tapgate_dashboard_window=5)
        console.running()
        dashboard.running()
        assert dashboard.drawing.wait(10)
        assert (tctx.options.termlog_verbosity, tctx.options.flow_detail) == ("warn", 0)
        console.show(request(id="f" * 32, started_at=queries.iso(datetime.now(UTC)), cost_usd=0.5,
                             customer_identifier="initech"))
        s = snapshot(dashboard.tally, time.time())
        today = sum(c["started_at"][:10] == s.at.date().isoformat() for c in calls)
        assert s.today_calls == today + 1  # those in the store (seeded) and the one it was shown
        assert s.last[0]["customer_identifier"] == "initech"
        assert console._queue.empty()  # no console line scrolls through the dashboard
        tctx.configure(dashboard, tapgate_dashboard=False)
        assert not dashboard.active and not dashboard.drawing.is_set()
        assert (tctx.options.termlog_verbosity, tctx.options.flow_detail) == ("info", 1)
        store.done()
