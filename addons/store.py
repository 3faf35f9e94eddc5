"""The Store addon: the `tapgate_db` option (and `tapgate_postgres`), opening core's Storage when
they change and closing it at shutdown. Every other addon journals rows through it (`add`, `add_all`)."""

from __future__ import annotations

import logging
from pathlib import Path

from mitmproxy import ctx, exceptions

from core.database import DEFAULT_DB, location
from core.pg.url import check, redact
from core.store import Storage

log = logging.getLogger(__name__)

OPENS = {"tapgate_db", "tapgate_postgres"}  # options that reopen the store


def store_location() -> str | Path:
    """The store the gateway reads (keys, prompts, spend, the dashboard): tapgate_postgres's URL when
    set, else the tapgate_db file."""
    postgres = ctx.options.tapgate_postgres.strip() if "tapgate_postgres" in ctx.options else ""
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
            "PostgreSQL URL (postgresql://user:password@host:5432/db) to record calls, spans and every other "
            "row in, and read keys, prompts and spend from, instead of the tapgate_db file. The journal stays beside tapgate_db; its password is "
            "never printed.",
        )
        loader.add_option(
            "tapgate_retention_days", int, 0,
            "With tapgate_postgres: drop the calls of days older than this many days (whole day "
            "partitions, at start and hourly), with their spans. 0 keeps every call.",
        )
        loader.add_option(
            "tapgate_journal_max_mb", int, 1024,
            "The most the journal may hold not yet committed (the store down or slow), in MB; past it "
            "calls are answered but not recorded, counted as dropped and logged. 0: no bound.",
        )

    def configure(self, updated: set[str]) -> None:
        if "tapgate_journal_max_mb" in updated:
            if ctx.options.tapgate_journal_max_mb < 0:
                raise exceptions.OptionsError("tapgate_journal_max_mb: must be 0 (no bound) or more")
            self.max_journal_bytes = ctx.options.tapgate_journal_max_mb * 2**20
        if "tapgate_retention_days" in updated:
            if ctx.options.tapgate_retention_days < 0:
                raise exceptions.OptionsError("tapgate_retention_days: must be 0 (keep every call) or more")
            if hasattr(self.writer, "retention_days") and not updated & OPENS:
                self.writer.retention_days = ctx.options.tapgate_retention_days
                self.writer.upkeep_soon()
        if updated & OPENS:
            path = Path(ctx.options.tapgate_db).expanduser()
            postgres = ctx.options.tapgate_postgres
            if postgres:
                try:
                    postgres = check(postgres)
                except ValueError as e:
                    raise exceptions.OptionsError(f"tapgate_postgres: {e}") from None
            try:
                self.open(path, postgres, ctx.options.tapgate_retention_days)
            except Exception as e:  # the store in use (if any) stays in use
                where = redact(postgres) if postgres else path
                raise exceptions.OptionsError(f"tapgate_db: cannot open {where}: {redact(str(e), postgres)}") from None

    def running(self) -> None:
        # Store is the last addon, so this is the last start-up hook: the proxy is ready.
        where = f"PostgreSQL at {redact(ctx.options.tapgate_postgres)}" if ctx.options.tapgate_postgres \
            else ctx.options.tapgate_db
        log.info("tapgate ready: recording LLM calls to %s", where)

    def done(self) -> None:
        self.close()
