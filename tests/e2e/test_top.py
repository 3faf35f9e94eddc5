"""`tapgate top` in real terminals (tmux, 100x30 and 80x24) reading the session gateway's store while
calls go through the gateway: the figures on screen are the ones the rows imply."""

from __future__ import annotations

import re
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import anthropic
import openai
import pytest
from harness import query
from terminal import TMUX, Terminals

from cli.queries import iso
from cli.snapshot import percentiles
from cli.views import usd

pytestmark = pytest.mark.skipif(TMUX is None, reason="tmux is not installed (apt-get install tmux); "
                                                     "these tests read the dashboard from a real terminal")
TAPGATE = str(Path(sys.executable).parent / "tapgate")
WINDOW_MIN = 60  # longer than the session: no call leaves the window while the test reads it


@pytest.fixture
def terminals():
    t = Terminals()
    yield t
    t.close()


def expected(db: Path, customer: str) -> dict:
    """What the dashboard must show, from the rows."""
    now = datetime.now(UTC)
    today = now.date().isoformat() + "T00:00:00.000Z"
    window = iso(now - timedelta(minutes=WINDOW_MIN))
    rows = query(db, "SELECT * FROM requests WHERE started_at >= ?", (min(today, window),))
    in_window = [r for r in rows if r["started_at"] >= window]
    in_today = [r for r in rows if r["started_at"] >= today]
    providers: dict[str, list[int]] = {}
    for r in in_window:
        acc = providers.setdefault(r["provider"], [0, 0])
        acc[0] += 1
        acc[1] += r["status"] != "ok"
    by_customer: dict[str, float] = {}
    for r in in_today:
        by_customer[r["customer_identifier"]] = by_customer.get(r["customer_identifier"], 0) + (r["cost_usd"] or 0)
    return {
        "calls": len(in_window),
        "errors": sum(r["status"] != "ok" for r in in_window),
        "providers": sorted(providers.items(), key=lambda kv: (-kv[1][0], kv[0]))[:2],
        "latency": percentiles([r["duration_ms"] for r in in_window if r["status"] == "ok"]),
        "today_calls": len(in_today),
        "today_usd": usd(sum(r["cost_usd"] or 0 for r in in_today)),
        "top_customer": max(by_customer.items(), key=lambda kv: kv[1]),
        "customer_usd": usd(by_customer.get(customer, 0)),
    }


def shows(text: str, e: dict, customer: str) -> bool:
    lines = text.splitlines()
    latency = next((line.split() for line in lines if line.startswith("total ")), [])
    return (
        f"calls {e['calls']} ({WINDOW_MIN}m)" in text
        and f"errors {e['errors'] / e['calls']:.1%}" in text
        and all(re.search(rf"\b{p}\s+{c}\s+{n} {n / c:.0%}", text) for p, (c, n) in e["providers"])
        and latency[1:4] == [f"{v:,.0f}" for v in (e["latency"].p50, e["latency"].p95, e["latency"].p99)]
        and any(e["today_usd"] in line and re.search(rf"\s{e['today_calls']}$", line) for line in lines)
        # at 80 columns a long name may end in "…"
        and any(customer[:12] in line and e["customer_usd"] in line for line in lines)
    )


def test_top_shows_the_stores_figures_while_the_gateway_writes(gateway, customer, terminals):
    wide = terminals.run("wide", [TAPGATE, "top", "--db", str(gateway.db), "--window", str(WINDOW_MIN),
                                  "--interval", "0.2"], 100, 30)
    small = terminals.run("small", [TAPGATE, "top", "--db", str(gateway.db), "--window", str(WINDOW_MIN),
                                    "--interval", "0.2"], 80, 24)
    for pane in (wide, small):
        terminals.wait(pane, lambda text: "last calls" in text)

    # While top runs: a customer that outspends every other test's, a stream, and an error.
    claude = anthropic.Anthropic(api_key="sk-ant-top", max_retries=0, default_headers={
        "X-Tapgate-Customer-Identifier": customer,
        "x-mock-fixture": "anthropic/messages_prompt_cache_read_and_write.json"})
    for _ in range(8):
        claude.messages.create(model="claude-sonnet-4-6", max_tokens=10, messages=[{"role": "user", "content": "hi"}])
    gpt = openai.OpenAI(api_key="sk-top", max_retries=0, default_headers={"X-Tapgate-Customer-Identifier": customer})
    list(gpt.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}], stream=True))
    with pytest.raises(openai.RateLimitError):
        gpt.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "hi"}],
                                    extra_headers={"x-mock-status": "429"})
    gateway.rows(customer, 10)

    e = expected(gateway.db, customer)
    assert e["top_customer"][0] == customer, "another test's customer spent more; raise this test's spend"
    text = terminals.wait(wide, lambda text: shows(text, expected(gateway.db, customer), customer))
    assert text.splitlines()[0].startswith("tapgate ")

    # 80x24: the same figures, every panel, nothing wider than the terminal.
    text = terminals.wait(small, lambda text: shows(text, expected(gateway.db, customer), customer))
    lines = text.splitlines()
    assert len(lines) <= 24 and max(map(len, lines)) <= 80
    for panel in ("req/s", "latency ms", "errors by provider", "today (UTC)", "spend today by key", "by customer",
                  "by model", "budgets: no budgets configured", "last calls"):
        assert panel in text, panel
    last = lines[next(i for i, line in enumerate(lines) if line.startswith("last calls")) + 3:]
    assert len(last) >= 3 and "429 error" in "\n".join(last[:3])  # the newest calls, error included
    assert terminals.exit_status(wide) is None  # still running


def test_top_on_a_missing_store_says_so(terminals, tmp_path):
    pane = terminals.run("missing", [TAPGATE, "top", "--db", str(tmp_path / "none.db")], 80, 24)
    text = terminals.wait(pane, lambda text: "no store at" in text, history=True)
    assert f"tapgate top: no store at {tmp_path / 'none.db'} (start the gateway, or pass --db)" in text
    terminals.wait(pane, lambda _: terminals.exit_status(pane) is not None)
    assert terminals.exit_status(pane) == 1
