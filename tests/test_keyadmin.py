"""`tapgate keys`: budget specs, and create, list, revoke and rotate on a real store file, where only
the secret's hash may ever be written."""

import json
from contextlib import closing
from datetime import UTC, datetime, timedelta

import pytest
from support import ROOT

from cli import keyadmin
from cli.keyadmin import KeyAdminError, parse_budget, parse_expiry
from cli.main import main, parser
from core.config import Budget
from core.keys import GatewayKey, hash_secret
from core.schema import open_db

NOW = datetime(2025, 6, 1, 12, 0, tzinfo=UTC)


@pytest.mark.parametrize("spec, expected", [
    ("100usd/month@50,80", Budget(unit="usd", period="month", cap=100, soft=[50, 80])),
    ("10requests/day", Budget(unit="requests", period="day", cap=10)),
    ("2000000tokens/lifetime", Budget(unit="tokens", period="lifetime", cap=2_000_000)),
    ("usd/month@5,8", Budget(unit="usd", period="month", soft=[5, 8])),
    ("0.5USD/Week", Budget(unit="usd", period="week", cap=0.5)),
    ("2e6tokens/month@1.5e6", Budget(unit="tokens", period="month", cap=2e6, soft=[1.5e6])),
    ("0.00406usd/day", Budget(unit="usd", period="day", cap=0.00406)),
])
def test_budget_specs(spec, expected):
    budget = parse_budget(spec)
    assert budget == expected
    assert parse_budget(keyadmin.budget_spec(budget)) == budget  # lists show what was typed


@pytest.mark.parametrize("spec, message", [
    ("10req/day", "unit 'req' is not one of usd, tokens, requests"),
    ("10usd/fortnight", "period 'fortnight' is not one of day, week, month, year, lifetime"),
    ("0usd/day", "cap must be greater than 0"),
    ("10usd/day@20", "soft thresholds must be below the cap (10)"),
    ("10usd/day@0", "soft thresholds must be greater than 0"),
    ("10usd/day@x", "soft thresholds after @ must be numbers"),
    ("usd/day", "give a cap"),
    ("100 dollars a month", "expected <cap><unit>/<period>"),
])
def test_bad_budget_specs_say_what_is_wrong(spec, message):
    with pytest.raises(KeyAdminError, match=message.replace("(", r"\(").replace(")", r"\)")) as e:
        parse_budget(spec)
    assert repr(spec) in str(e.value)


def test_expiry_forms():
    assert parse_expiry("30d", NOW) == "2025-07-01T12:00:00+00:00"
    assert parse_expiry("12h", NOW) == "2025-06-02T00:00:00+00:00"
    assert parse_expiry("2025-12-31", NOW) == "2025-12-31T00:00:00+00:00"
    assert parse_expiry("2025-06-02T01:00:00+02:00", NOW) == "2025-06-01T23:00:00+00:00"
    for bad, message in (("2025-05-01", "already past"), ("soon", "expected 30d")):
        with pytest.raises(KeyAdminError, match=message):
            parse_expiry(bad, NOW)


@pytest.fixture
def db(tmp_path):
    database = open_db(tmp_path / "t.db")
    yield database
    database.close()


def test_create_stores_the_hash_and_a_prefix_never_the_secret(tmp_path, db):
    key, secret = keyadmin.create_key(db, "billing", [parse_budget("100usd/month@50,80")], rpm=60, tpm=None,
                                      models=["gpt-4o*"], expires="30d", metadata={"team": "search"}, now=NOW)
    assert key.id.startswith("key_") and len(key.id) == 12 and int(key.id[4:], 16) >= 0
    assert secret.startswith("tg-") and len(secret) > 40
    row = db["keys"].get(key.id)
    assert row["hash"] == hash_secret(secret) and row["prefix"] == secret[:8]
    assert GatewayKey.from_row(row) == key
    assert (key.models, key.rate_limit.rpm, key.metadata, key.expires_at) == (
        ("gpt-4o*",), 60, {"team": "search"}, "2025-07-01T12:00:00+00:00")
    db.close()
    stored = b"".join(p.read_bytes() for p in tmp_path.iterdir())
    assert secret.encode() not in stored and secret[8:].encode() not in stored
    assert hash_secret(secret).encode() in stored


def test_two_budgets_of_one_unit_and_period_are_refused(db):
    with pytest.raises(KeyAdminError, match="two budgets in usd per day"):
        keyadmin.create_key(db, "x", [parse_budget("1usd/day"), parse_budget("2usd/day")])


def test_revoke_and_rotate(db):
    key, secret = keyadmin.create_key(db, "app", [parse_budget("10requests/day")])
    listed = keyadmin.revoke_key(db, key.id, now=NOW)
    assert (listed["status"], listed["revoked_at"]) == ("revoked", "2025-06-01T12:00:00+00:00")
    assert keyadmin.revoke_key(db, key.id)["revoked_at"] == listed["revoked_at"]  # the first time stays
    with pytest.raises(KeyAdminError, match="was revoked"):
        keyadmin.rotate_key(db, key.id)

    other, old = keyadmin.create_key(db, "other", [parse_budget("10requests/day")], models=["gpt-*"])
    rotated, new = keyadmin.rotate_key(db, other.id)
    assert new != old and rotated["id"] == other.id and rotated["prefix"] == new[:8]
    row = db["keys"].get(other.id)
    assert row["hash"] == hash_secret(new) and row["rotated_at"]
    assert GatewayKey.from_row(row).budgets == other.budgets and GatewayKey.from_row(row).models == ("gpt-*",)
    with pytest.raises(KeyAdminError, match="no key 'key_00000000'"):
        keyadmin.rotate_key(db, "key_00000000")


def test_update_replaces_what_is_given_and_keeps_the_rest(db):
    key, secret = keyadmin.create_key(db, "app", [parse_budget("10requests/day")], rpm=60, tpm=1000,
                                      models=["gpt-*"], metadata={"team": "a"})
    listed = keyadmin.update_key(db, key.id, budgets=[parse_budget("5usd/month@4"), parse_budget("2requests/day")],
                                 tpm=0, alerts={"slack_webhook": "https://hooks.example/T/B/x"})
    assert (listed["budgets"], listed["rate_limit"], listed["models"], listed["metadata"]) == (
        ["5usd/month@4", "2requests/day"], {"rpm": 60}, ["gpt-*"], {"team": "a"})
    assert listed["alerts"] == ["slack_webhook"]  # the kind, never the URL
    after = GatewayKey.from_row(db["keys"].get(key.id))
    assert after.alerts.slack_webhook == "https://hooks.example/T/B/x"
    assert keyadmin.describe(db["keys"].get(key.id)) == listed
    assert db["keys"].get(key.id)["hash"] == hash_secret(secret)  # the same secret

    listed = keyadmin.update_key(db, key.id, budgets=[], models=[], metadata={}, expires="7d", now=NOW,
                                 downgrade=[keyadmin.parse_downgrade("0.8:gpt-4o=gpt-4o-mini")],
                                 alerts={"slack_webhook": "none", "email_to": ["ops@example.com"],
                                         "smtp_host": "smtp.example.com"})
    assert (listed["budgets"], listed["models"], listed["metadata"], listed["expires_at"]) == (
        [], [], {}, "2025-06-08T12:00:00+00:00")
    assert listed["alerts"] == ["email"] and listed["downgrade"] == ["0.8:gpt-4o=gpt-4o-mini"]
    assert keyadmin.update_key(db, key.id, expires=None, alerts={"email_to": ["none"]})["expires_at"] is None
    assert GatewayKey.from_row(db["keys"].get(key.id)).alerts == keyadmin.parse_alerts({})


@pytest.mark.parametrize("changes, message", [
    ({"budgets": [parse_budget("1usd/day"), parse_budget("2usd/day")]}, "two budgets in usd per day"),
    ({"rpm": -1}, "rpm must be greater than 0"),
    ({"alerts": {"email_to": ["ops@example.com"]}}, "email alerts need --smtp-host"),
    ({"alerts": {"smtp_host": "smtp.example.com"}}, "email alerts need --email-to"),
    ({"expires": "2020-01-01"}, "already past"),
])
def test_update_says_what_is_wrong(db, changes, message):
    key, _ = keyadmin.create_key(db, "app", [])
    with pytest.raises(KeyAdminError, match=message):
        keyadmin.update_key(db, key.id, **changes)
    with pytest.raises(KeyAdminError, match="no key 'key_00000000'"):
        keyadmin.update_key(db, "key_00000000", rpm=1)
    keyadmin.revoke_key(db, key.id)
    with pytest.raises(KeyAdminError, match="was revoked"):
        keyadmin.update_key(db, key.id, rpm=1)


def test_list_shows_status_and_never_a_hash(db):
    live, _ = keyadmin.create_key(db, "live", [])
    gone, _ = keyadmin.create_key(db, "gone", [])
    old, _ = keyadmin.create_key(db, "old", [], expires="1h", now=datetime.now(UTC) - timedelta(hours=2))
    keyadmin.revoke_key(db, gone.id)
    listed = {k["id"]: k for k in keyadmin.list_keys(db)}
    assert {i: k["status"] for i, k in listed.items()} == {live.id: "active", gone.id: "revoked", old.id: "expired"}
    assert all("hash" not in k for k in listed.values())


def test_the_commands_print_the_secret_once_and_list_without_it(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", "200")  # rich lays tables out for this width when stdout is not a terminal
    db = str(tmp_path / "t.db")
    assert main(["keys", "create", "--db", db, "--name", "app", "--budget", "5usd/day", "--rpm", "10",
                 "--models", "gpt-4o", "--models", "claude-*", "--expires", "7d", "--meta", "team=a"]) == 0
    out = capsys.readouterr().out
    key_id = out.split()[2]
    secret = next(w for w in out.split() if w.startswith("tg-"))
    assert out.count(secret) == 3  # the line to copy, the proxy URL and the header
    assert main(["keys", "list", "--db", db, "--json"]) == 0
    (listed,) = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert (listed["id"], listed["budgets"], listed["models"], listed["rate_limit"], listed["metadata"]) == (
        key_id, ["5usd/day"], ["gpt-4o", "claude-*"], {"rpm": 10}, {"team": "a"})
    assert secret not in json.dumps(listed) and secret[:8] == listed["prefix"]

    assert main(["keys", "rotate", "--db", db, key_id, "--json"]) == 0
    rotated = json.loads(capsys.readouterr().out)
    assert rotated["id"] == key_id and rotated["secret"] != secret
    assert main(["keys", "revoke", "--db", db, key_id]) == 0
    assert f"revoked key {key_id}" in capsys.readouterr().out
    assert main(["keys", "list", "--db", db]) == 0
    assert "revoked" in capsys.readouterr().out

    assert main(["keys", "update", "--db", db, key_id, "--budget", "none"]) == 1  # revoked above
    assert "was revoked" in capsys.readouterr().err
    assert main(["keys", "create", "--db", db, "--name", "x", "--budget", "10req/day"]) == 1
    assert "unit 'req' is not one of usd, tokens, requests" in capsys.readouterr().err


def test_update_flags(tmp_path, capsys):
    db = str(tmp_path / "t.db")
    assert main(["keys", "create", "--db", db, "--name", "app", "--json", "--meta", "team=a", "--expires", "7d",
                 "--webhook", "http://127.0.0.1:9/hook"]) == 0
    key_id = json.loads(capsys.readouterr().out)["id"]
    assert main(["keys", "update", "--db", db, key_id, "--name", "app2", "--budget", "3usd/day", "--budget",
                 "9requests/day", "--models", "o3", "--meta", "none", "--expires", "never", "--tpm", "500",
                 "--email-to", "a@example.com", "--email-to", "b@example.com", "--smtp-host", "smtp.example.com",
                 "--smtp-port", "587", "--smtp-starttls", "--webhook", "none"]) == 0
    assert capsys.readouterr().out.startswith(f"updated key {key_id} (app2)")
    with closing(open_db(db)) as store:
        key = GatewayKey.from_row(store["keys"].get(key_id))
    assert [keyadmin.budget_spec(b) for b in key.budgets] == ["3usd/day", "9requests/day"]
    assert (key.models, key.metadata, key.expires_at, key.rate_limit.tpm, key.alerts.webhook) == (
        ("o3",), {}, None, 500, None)
    assert (key.alerts.email.to, key.alerts.email.smtp_port, key.alerts.email.starttls) == (
        ["a@example.com", "b@example.com"], 587, True)


def test_every_keys_action_and_flag_is_explained_in_the_docs():
    readme = (ROOT / "docs" / "keys-budgets-alerts.md").read_text()
    keys = next(a for a in parser()._actions if a.dest == "command").choices["keys"]
    actions = next(a for a in keys._actions if a.dest == "action").choices
    assert set(actions) == {"create", "list", "update", "revoke", "rotate"}
    for name, action in actions.items():
        assert f"tapgate keys {name}" in readme
        for flag in (f for a in action._actions for f in a.option_strings if f not in ("-h", "--help")):
            assert f"`{flag}" in readme.split("## Gateway keys", 1)[1], f"keys {name} {flag} not in the keys page"
