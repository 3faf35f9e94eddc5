"""GatewayKey and the KeyRing: lookups by hash, and a ring that follows the store file while another
process (the CLI) writes it."""

from datetime import UTC, datetime, timedelta

import pytest
from support import until

from cli import keyadmin
from cli.keyadmin import parse_budget
from core.keys import GatewayKey, KeyRing
from core.schema import open_db


def test_problems_and_model_globs():
    key = GatewayKey(id="key_1", name="a", prefix="tg-abcde", created_at="2025-01-01T00:00:00+00:00",
                     expires_at="2025-06-01T00:00:00+00:00", models=("gpt-4o*", "claude-?-haiku"))
    assert key.problem(datetime(2025, 5, 31, 23, 59, 59, 999999, UTC)) is None
    assert "expired" in key.problem(datetime(2025, 6, 1, tzinfo=UTC))
    assert key.allows("gpt-4o-mini") and key.allows("claude-3-haiku")
    assert not key.allows("gpt-4.1") and not key.allows(None)
    assert GatewayKey(id="k", name="", prefix="p", created_at="", revoked_at="2025").problem().endswith("was revoked")
    assert repr(key) == "GatewayKey(key_1)"  # flow.metadata is formatted on every flow: keep it short


@pytest.fixture
def ring(tmp_path):
    path = tmp_path / "t.db"
    open_db(path).close()
    r = KeyRing()
    r.refresh = 0.05
    r.open(path)
    yield r, path
    r.close()


def test_the_ring_follows_creates_revokes_and_rotations(ring):
    r, path = ring
    assert len(r) == 0
    db = open_db(path)  # another writer, as the CLI is
    try:
        key, secret = keyadmin.create_key(db, "app", [parse_budget("10requests/day")])
        until(lambda: r.find(secret) is not None)
        assert r.find(secret) == key and r.by_id(key.id) == key and r.find(secret + "x") is None

        keyadmin.revoke_key(db, key.id)
        until(lambda: r.find(secret).problem() is not None)
        assert "revoked" in r.find(secret).problem()

        other, old = keyadmin.create_key(db, "other", [])
        until(lambda: r.find(old) is not None)
        keyadmin.update_key(db, other.id, budgets=[parse_budget("5usd/day")], rpm=10)
        until(lambda: r.find(old).budgets == (parse_budget("5usd/day"),))
        assert r.find(old).rate_limit.rpm == 10
        _, new = keyadmin.rotate_key(db, other.id)
        until(lambda: r.find(new) is not None)
        assert r.find(old) is None and r.find(new).id == other.id
    finally:
        db.close()


def test_the_ring_reads_expiry_and_skips_an_unreadable_row(ring, caplog):
    r, path = ring
    db = open_db(path)
    try:
        expired, secret = keyadmin.create_key(db, "old", [], expires="1h", now=datetime.now(UTC) - timedelta(hours=2))
        bad, bad_secret = keyadmin.create_key(db, "bad", [])
        db["keys"].update(bad.id, {"budgets": '[{"unit": "bananas"}]'})
        r.reload()
        assert "expired" in r.find(secret).problem()
        assert r.find(bad_secret) is None
        assert f"key {bad.id} is unreadable" in caplog.text
    finally:
        db.close()
