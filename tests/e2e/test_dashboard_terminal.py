"""The gateway's own dashboard (`--set tapgate_dashboard=true`) in a real terminal (tmux): it draws
the calls going through that gateway, and the gateway still records them and shuts down cleanly."""

from __future__ import annotations

import io
import json
from contextlib import redirect_stdout

import openai
import pytest
from harness import gateway_command, query, wait_rows
from terminal import TMUX, Terminals, free_port

from cli.main import main
from cli.views import usd

pytestmark = pytest.mark.skipif(TMUX is None, reason="tmux is not installed (apt-get install tmux); "
                                                     "these tests read the dashboard from a real terminal")


@pytest.fixture
def terminals():
    t = Terminals()
    yield t
    t.close()


def test_the_gateway_draws_its_own_dashboard(gateway, mock, terminals, tmp_path, monkeypatch, customer):
    port, db = free_port(), tmp_path / "dashboard.db"
    pane = terminals.run("gateway", gateway_command(mock, gateway.ca.parent, db, "--set", "tapgate_dashboard=true",
                                                    port=port), 100, 30)
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


def test_the_dashboards_budget_bars_follow_keys_made_and_changed_while_it_runs(gateway, mock, terminals, tmp_path,
                                                                             monkeypatch):
    """A fresh store has no budgets; a key created with one shows its bar before its first call, the
    bar fills with calls, and `keys update` moves its cap (or replaces the budget) on the running
    dashboard."""
    port, db = free_port(), tmp_path / "budgets.db"
    pane = terminals.run("gateway", gateway_command(mock, gateway.ca.parent, db, "--set", "tapgate_dashboard=true",
                                                    port=port), 100, 30)
    terminals.wait(pane, lambda text: "last calls" in text and "budgets: no budgets configured" in text)

    with redirect_stdout(io.StringIO()) as printed:
        assert main(["keys", "create", "--db", str(db), "--name", "bars", "--budget", "5requests/day", "--json"]) == 0
    key = json.loads(printed.getvalue())
    bar = f"key {key['id']} requests/day"
    terminals.wait(pane, lambda text: any(bar in line and "0 requests / 5 requests" in line
                                          for line in text.splitlines()))

    monkeypatch.setenv("HTTPS_PROXY", f"http://127.0.0.1:{port}")
    client = openai.OpenAI(api_key="sk-bars", max_retries=0, default_headers={"X-Tapgate-Key": key["secret"]})
    for _ in range(2):
        client.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "hi"}])
    text = terminals.wait(pane, lambda text: any(bar in line and "2 requests / 5 requests" in line
                                                 for line in text.splitlines()))
    line = next(line for line in text.splitlines() if bar in line)
    assert line.count("█") * 5 == (line.count("█") + line.count("░")) * 2  # 2 of 5

    with redirect_stdout(io.StringIO()):
        assert main(["keys", "update", key["id"], "--db", str(db), "--budget", "3requests/day"]) == 0
    terminals.wait(pane, lambda text: any(bar in line and "2 requests / 3 requests" in line
                                          for line in text.splitlines()))
    with redirect_stdout(io.StringIO()):
        assert main(["keys", "update", key["id"], "--db", str(db), "--budget", "1usd/day"]) == 0
    text = terminals.wait(pane, lambda text: f"key {key['id']} usd/day" in text and bar not in text)
    assert "/ $1.00" in text

    terminals.send(pane, "C-c")
    terminals.wait(pane, lambda _: terminals.exit_status(pane) is not None)
    assert terminals.exit_status(pane) == 0
