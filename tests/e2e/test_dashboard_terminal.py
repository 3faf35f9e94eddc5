"""The gateway's own dashboard (`--set tapgate_dashboard=true`) in a real terminal (tmux): it draws
the calls going through that gateway, and the gateway still records them and shuts down cleanly."""

from __future__ import annotations

import socket

import openai
import pytest
from harness import BIN, ROOT, map_remote_to, query, wait_rows
from terminal import TMUX, Terminals

from addons.views import usd

pytestmark = pytest.mark.skipif(TMUX is None, reason="tmux is not installed (apt-get install tmux); "
                                                     "these tests read the dashboard from a real terminal")


@pytest.fixture
def terminals():
    t = Terminals()
    yield t
    t.close()


def free_port() -> int:
    """A loopback port free a moment ago: the gateway in the pane cannot report the one it got."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_the_gateway_draws_its_own_dashboard(gateway, mock, terminals, tmp_path, monkeypatch, customer):
    port, db = free_port(), tmp_path / "dashboard.db"
    pane = terminals.run("gateway", [
        str(BIN / "mitmdump"), "--listen-port", str(port), "--set", f"confdir={gateway.ca.parent}",
        "--set", "connection_strategy=lazy", "--map-remote", map_remote_to(mock),
        "-s", str(ROOT / "addons" / "gateway.py"), "--set", f"tapgate_db={db}", "--set", "tapgate_dashboard=true",
    ], 100, 30)
    terminals.wait(pane, lambda text: "last calls" in text)  # drawn from running(): the proxy listens

    monkeypatch.setenv("HTTPS_PROXY", f"http://127.0.0.1:{port}")
    client = openai.OpenAI(api_key="sk-dashboard", max_retries=0,
                           default_headers={"X-Tapgate-Customer-Identifier": customer})
    for _ in range(3):
        client.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "hi"}])
    with pytest.raises(openai.RateLimitError):
        client.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "hi"}],
                                       extra_headers={"x-mock-status": "429"})
    rows = wait_rows(db, "SELECT * FROM requests WHERE customer_identifier = ?", (customer,), count=4)

    spent = usd(sum(r["cost_usd"] or 0 for r in rows))
    text = terminals.wait(pane, lambda text: "calls 4 (5m)" in text and "errors 25.0%" in text
                          and any(customer in line and spent in line for line in text.splitlines()))
    assert sum(customer in line for line in text.splitlines()) >= 5  # its spend line and its four calls

    terminals.send(pane, "C-c")
    terminals.wait(pane, lambda _: terminals.exit_status(pane) is not None)
    assert terminals.exit_status(pane) == 0
    after = terminals.text(pane, history=True)  # the terminal as before the dashboard took the screen
    assert "tapgate: dashboard on; mitmproxy's log shows warnings only" in after
    assert len(query(db, "SELECT span_id FROM spans WHERE request_id IN (SELECT id FROM requests)")) == 8
