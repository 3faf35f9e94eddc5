"""core/health.py: readiness checks and their reasons."""

from __future__ import annotations

from types import SimpleNamespace

from core.health import readiness


class Writer:
    def __init__(self, alive=True, stalled=None, error=None):
        self.alive, self.stalled_since, self.last_error = alive, stalled, error

    def is_alive(self):
        return self.alive


def storage(tmp_path, **writer):
    return SimpleNamespace(writer=Writer(**writer), journal=SimpleNamespace(directory=tmp_path), _failing=False)


def test_ready(tmp_path):
    state = readiness(storage(tmp_path), "http://127.0.0.1:4000", [])
    assert state.ready
    assert state.body() == {"status": "ready", "checks": {"store": {"ok": True}, "router": {"ok": True},
                                                          "deployment_keys": {"ok": True}}}


def test_reasons(tmp_path):
    state = readiness(storage(tmp_path, stalled=1.0, error="database is locked"), "",
                      [("openai/gpt-4o", "OPENAI_API_KEY")])
    body = state.body()
    assert not state.ready and body["status"] == "not_ready"
    assert body["checks"]["store"] == {"ok": False, "reason": "the store's writer is stalled: database is locked"}
    assert body["checks"]["router"]["reason"] == "the router is not listening"
    assert "openai/gpt-4o (OPENAI_API_KEY)" in body["checks"]["deployment_keys"]["reason"]


def test_store_closed(tmp_path):
    state = readiness(SimpleNamespace(writer=None, journal=None), "http://x", [])
    assert state.body()["checks"]["store"] == {"ok": False, "reason": "the store is not open"}


def test_journal_unwritable(tmp_path):
    s = storage(tmp_path)
    s._failing = True
    assert "cannot be written" in readiness(s, "http://x", []).body()["checks"]["store"]["reason"]
