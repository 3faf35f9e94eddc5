"""The calls table's day partitions kept ahead of time, and retention (`tapgate_retention_days`):
done by the PostgreSQL writer at start and then every hour, never on the hot path."""

from __future__ import annotations

import logging
from datetime import date, timedelta

from core.pg.schema import drop_partitions_before, ensure_partitions

log = logging.getLogger(__name__)

DAYS_AHEAD = 3  # tomorrow's partition exists long before midnight, even after a day-long outage
EVERY_SECONDS = 3600.0


def upkeep(conn, today: date, retention_days: int = 0) -> tuple[list[str], list[str]]:
    """Partitions from yesterday to DAYS_AHEAD days ahead; with retention, the day partitions older
    than `retention_days` days dropped (and the default partition's rows that old deleted). Returns
    (created, dropped)."""
    with conn.transaction():
        created = ensure_partitions(conn, [today + timedelta(days=d) for d in range(-1, DAYS_AHEAD + 1)])
    dropped: list[str] = []
    if retention_days > 0:
        cutoff = today - timedelta(days=retention_days)
        dropped = drop_partitions_before(conn, cutoff)
        with conn.transaction():
            conn.execute("DELETE FROM requests_default WHERE started_at < %s", (cutoff.isoformat(),))
        if dropped:
            log.info("tapgate: retention (%d days): dropped the calls of %s", retention_days, ", ".join(dropped))
    return created, dropped
