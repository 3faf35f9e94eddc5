"""Alerting: a budget threshold crossed (or a cap that starts refusing calls) becomes a Slack post, a
webhook post and an email, sent by one thread with retries, once per threshold per period, also
across restarts (issue 4).

The `alerts` table is the outbox. Its primary key (scope:scope_id:budget:threshold:period_start)
makes a second crossing of the same threshold in the same period a no-op, in this process or after
a restart; `channels` lists where the alert has still to go and `sent_at` is set when none is left.
A crash between recording an alert and delivering it loses nothing: unsent rows go out at the next
start. A crash in the instant between a receiver taking an alert and the row saying so can send
that one channel's alert again: delivery is at least once, never zero.
"""

from __future__ import annotations

import heapq
import itertools
import json
import logging
import queue
import random
import sqlite3
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlite_utils import Database

from core import config
from core.call import iso
from core.channels import TIMEOUT_SECONDS, DeliveryError, send_email, send_slack, send_webhook
from core.ledger import LIFETIME, Crossing, Ledger, Scope, fmt, period_bounds, who
from core.schema import open_db
from providers.safe_json import loads

if TYPE_CHECKING:
    from core.admission import Admission
    from core.config import Configured

log = logging.getLogger(__name__)

RETRY_BASE_SECONDS = 1.0  # the first retry comes after 0.5-1 s, then twice as long each time
RETRY_MAX_SECONDS = 600.0
MAX_ATTEMPTS = 12  # 15 to 27 minutes of retries; the row keeps last_error after that
CHANNELS = ("slack", "webhook", "email")
KEY_CHANNEL = "key:"  # "key:slack" is the key's own Slack webhook, beside the global "slack"
SENDERS = {
    "slack": send_slack,
    "webhook": send_webhook,
    "email": lambda email, alert: send_email(email, alert, subject(alert)),
}


def alert_row(crossing: Crossing, now: float) -> dict[str, Any]:
    """The `alerts` row of a crossing, minus its channels (the sender decides those, off the loop)."""
    scope, scope_id = crossing.scope
    budget, threshold, unit = crossing.budget, crossing.threshold, crossing.budget.unit
    kind = "its cap" if threshold == budget.cap else f"soft threshold {fmt(threshold, unit)}"
    of = f"of its {fmt(budget.cap, unit)}" if budget.cap else "on its"
    resets = f"resets {crossing.resets_at.isoformat()}" if crossing.resets_at else "a lifetime budget"
    if crossing.refusing is not None:
        message = (f"tapgate: {who(scope, scope_id)} is refusing calls: {fmt(crossing.spent, unit)} {of} "
                   f"{budget.label} budget is spent or reserved, and a call needing up to "
                   f"{fmt(crossing.refusing, unit)} did not fit; {resets}")
    else:
        message = (f"tapgate: {who(scope, scope_id)} reached {fmt(crossing.spent, unit)} {of} "
                   f"{budget.label} budget ({kind}); {resets}")
    return {
        "id": f"{scope}:{scope_id}:{budget.label}:{threshold:.15g}:{crossing.period_start}",
        "created_at": iso(now),
        "scope": scope,
        "scope_id": scope_id,
        "budget": budget.label,
        "unit": unit,
        "threshold": threshold,
        "cap": budget.cap,
        "spent": crossing.spent,
        "period_start": crossing.period_start,
        "resets_at": crossing.resets_at.isoformat() if crossing.resets_at else None,
        "message": message,
        "channels": "[]",
        "sent_at": None,
        "attempts": 0,
        "last_error": None,
    }


def subject(alert: dict[str, Any]) -> str:
    if alert["scope"] == "policy":
        return f"tapgate policy alert: {alert['budget']} blocked a call"
    if " is refusing calls: " in alert["message"]:
        return f"tapgate budget alert: {who(alert['scope'], alert['scope_id'])} is refusing calls ({alert['budget']})"
    return (f"tapgate budget alert: {who(alert['scope'], alert['scope_id'])} reached "
            f"{fmt(alert['threshold'], alert['unit'])} ({alert['budget']})")


def target(alerts: config.Alerts | None, channel: str) -> str | config.EmailAlerts | None:
    if alerts is None:
        return None
    return {"slack": alerts.slack_webhook, "webhook": alerts.webhook, "email": alerts.email}[channel]


class Alerting:
    """Takes Admission's crossings on the event loop and hands them to the Sender thread."""

    def __init__(self, settings: Configured, spend: Admission | None = None, retry_base: float = RETRY_BASE_SECONDS,
                 max_attempts: int = MAX_ATTEMPTS) -> None:
        self.settings = settings
        self.spend = spend
        self.retry_base = retry_base
        self.max_attempts = max_attempts
        # Outlives a Sender: what is fired before `running` or between two senders waits here.
        self.inbox: queue.SimpleQueue[dict[str, Any] | None] = queue.SimpleQueue()
        self.sender: Sender | None = None
        self.keyring: Any = None  # the KeyRing (per-key destinations), once started with one
        # With tapgate_postgres: a callable(row) journalling each alert row as it is recorded or updated,
        # so PostgreSQL holds the alerts too (the outbox itself stays this file's table).
        self.mirror: Any = None

    def start(self, db: Path, keyring: Any = None) -> None:
        """Send from now on, through the store at `db`; per-key destinations come from `keyring`, which
        swaps its dict whole on reload, so reading it from the sender's thread is safe."""
        self.keyring = keyring
        self.sender = Sender(db, self)
        self.sender.start()
        if self.spend is not None:  # after Spend.running: its ledger holds the restored spend
            now = time.time()
            for crossing in self.passed(self.spend.ledger):
                self.inbox.put(alert_row(crossing, now))

    def fire(self, crossing: Crossing, call: Any) -> None:
        """A Spend.on_crossing listener, on the event loop: build a plain row and queue it. Never blocks."""
        self.inbox.put(alert_row(crossing, time.time()))

    def policy_blocked(self, row: dict[str, Any], call: Any) -> None:
        """A Recorder listener: a call a policy with `alert: true` blocked becomes an alert (policy name, side,
        who, counts per type; never the matched text). Never blocks."""
        block = call.guard.block if call.guard is not None else None
        if block is None or not block.alert:
            return
        self.inbox.put({
            "id": f"policy:{block.policy}:{call.id}", "created_at": iso(time.time()), "scope": "policy",
            "scope_id": block.policy, "budget": block.policy, "unit": None, "threshold": None, "cap": None,
            "spent": None, "period_start": row["started_at"], "resets_at": None,
            "message": (f"tapgate: policy {block.policy} blocked a {row['mode']} call's {block.on} (key "
                        f"{row['key_id'] or 'none'}, customer {row['customer_identifier'] or 'none'}, model "
                        f"{row['model']}, request {row['id']}): {block.message}"),
            "channels": "[]", "sent_at": None, "attempts": 0, "last_error": None,
        })

    def stop(self) -> None:
        if self.sender is not None:
            self.sender.stop()
            self.sender = None

    def passed(self, ledger: Ledger) -> list[Crossing]:
        """Every threshold the restored spend has already reached in its current period.

        The ledger restored at start crosses nothing already passed, so an alert whose row never
        reached the table (a hard kill in the instant after its call was stored) would be lost;
        re-offering them all costs nothing, as the table ignores the ones it has. Budgets a request
        carried (customer_params) are not known until their customer calls again."""
        now, crossings = ledger.now(), []
        for scope in sorted({counter[0] for counter in ledger.spent}):
            for budget in self._budgets(scope):
                spent, _, resets = ledger.standing(scope, budget, now)
                start, _ = period_bounds(budget.period, now)
                for threshold in sorted({*budget.soft, *([budget.cap] if budget.cap else [])}):
                    if threshold <= spent:
                        label = start.isoformat() if start else LIFETIME
                        crossings.append(Crossing(scope, budget, threshold, spent, label, resets))
        return crossings

    def _budgets(self, scope: Scope) -> list[config.Budget]:
        cfg = self.settings.config
        if scope[0] == "global":
            return list(cfg.budgets)
        if scope[0] == "customer":
            return list(cfg.customers.get(scope[1], cfg.customer_default).budgets)
        key = self.keyring.by_id(scope[1]) if self.keyring is not None else None
        return list(key.budgets) if key is not None else []

    # -- where an alert goes; asked on the sender's thread ----------------------------------------

    def channels(self, scope: str, scope_id: str) -> list[str]:
        """The global destinations, plus a key's own for its budgets (unless it is the same one)."""
        everyone = self.settings.config.alerts
        names = [c for c in CHANNELS if target(everyone, c)]
        if scope == "key" and (own := self._key_alerts(scope_id)) is not None:
            names += [KEY_CHANNEL + c for c in CHANNELS if target(own, c) and target(own, c) != target(everyone, c)]
        return names

    def destination(self, channel: str, scope_id: str) -> str | config.EmailAlerts | None:
        """Read when sending, not when recording: a URL fixed in the config applies to retries."""
        if channel.startswith(KEY_CHANNEL):
            return target(self._key_alerts(scope_id), channel.removeprefix(KEY_CHANNEL))
        return target(self.settings.config.alerts, channel) if channel in CHANNELS else None

    def _key_alerts(self, key_id: str) -> config.Alerts | None:
        key = self.keyring.by_id(key_id) if self.keyring is not None else None
        return key.alerts if key is not None else None


class Sender(threading.Thread):
    """Owns its own connection to the store: records each alert once (INSERT OR IGNORE on the id),
    delivers it per channel, and retries failures with exponential backoff and jitter."""

    def __init__(self, path: Path, alerts: Alerting) -> None:
        super().__init__(name="tapgate-alerts", daemon=True)
        self.path = path
        self.alerts = alerts
        self.inbox = alerts.inbox
        self.stopping = threading.Event()
        # (monotonic due time, tiebreak, alert id, or the row itself when recording it failed)
        self._due: list[tuple[float, int, str | dict[str, Any]]] = []
        self._seq = itertools.count()

    def stop(self) -> None:
        """Prompt: an in-flight delivery is the most it waits for (TIMEOUT_SECONDS)."""
        self.stopping.set()
        self.inbox.put(None)
        self.join(TIMEOUT_SECONDS + 2)
        if self.is_alive():
            log.warning("tapgate: alert sender still waiting on a channel; unsent alerts go out at the next start")

    def run(self) -> None:
        db = open_db(self.path)
        try:
            unsent = db.execute(
                "SELECT id FROM alerts WHERE sent_at IS NULL AND channels != '[]' AND attempts < ? "
                "ORDER BY created_at", [self.alerts.max_attempts]).fetchall()
            for (alert_id,) in unsent:  # recorded before a restart, not (all) delivered
                self._schedule(alert_id, 0)
            while not self.stopping.is_set():
                wait = max(0.0, self._due[0][0] - time.monotonic()) if self._due else None
                try:
                    item = self.inbox.get(timeout=wait)
                except queue.Empty:
                    item = {}
                if item is None:
                    break
                if item:
                    self._record(db, item)
                self._run_due(db)
        finally:
            self._record_queued(db)
            db.close()

    def _schedule(self, item: str | dict[str, Any], delay: float) -> None:
        heapq.heappush(self._due, (time.monotonic() + delay, next(self._seq), item))

    def _backoff(self, attempts: int) -> float:
        delay = min(RETRY_MAX_SECONDS, self.alerts.retry_base * 2 ** (attempts - 1))
        return delay * random.uniform(0.5, 1.0)  # jitter: many gateways do not retry in step

    def _run_due(self, db: Database) -> None:
        while self._due and self._due[0][0] <= time.monotonic() and not self.stopping.is_set():
            _, _, item = heapq.heappop(self._due)
            if isinstance(item, dict):
                self._record(db, item)
                continue
            try:
                self._deliver(db, item)
            except sqlite3.Error as e:  # the store was busy past its timeout: the row is still there
                log.warning("tapgate: could not read alert %s (%s); trying again", item, e)
                self._schedule(item, self.alerts.retry_base)

    def _record(self, db: Database, row: dict[str, Any]) -> None:
        """Insert the alert unless its id is already there; only a new row is delivered."""
        channels = self.alerts.channels(row["scope"], row["scope_id"])
        row = {**row, "channels": json.dumps(channels),
               "last_error": None if channels else "no alert channel configured"}
        try:
            with db.conn:
                inserted = db.conn.execute(
                    f"INSERT OR IGNORE INTO alerts ({', '.join(row)}) VALUES ({', '.join('?' * len(row))})",
                    list(row.values())).rowcount
        except sqlite3.Error as e:
            log.warning("tapgate: could not record alert %s (%s); trying again", row["id"], e)
            self._schedule(row, self.alerts.retry_base)
            return
        if not inserted:
            return  # this threshold already alerted in this period
        self._mirror(db, row["id"])
        log.info("%s", row["message"])
        if channels:
            self._schedule(row["id"], 0)

    def _record_queued(self, db: Database) -> None:
        """At shutdown: alerts still queued go into the table, to be delivered at the next start."""
        while True:
            try:
                item = self.inbox.get_nowait()
            except queue.Empty:
                return
            if item:
                self._record(db, item)

    def _deliver(self, db: Database, alert_id: str) -> None:
        cursor = db.execute("SELECT * FROM alerts WHERE id = ?", [alert_id])
        row = cursor.fetchone()
        if row is None:
            return
        alert = dict(zip([c[0] for c in cursor.description], row, strict=True))
        if alert["sent_at"]:
            return
        remaining: list[str] = loads(alert["channels"] or "[]")
        errors = []
        for channel in list(remaining):
            if self.stopping.is_set():
                return  # the rest go out at the next start
            destination = self.alerts.destination(channel, alert["scope_id"])
            if destination is not None:
                try:
                    SENDERS[channel.removeprefix(KEY_CHANNEL)](destination, alert)
                except DeliveryError as e:
                    errors.append(f"{channel}: {e}")
                    continue
                except Exception as e:  # a bug must not stop the thread; the message may hold a URL
                    errors.append(f"{channel}: unexpected {type(e).__name__}")
                    continue
                log.info("tapgate: alert %s sent to %s", alert_id, channel)
            else:
                log.warning("tapgate: alert %s: %s is no longer configured; not sent there", alert_id, channel)
            remaining.remove(channel)
            # At once, per channel: a restart must not send again what one channel already took.
            self._update(db, alert_id, channels=json.dumps(remaining), sent_at=None if remaining else iso(time.time()))
        if errors:
            attempts = alert["attempts"] + 1
            self._update(db, alert_id, attempts=attempts, last_error="; ".join(errors))
            if attempts >= self.alerts.max_attempts:
                log.warning("tapgate: alert %s not delivered after %d attempts, giving up: %s",
                            alert_id, attempts, "; ".join(errors))
            else:
                self._schedule(alert_id, self._backoff(attempts))

    def _update(self, db: Database, alert_id: str, **values: Any) -> None:
        try:
            with db.conn:
                db.conn.execute(f"UPDATE alerts SET {', '.join(f'{k} = ?' for k in values)} WHERE id = ?",
                                [*values.values(), alert_id])
        except sqlite3.Error as e:
            log.warning("tapgate: could not update alert %s: %s", alert_id, e)
            return
        self._mirror(db, alert_id)

    def _mirror(self, db: Database, alert_id: str) -> None:
        if self.alerts.mirror is None:
            return
        cursor = db.execute("SELECT * FROM alerts WHERE id = ?", [alert_id])
        if (row := cursor.fetchone()) is not None:
            self.alerts.mirror(dict(zip([c[0] for c in cursor.description], row, strict=True)))
