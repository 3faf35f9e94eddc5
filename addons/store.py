"""The Store addon: the `tapgate_db` option, opening core's Storage when it changes and closing it
at shutdown. Every other addon journals rows through it (`add`, `add_all`)."""

from __future__ import annotations

import logging
from pathlib import Path

from mitmproxy import ctx, exceptions

from core.database import DEFAULT_DB, is_postgres, location, shown
from core.store import Storage

log = logging.getLogger(__name__)


def store_location() -> str | Path:
    """The store the gateway reads (keys, prompts, spend, the dashboard): tapgate_postgres's URL when
    set, else the tapgate_db file."""
    postgres = ctx.options.tapgate_postgres if "tapgate_postgres" in ctx.options else ""
    return location(ctx.options.tapgate_db, postgres)


class Store(Storage):
    """At start, what a dead gateway left in the journal is committed before any addon reads the
    store (Store.configure runs at load, every reader in `running`). `done()` commits the rest."""

    def load(self, loader) -> None:
        loader.add_option(
            "tapgate_db", str, DEFAULT_DB, "SQLite file that tapgate records requests and spans in."
        )
        loader.add_option(
            "tapgate_postgres", str, "",
            "A postgresql:// URL: the store is this PostgreSQL database instead of the SQLite file. Every "
            "gateway process naming it reads keys, prompts, budgets and spend from it; `tapgate --db` reads "
            "it with the same commands.",
        )

    def configure(self, updated: set[str]) -> None:
        if "tapgate_postgres" in updated and ctx.options.tapgate_postgres:
            if not is_postgres(ctx.options.tapgate_postgres):
                raise exceptions.OptionsError(f"tapgate_postgres must be a postgresql:// URL, got "
                                              f"{shown(ctx.options.tapgate_postgres)!r}")
        if "tapgate_db" in updated:
            path = Path(ctx.options.tapgate_db).expanduser()
            try:
                self.open(path)
            except Exception as e:  # the store in use (if any) stays in use
                raise exceptions.OptionsError(f"tapgate_db: cannot open {path}: {e}") from None

    def running(self) -> None:
        # Store is the last addon, so this is the last start-up hook: the proxy is ready.
        log.info("tapgate ready: recording LLM calls to %s", ctx.options.tapgate_db)

    def done(self) -> None:
        self.close()
