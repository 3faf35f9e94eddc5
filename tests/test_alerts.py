"""Budget alerts: each channel gets the alert, failures are retried, a crossing is sent once also
across restarts, nothing queued is lost at shutdown, and firing never blocks the event loop."""

import json
import logging
import threading
import time
from contextlib import contextmanager
from datetime import UTC, datetime

import pytest
from mitmproxy.test import taddons
from receivers import HttpReceiver, SmtpReceiver

from addons.alerts import Alerts
from addons.auth import Auth
from addons.settings import Settings
from addons.spend import Spend
from addons.store import Store
from core import channels
from core.alerting import alert_row
from core.call import iso
from core.config import Alerts as Destinations
from core.config import Budget, EmailAlerts, TapgateConfig
from core.keys import KeyRing, hash_secret
from core.ledger import Crossing
from core.schema import open_db
from core.stages.identify import Identify

MONTH = "2026-11-01T00:00:00+00:00"
RESETS = datetime(2026, 12, 1, tzinfo=UTC)
BUDGET = Budget(unit="usd", period="month", cap=10, soft=[8])


def crossing(scope=("customer", "acme"), threshold=8.0, spent=8.0012, budget=BUDGET, start=MONTH):
    return Crossing(scope, budget, threshold, spent, start, RESETS)


@pytest.fixture(autouse=True)
def no_proxy_env(monkeypatch):
    """urllib honours HTTP(S)_PROXY; the receivers are on loopback and must be reached directly."""
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy", "ALL_PROXY", "all_proxy"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def http():
    with HttpReceiver() as receiver:
        yield receiver


@pytest.fixture
def smtp():
    with SmtpReceiver() as receiver:
        yield receiver


def everywhere(http, smtp=None) -> Destinations:
    email = EmailAlerts(smtp_host="127.0.0.1", smtp_port=smtp.port, to=["ops@example.com"]) if smtp else None
    return Destinations(slack_webhook=http.url("/slack"), webhook=http.url("/hook"), email=email)


@contextmanager
def running(db, destinations: Destinations, *more_addons, config=None, with_spend=False, max_attempts=5,
            ring=None):
    """An Alerts addon started on `db` as the gateway starts it (after Spend, when asked for). Leaving
    stops it (done joins the sender), so the rows read after the block are final: tests await a
    receiver, never poll."""
    settings = Settings()
    settings.config = (config or TapgateConfig()).model_copy(update={"alerts": destinations})
    store = Store()
    spend = Spend(settings, store) if with_spend else None
    alerts = Alerts(settings, spend, ring, retry_base=0.01, max_attempts=max_attempts)
    started = [*more_addons, *([spend] if spend else []), alerts]
    with taddons.context(store, *started) as tctx:
        tctx.configure(store, tapgate_db=str(db))
        for addon in started:
            addon.running()
        try:
            yield alerts
        finally:
            for addon in reversed(started):
                addon.done()
            store.done()
            # taddons leaves this master's log handler installed on a loop it closes; a second
            # context in the same test would log into the closed loop.
            tctx.master._legacy_log_events.uninstall()


def rows(db) -> dict[str, dict]:
    conn = open_db(db)
    try:
        return {r["id"]: r for r in conn["alerts"].rows}
    finally:
        conn.close()


def posts_until_sentinel(alerts, http) -> list:
    """What the sender posts before a fresh alert fired now: it works in order, so anything it was
    going to send from earlier (rows from before a restart, re-offered thresholds) comes first."""
    alerts.fire(crossing(("customer", "sentinel")), None)
    posts = []
    while (post := http.next()).body.get("scope_id") != "sentinel" and "sentinel" not in post.body.get("text", ""):
        posts.append(post)
    return posts


def test_the_row_names_the_threshold_and_period_and_says_what_happened():
    row = alert_row(crossing(), time.time())
    assert row["id"] == f"customer:acme:usd/month:8:{MONTH}"
    assert row["message"] == ("tapgate: customer acme reached $8.0012 of its $10 usd/month budget "
                              "(soft threshold $8); resets 2026-12-01T00:00:00+00:00")
    cap = alert_row(crossing(("global", ""), threshold=10.0, spent=10.2), time.time())
    assert cap["id"] == f"global::usd/month:10:{MONTH}"
    assert cap["message"].startswith("tapgate: the gateway reached $10.2 of its $10 usd/month budget (its cap);")
    lifetime = Budget(name="trial", unit="tokens", period="lifetime", soft=[1000])
    row = alert_row(Crossing(("key", "key_1"), lifetime, 1000.0, 1024, "lifetime", None), time.time())
    assert row["message"] == "tapgate: key key_1 reached 1024 tokens on its trial budget (soft threshold 1000 tokens); a lifetime budget"
    assert row["resets_at"] is None and row["id"] == "key:key_1:trial:1000:lifetime"


def test_an_alert_reaches_slack_the_webhook_and_email(tmp_path, http, smtp):
    db = tmp_path / "t.db"
    with running(db, everywhere(http, smtp)) as alerts:
        alerts.fire(crossing(), None)
        first, second = http.next(), http.next()
        mail = smtp.next()
    row = rows(db)[f"customer:acme:usd/month:8:{MONTH}"]
    assert row["sent_at"] is not None
    by_path = {first.path: first.body, second.path: second.body}
    assert by_path["/slack"] == {"text": row["message"]}
    assert by_path["/hook"] == {
        "id": row["id"], "scope": "customer", "scope_id": "acme", "budget": "usd/month", "unit": "usd",
        "threshold": 8.0, "cap": 10.0, "spent": 8.0012, "period_start": MONTH,
        "resets_at": "2026-12-01T00:00:00+00:00", "message": row["message"],
    }
    assert mail["Subject"] == "tapgate budget alert: customer acme reached $8 (usd/month)"
    assert mail["To"] == "ops@example.com" and mail["From"] == "tapgate@localhost"
    assert row["message"] in mail.get_content()
    assert (row["channels"], row["attempts"], row["last_error"]) == ("[]", 0, None)


def test_a_failing_receiver_is_retried_until_it_takes_the_alert_once(tmp_path, http):
    http.fail["/hook"] = [500, 503]
    db = tmp_path / "t.db"
    with running(db, everywhere(http)) as alerts:
        alerts.fire(crossing(), None)
        posts = [http.next() for _ in range(4)]
    row = rows(db)[f"customer:acme:usd/month:8:{MONTH}"]
    assert http.drain() == [] and row["sent_at"] is not None
    assert [p.status for p in posts if p.path == "/hook"] == [500, 503, 200]
    assert [p.status for p in posts if p.path == "/slack"] == [200]  # a channel that took it is not asked again
    assert row["attempts"] == 2 and "webhook: HTTP 503" in row["last_error"]


def test_it_gives_up_after_max_attempts_and_keeps_the_error(tmp_path, http, caplog):
    http.fail["/hook"] = [500] * 10
    db = tmp_path / "t.db"
    caplog.set_level(logging.INFO, logger="core.alerting")
    alert_id = f"customer:acme:usd/month:8:{MONTH}"
    with running(db, Destinations(webhook=http.url("/hook")), max_attempts=3) as alerts:
        alerts.fire(crossing(), None)
        for _ in range(3):
            assert http.next().status == 500
    assert http.drain() == []
    assert f"alert {alert_id} not delivered after 3 attempts, giving up" in caplog.text
    row = rows(db)[alert_id]
    assert (row["sent_at"], row["attempts"], row["channels"]) == (None, 3, '["webhook"]')
    assert row["last_error"] == "webhook: HTTP 500 Internal Server Error"
    http.fail["/hook"] = []
    with running(db, Destinations(webhook=http.url("/hook")), max_attempts=3) as alerts:
        assert posts_until_sentinel(alerts, http) == []  # a restart does not retry what was given up on


def test_the_same_crossing_is_sent_once_also_after_a_restart(tmp_path, http):
    db = tmp_path / "t.db"
    alert_id = f"customer:acme:usd/month:8:{MONTH}"
    with running(db, Destinations(slack_webhook=http.url("/slack"))) as alerts:
        alerts.fire(crossing(), None)
        alerts.fire(crossing(spent=9.0), None)
        assert "reached $8.0012" in http.next().body["text"]
    with running(db, Destinations(slack_webhook=http.url("/slack"))) as alerts:
        alerts.fire(crossing(spent=9.5), None)  # as if the ledger crossed it again after a restart
        alerts.fire(crossing(start="2026-12-01T00:00:00+00:00"), None)  # the next period is a new alert
        assert "reached $8.0012" in http.next().body["text"]  # the December one, 9.5 was not sent
    assert http.drain() == []
    alerts_rows = rows(db)
    assert len(alerts_rows) == 2 and alerts_rows[alert_id]["spent"] == 8.0012


def test_unsent_rows_are_delivered_after_a_restart_to_the_channels_still_owed(tmp_path, http):
    db = tmp_path / "t.db"
    row = {**alert_row(crossing(), time.time()), "channels": '["webhook"]', "attempts": 1}
    conn = open_db(db)
    conn["alerts"].insert(row)  # recorded by a gateway that stopped before the webhook took it
    conn.close()
    with running(db, everywhere(http)):
        post = http.next()
    sent = rows(db)[row["id"]]
    assert sent["sent_at"] is not None
    assert (post.path, post.body["id"]) == ("/hook", row["id"])
    assert http.drain() == []  # Slack had it already
    assert sent["channels"] == "[]"


def test_thresholds_passed_before_a_restart_are_offered_again_and_the_table_keeps_them_once(tmp_path, http):
    """A hard kill can store a call whose alert never reached the table; the restored ledger will not
    cross that threshold again, so at start every threshold already passed is offered once more."""
    db = tmp_path / "t.db"
    acme = Budget(name="acme", unit="usd", period="lifetime", soft=[1.0, 1.5, 2.0])
    config = TapgateConfig(budgets=[Budget(name="all", unit="usd", period="lifetime", soft=[1.2, 5])],
                           customers={"acme": {"budgets": [acme]}})
    conn = open_db(db)
    conn["requests"].insert_all({"id": f"r{i}", "started_at": iso(time.time()), "status": "ok", "cost_usd": 0.5,
                                 "customer_identifier": "acme"} for i in range(3))
    sent_before = Crossing(("customer", "acme"), acme, 1.0, 1.0, "lifetime", None)
    conn["alerts"].insert({**alert_row(sent_before, time.time()), "sent_at": iso(time.time())})
    conn.close()
    with running(db, Destinations(webhook=http.url("/hook")), config=config, with_spend=True):
        posts = [http.next(), http.next()]
    assert http.drain() == []
    assert sorted((p.body["scope"], p.body["threshold"], p.body["spent"]) for p in posts) == [
        ("customer", 1.5, 1.5), ("global", 1.2, 1.5)]
    with running(db, Destinations(webhook=http.url("/hook")), config=config, with_spend=True) as alerts:
        assert posts_until_sentinel(alerts, http) == []  # offered again, and ignored: the table has them
    assert len(rows(db)) == 4


def test_a_clean_shutdown_keeps_queued_alerts_for_the_next_start(tmp_path, http):
    db = tmp_path / "t.db"
    http.hold.set()
    later = crossing(threshold=10.0, spent=10.1)
    with running(db, Destinations(webhook=http.url("/hook"))) as alerts:
        alerts.fire(crossing(), None)
        assert http.arrived.wait(10)  # the sender is now inside a delivery
        alerts.fire(later, None)
        sender = alerts.sender
        stopping = threading.Thread(target=alerts.done)
        stopping.start()
        assert sender.stopping.wait(10)
        http.release.set()
        stopping.join(15)
        assert not sender.is_alive()
    assert [p.body["threshold"] for p in http.drain()] == [8.0]
    queued = rows(db)[f"customer:acme:usd/month:10:{MONTH}"]
    assert (queued["sent_at"], queued["channels"]) == (None, '["webhook"]')
    http.hold.clear()
    with running(db, Destinations(webhook=http.url("/hook"))):
        assert http.next().body["threshold"] == 10.0
    assert rows(db)[queued["id"]]["sent_at"] is not None


def test_firing_never_waits_on_a_receiver_that_hangs(tmp_path, http):
    """While the sender is stuck inside a delivery, fire() still returns at once for every alert: they
    are all queued, none delivered, until the receiver answers (no clock is read: a fire() that waited
    on the sender would still be running when the receiver is released)."""
    http.hold.set()
    db = tmp_path / "t.db"
    with running(db, everywhere(http)) as alerts:
        alerts.fire(crossing(), None)
        assert http.arrived.wait(10)  # the sender is blocked on the receiver
        firing = threading.Thread(target=lambda: [alerts.fire(crossing(threshold=float(i), spent=i + 0.5), None)
                                                  for i in range(200)])
        firing.start()
        firing.join(30)
        returned = not firing.is_alive()
        queued = alerts.inbox.qsize()
        http.release.set()
        firing.join()
    assert returned and queued == 200


def test_a_keys_own_destination_gets_its_alerts_beside_the_global_one(tmp_path, http):
    db = tmp_path / "t.db"
    own = Destinations(webhook=http.url("/key-hook"), slack_webhook=http.url("/slack"))  # same Slack as global
    conn = open_db(db)
    for key_id, alerts in (("key_1", own), ("key_2", Destinations())):
        conn["keys"].insert({"id": key_id, "name": key_id, "hash": hash_secret(key_id), "prefix": "tg-",
                             "created_at": "2026-11-01T00:00:00Z", "alerts": alerts.model_dump_json()})
    conn.close()
    ring = KeyRing()
    auth = Auth(Settings(), ring, Identify(Settings(), ring))
    with running(db, everywhere(http), auth, ring=ring) as alerts:  # the real Auth and its KeyRing
        alerts.fire(crossing(("key", "key_1")), None)
        alerts.fire(crossing(("customer", "acme")), None)
        alerts.fire(crossing(("key", "key_2")), None)  # a key with no destination of its own
        posts = [http.next() for _ in range(7)]
    assert http.drain() == []
    got = sorted((p.path, p.body.get("scope_id") or p.body["text"].split()[2]) for p in posts)
    assert got == [("/hook", "acme"), ("/hook", "key_1"), ("/hook", "key_2"), ("/key-hook", "key_1"),
                   ("/slack", "acme"), ("/slack", "key_1"), ("/slack", "key_2")]
    assert json.loads(rows(db)[f"key:key_1:usd/month:8:{MONTH}"]["channels"]) == []


def test_email_logs_in_with_the_password_from_the_environment_and_never_records_it(tmp_path, monkeypatch):
    monkeypatch.setenv("TAPGATE_SMTP_PASSWORD", "s3cret-pw")
    db = tmp_path / "t.db"
    with SmtpReceiver(password="s3cret-pw") as smtp:
        email = EmailAlerts(smtp_host="127.0.0.1", smtp_port=smtp.port, to=["a@example.com", "b@example.com"],
                            username="tapgate", password_env="TAPGATE_SMTP_PASSWORD")
        with running(db, Destinations(email=email)) as alerts:
            alerts.fire(crossing(), None)
            assert smtp.next()["To"] == "a@example.com, b@example.com"
        assert smtp.logins.get_nowait() == ("tapgate", "s3cret-pw")
        monkeypatch.setenv("TAPGATE_SMTP_PASSWORD", "wrong-pw")
        with running(db, Destinations(email=email), max_attempts=1) as alerts:
            alerts.fire(crossing(threshold=10.0), None)
            assert smtp.logins.get(timeout=10) == ("tapgate", "wrong-pw")
    row = rows(db)[f"customer:acme:usd/month:10:{MONTH}"]
    assert row["attempts"] == 1 and row["sent_at"] is None
    assert row["last_error"].startswith("email: SMTP: SMTPAuthenticationError") and "wrong-pw" not in row["last_error"]
    monkeypatch.delenv("TAPGATE_SMTP_PASSWORD")
    with pytest.raises(channels.DeliveryError, match="'TAPGATE_SMTP_PASSWORD' is not set"):
        channels.send_email(email, alert_row(crossing(), time.time()), "subject")
