"""Dashboard: a live dashboard in the gateway's own terminal (`tapgate_dashboard`). The proxy only
appends each finished row to a Tally; rich's Live computes and redraws on its own thread."""

from __future__ import annotations

import logging
import threading
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from mitmproxy import ctx, exceptions
from rich.console import Console as RichConsole
from rich.live import Live

from addons.store import store_location
from cli.snapshot import Tally, snapshot
from cli.views import DashboardView
from core import database
from core.journal import read_status

log = logging.getLogger(__name__)

# A redraw holds the GIL for 10-15 ms (rich lays out its tables in Python) and the proxy's event loop
# waits for it: at ~500 calls/s through one gateway, 4 redraws a second added 13-27 ms to p99, 2
# added 1-13 ms. Twice a second, as `tapgate top` by default.
REFRESH_PER_SECOND = 2
# The budgets come from the store's budgets table, which Spend rewrites every 2 s: read it as often.
BUDGETS_SECONDS = 2.0
# While the dashboard owns the terminal, mitmproxy's own output would scroll through it: its log
# drops to warnings (from info or debug) and its flow dump is turned off.
QUIET = {"termlog_verbosity": ("warn", ("info", "debug")), "flow_detail": (0, (1, 2, 3, 4))}


class Dashboard:
    """Draws the dashboard while `tapgate_dashboard` is on; Console hands it each row (`show`)."""

    def __init__(self, file=None) -> None:
        self.tally: Tally | None = None
        self._file = file
        self._live: Live | None = None
        self._thread: threading.Thread | None = None
        self._restore: dict[str, Any] = {}
        self._running = False
        self._stopping = threading.Event()
        self.drawing = threading.Event()  # set once seeded and drawing

    @property
    def active(self) -> bool:
        return self.tally is not None

    def load(self, loader) -> None:
        loader.add_option(
            "tapgate_dashboard", bool, False,
            "Show a live dashboard in this terminal instead of a line per call. While it runs, mitmproxy's "
            "own log shows warnings only and its flow dump is off.",
        )
        loader.add_option(
            "tapgate_dashboard_window", int, 5,
            "Minutes of calls the dashboard's error rates, latency and TTFT percentiles cover.",
        )

    def configure(self, updated: set[str]) -> None:
        if "tapgate_dashboard_window" in updated and ctx.options.tapgate_dashboard_window < 1:
            raise exceptions.OptionsError("tapgate_dashboard_window: must be at least 1 (minute)")
        if self._running and updated & {"tapgate_dashboard", "tapgate_dashboard_window"}:
            self._stop()
            if ctx.options.tapgate_dashboard:
                self._start()

    def running(self) -> None:
        self._running = True
        if ctx.options.tapgate_dashboard:
            self._start()

    def show(self, row: dict[str, Any], attempts: list[str] = ()) -> None:
        """The hot path: count the row (and a routed call's attempts); drawing happens on Live's thread."""
        if (tally := self.tally) is not None:
            tally.add(row, attempts)

    def done(self) -> None:
        self._running = False
        self._stop()

    def _start(self) -> None:
        log.info("tapgate: dashboard on; mitmproxy's log shows warnings only while it runs")
        for name, (quiet, louder) in QUIET.items():
            if name in ctx.options and getattr(ctx.options, name) in louder:
                self._restore[name] = getattr(ctx.options, name)
                ctx.options.update(**{name: quiet})
        self.tally = Tally(ctx.options.tapgate_dashboard_window * 60)
        db = store_location() if "tapgate_db" in ctx.options else None
        # the writers (to the file or to PostgreSQL) report beside the journal, which is beside tapgate_db
        status_of = Path(ctx.options.tapgate_db).expanduser() if db else None
        source = database.shown(db) if db else ""
        self._live = Live(
            console=RichConsole(file=self._file), screen=True, refresh_per_second=REFRESH_PER_SECOND,
            redirect_stdout=False, redirect_stderr=False,
            get_renderable=lambda tally=self.tally, source=source: DashboardView(
                snapshot(tally, time.time(), source, read_status(status_of) if status_of else None)),
        )
        # Calls recorded from now on reach the tally through show(); the seed takes those before.
        until = database.iso(datetime.now(UTC))
        self._stopping.clear()
        self._thread = threading.Thread(target=self._seed_and_draw, args=(self.tally, db, until),
                                        name="tapgate-dashboard", daemon=True)
        self._thread.start()

    def _seed_and_draw(self, tally: Tally, db: Path | str | None, until: str) -> None:
        """Off the event loop: take in today's calls from before this start, start drawing, then keep
        the budget bars current until stopped."""
        conn = None
        if db is not None and (database.is_postgres(db) or db.is_file()):
            try:
                conn = database.connect(db)
                tally.seed(conn, time.time(), until=until)
            except Exception as e:  # the dashboard still shows calls from now on
                log.warning("tapgate: dashboard could not read %s: %s", database.shown(db), e)
        if self._live is not None:
            self._live.start()
            self.drawing.set()
        try:
            while conn is not None and not self._stopping.wait(BUDGETS_SECONDS):
                try:
                    tally.read_budgets(conn)
                except Exception as e:  # a busy or damaged file: the bars stay as they were
                    log.warning("tapgate: dashboard could not read budgets from %s: %s", database.shown(db), e)
        finally:
            if conn is not None:
                conn.close()

    def _stop(self) -> None:
        self._stopping.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        if self._live is not None:
            self._live.stop()
            self._live = None
        self.drawing.clear()
        self.tally = None
        if self._restore:
            ctx.options.update(**self._restore)
            self._restore = {}
