"""What the terminal shows: the dashboard laid out for the size it is given, budgets as bars, calls
tables; rendered on a recording rich Console of a fixed size."""

import io
from dataclasses import replace

from known_store import request
from rich.console import Console
from test_snapshot import NOW, ago

from addons.snapshot import Tally, snapshot
from addons.views import DashboardView, budget_bar, calls_table


def render(renderable, width: int, height: int) -> list[str]:
    console = Console(file=io.StringIO(), width=width, height=height, record=True, color_system=None)
    console.print(renderable)
    return console.export_text().rstrip("\n").split("\n")


def busy_snapshot(calls: int = 40):
    tally = Tally(window_s=300)
    for n in range(calls):
        tally.add(request(id=f"{n:032x}", started_at=ago(n * 5), duration_ms=float(100 + n), cost_usd=0.001 * n,
                          customer_identifier=f"customer-{n % 7}", key_id=f"fp_{n % 4:012x}",
                          provider=("openai", "anthropic", "gemini")[n % 3], model=f"model-{n % 6}",
                          response_model=f"model-{n % 6}-2025",
                          status="ok" if n % 10 else "error", status_code=200 if n % 10 else 503))
    return snapshot(tally, NOW, source="/srv/tapgate.db")


def test_the_dashboard_fits_80x24_and_shows_every_panel():
    lines = render(DashboardView(busy_snapshot()), 80, 24)
    assert len(lines) <= 24 and max(map(len, lines)) <= 80
    text = "\n".join(lines)
    for part in ("req/s 0.3 (10s) 0.2 (60s)", "calls 40 (5m)", "errors 10.0%", "fallbacks 0", "retries 0",
                 "cache hits –", "latency ms", "errors by provider", "today (UTC)", "spend today by key",
                 "by customer", "by model", "budgets: no budgets configured", "last calls"):
        assert part in text, part
    assert "$0.7800" in text  # today: 0.001 * (0 + 1 + ... + 39)
    calls = lines[lines.index(next(line for line in lines if line.startswith("last calls"))) + 3:]
    assert [line[:8] for line in calls] == [r["started_at"][11:19] for r in busy_snapshot().last[:len(calls)]]
    assert lines[-1].strip(), "the last calls fill the height"


def test_the_dashboard_uses_a_bigger_terminal():
    small = render(DashboardView(busy_snapshot()), 80, 24)
    big = render(DashboardView(busy_snapshot()), 140, 45)
    assert len(big) == 45 and max(map(len, big)) <= 140
    assert sum("customer-" in line for line in big) > sum("customer-" in line for line in small)
    assert any(line.count("customer-") == 1 and "$" in line for line in big)  # spend by customer: 5 rows
    assert "  errors 10.0%" in big[0]  # one header line when there is room


def test_the_latency_panel_shows_the_percentiles():
    s = busy_snapshot()
    text = "\n".join(render(DashboardView(s), 100, 30))
    row = next(line for line in text.splitlines() if line.startswith("total"))
    assert row.split()[1:4] == [f"{s.latency.p50:,.0f}", f"{s.latency.p95:,.0f}", f"{s.latency.p99:,.0f}"]


def test_an_empty_store_shows_dashes_not_zeros():
    text = "\n".join(render(DashboardView(snapshot(Tally(300), NOW)), 80, 24))
    assert "errors –" in text and "no calls" in text and "nothing yet" in text
    latency = next(line for line in text.splitlines() if line.startswith("total"))
    assert latency.split()[:4] == ["total", "–", "–", "–"]


def test_budgets_are_bars_against_their_caps():
    s = replace(busy_snapshot(), budgets=[("team search", 80.0, 100.0, "usd"), ("acme", 150.0, 100.0, "usd")])
    lines = render(DashboardView(s), 80, 24)
    search = next(line for line in lines if line.startswith("team search"))
    acme = next(line for line in lines if line.startswith("acme"))
    assert "$80.0000 / $100.00" in search and "$150.00 / $100.00" in acme
    assert search.count("█") * 5 == (search.count("█") + search.count("░")) * 4  # 80%
    assert "░" not in acme  # over the cap: full
    assert budget_bar(80, 100, 10).spans[0].style == "yellow"
    assert budget_bar(150, 100, 10).spans[0].style == "red"
    assert budget_bar(10, 100, 10).spans[0].style == "green"


def test_cache_hit_rate_when_known():
    s = replace(busy_snapshot(), cache_hit_rate=0.25)
    assert "cache hits 25.0%" in "\n".join(render(DashboardView(s), 100, 30))


def test_calls_table_compact_and_full():
    rows = [request(id="1" * 32, started_at="2025-06-01T10:00:00.000Z", customer_identifier="acme", ttft_ms=42.0)]
    full = "\n".join(render(calls_table(rows, 160), 160, 10))
    compact = "\n".join(render(calls_table(rows, 80, compact=True), 80, 10))
    assert "2025-06-01 10:00:00" in full and "1" * 32 in full and "42" in full
    assert "10:00:00" in compact and "2025-06-01" not in compact and "1" * 12 not in compact
    assert "10→20" in compact and "$0.010000" in compact and "acme" in compact
