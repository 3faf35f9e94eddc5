"""The calls table's day partitions kept ahead of time, and retention (`tapgate_retention_days`):
done by the PostgreSQL writer at start and then every hour, never on the hot path. Retention takes a
call's spans with it: a trace whose call is gone answers nothing, and spans are most of the rows."""

from __future__ import annotations

import logging
from datetime import date, timedelta

from core.pg.schema import drop_partitions_before, ensure_partitions, partitions_before

log = logging.getLogger(__name__)

DAYS_AHEAD = 3  # tomorrow's partition exists long before midnight, even after a day-long outage
EVERY_SECONDS = 3600.0
CHUNK = 5000  # calls whose spans one transaction deletes: short locks, a bounded transaction


def upkeep(conn, today: date, retention_days: int = 0) -> tuple[list[str], list[str]]:
    """Partitions from yesterday to DAYS_AHEAD days ahead; with retention, the day partitions older
    than `retention_days` days dropped (and the default partition's rows that old deleted). Returns
    (created, dropped)."""
    with conn.transaction():
        created = ensure_partitions(conn, [today + timedelta(days=d) for d in range(-1, DAYS_AHEAD + 1)])
    dropped: list[str] = []
    if retention_days > 0:
        cutoff = today - timedelta(days=retention_days)
        for name in partitions_before(conn, cutoff):
            delete_spans_of(conn, name)
        delete_spans_of(conn, "requests_default", cutoff.isoformat())
        dropped = drop_partitions_before(conn, cutoff)
        with conn.transaction():
            conn.execute("DELETE FROM requests_default WHERE started_at < %s", (cutoff.isoformat(),))
        if dropped:
            log.info("tapgate: retention (%d days): dropped the calls of %s", retention_days, ", ".join(dropped))
    return created, dropped


def delete_spans_of(conn, table: str, before: str | None = None) -> int:
    """The spans of the calls in `table` (a day partition; the default one's started before `before`),
    by the spans' request_id index, a chunk of calls a transaction; how many spans were deleted."""
    where, last, deleted = (" AND started_at < %s" if before else ""), "", 0
    while True:
        with conn.transaction():
            # The table name is a partition's, listed by the database; never a caller's text.
            ids = [r[0] for r in conn.execute(f'SELECT id FROM "{table}" WHERE id > %s{where} ORDER BY id LIMIT {CHUNK}',
                                              (last, before) if before else (last,))]
            if not ids:
                return deleted
            deleted += conn.execute("DELETE FROM spans WHERE request_id = ANY(%s)", (ids,)).rowcount
        last = ids[-1]
