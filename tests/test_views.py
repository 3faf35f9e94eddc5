"""What the terminal shows: the dashboard laid out for the size it is given, budgets as bars, calls
tables; rendered on a recording rich Console of a fixed size."""

import io
import json
from dataclasses import replace

from known_store import request
from rich.console import Console
from test_snapshot import NOW, ago

from cli import columns
from cli.columns import Column
from cli.snapshot import Tally, snapshot
from cli.views import DashboardView, budget_bar, calls_table, keys_table, spend_table, thread_view, trace_tree
from core.ledger import plural


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


# -- the CLI's tables: columns by width, and the small things ---------------------------------------


def test_columns_fit_the_width_by_priority_and_never_cut_what_has_no_floor():
    rows = [{"id": f"{n:x}" * 32, "name": "a rather long name " * 3, "cost": f"$0.00{n}123"} for n in range(1, 4)]
    table = [Column("name", lambda r: r["name"], 2, floor=8), Column("cost", lambda r: r["cost"], 1, justify="right"),
             Column("id", lambda r: r["id"], 0)]
    for width in (50, 60, 80, 200):
        lines = render(columns.table(table, rows, width), width, 10)
        assert max(map(len, lines)) <= width
        for r in rows:  # the id and the cost are whole on every width
            assert any(r["id"] in line and r["cost"] in line for line in lines), width
    assert "name" not in render(columns.table(table, rows, 50), 50, 10)[0]  # no room left for it at 50
    assert any("…" in line for line in render(columns.table(table, rows, 60), 60, 10))  # cut to fit
    assert not any("…" in line for line in render(columns.table(table, rows, 200), 200, 10))


def test_a_list_of_calls_shows_no_cost_where_there_was_none():
    refused = request(id="1" * 32, started_at="2025-06-01T10:00:00.000Z", status="refused", status_code=429,
                      input_tokens=None, output_tokens=None, cost_usd=None)
    failed = {**refused, "id": "2" * 32, "status": "error"}
    unpriced = request(id="3" * 32, started_at="2025-06-01T10:00:01.000Z", cost_usd=None)
    lines = render(calls_table([refused, failed, unpriced], 120), 120, 10)
    by_id = {c: next(line for line in lines if line.startswith(c * 8)) for c in "123"}
    assert "$" not in by_id["1"] and "$" not in by_id["2"] and "$?" in by_id["3"]


def test_narrow_lists_of_calls_show_the_ids_unique_prefix():
    rows = [request(id=c * 32, started_at="2025-06-01T10:00:00.000Z", customer_identifier="acme") for c in "ab"]
    ids = {r["id"]: r["id"][:9] for r in rows}
    narrow = render(calls_table(rows, 60, ids=ids), 60, 10)
    wide = render(calls_table(rows, 200, ids=ids), 200, 10)
    for line, row in zip(narrow[2:], rows, strict=True):  # a prefix at least as long as the unique one
        shown = line.split()[0]
        assert row["id"].startswith(shown) and len(shown) >= 9 and len(shown) < 32
    assert [line.split()[0] for line in wide[2:]] == ["a" * 32, "b" * 32]


def test_unique_prefixes_grow_past_a_shared_start(tmp_path):
    from cli import queries
    from core.schema import open_db

    db = open_db(tmp_path / "t.db")
    for ident in ("abcdef0123456789" * 2, "abcdef0199999999" * 2, "ffffffff00000000" * 2):
        db["requests"].insert(request(id=ident, started_at="2025-06-01T10:00:00.000Z"))
    db.close()
    conn = queries.connect(tmp_path / "t.db")
    short = queries.unique_prefixes(conn, ["abcdef0123456789" * 2, "ffffffff00000000" * 2, "not-hex"])
    assert short == {"abcdef0123456789" * 2: "abcdef012", "ffffffff00000000" * 2: "ffffffff", "not-hex": "not-hex"}
    assert queries.resolve_trace(conn, "abcdef012") == ("abcdef0123456789" * 2) * 2  # the trace it opens


def test_spend_totals_leave_unknown_cells_unknown():
    rows = [{"name": "acme", "requests": 2, "input_tokens": None, "output_tokens": None, "cost_usd": None,
             "unpriced": 0, "cache_hits": 0, "saved_usd": None},
            {"name": None, "requests": 1, "input_tokens": None, "output_tokens": None, "cost_usd": None,
             "unpriced": 0, "cache_hits": 0, "saved_usd": None}]
    lines = render(spend_table("customer", rows, 80), 80, 10)
    total = next(line for line in lines if line.startswith("total"))
    assert total.split() == ["total", "3", "–", "–", "–"]  # not 0 tokens and $0.00
    assert next(line for line in lines if line.startswith("acme")).split() == ["acme", "2", "–", "–", "–"]
    assert any(line.startswith("(none)") for line in lines)


def test_singular_and_plural():
    assert (plural(1, "call"), plural(2, "call"), plural(1000, "turn")) == ("1 call", "2 calls", "1,000 turns")
    one = [request(id="1" * 32, started_at="2025-06-01T10:00:00.000Z", thread_identifier="t")]
    assert "t  1 turn\n" in "\n".join(render(thread_view("t", one), 80, 10)) + "\n"
    assert render(keys_table([], 80), 80, 5)[0].startswith("0 gateway keys")
    refused = [{**one[0], "status": "refused", "input_tokens": None, "output_tokens": None, "cost_usd": None}]
    assert "total –" in "\n".join(render(thread_view("t", refused), 80, 10))  # not $0.00


def test_trace_shows_the_root_spans_notes():
    row = request(id="1" * 32, started_at="2025-06-01T10:00:00.000Z")
    root = {"span_id": row["span_id"], "trace_id": row["trace_id"], "parent_span_id": None, "request_id": row["id"],
            "name": "router openai chat.completions", "started_at": row["started_at"], "duration_ms": 100.0,
            "status": "ok", "attributes": json.dumps({"notes": ["downgraded gpt-4o to gpt-4o-mini: key key_1 has "
                                                                "spent 85% of its usd/month budget"]})}
    text = "\n".join(render(trace_tree(row["trace_id"], [root], {row["id"]: row}), 120, 10))
    assert "note: downgraded gpt-4o to gpt-4o-mini: key key_1 has spent 85%" in text


def test_budget_bars_fit_80_columns_nearest_the_cap_first():
    budgets = [("key key_1a2b3c4d requests/day", 4.0, 5.0, "requests"), ("global usd/month", 0.5, 100.0, "usd"),
               ("customer acme usd/day", 0.1, 1.0, "usd"), ("customer globex usd/day", 0.0, 1.0, "usd")]
    lines = render(DashboardView(replace(busy_snapshot(), budgets=budgets)), 80, 24)
    assert any(line.startswith("key key_1a2b3c4d requests/day") and line.endswith("4 requests / 5 requests")
               for line in lines)
    assert "and 1 more budget" in "\n".join(lines) and "globex" not in "\n".join(lines)
    assert "globex" in "\n".join(render(DashboardView(replace(busy_snapshot(), budgets=budgets)), 100, 30))


def test_the_store_writers_backlog_stalls_and_losses_are_one_line():
    healthy = {"pending_records": 12, "pending_bytes": 40960, "committed_per_s": 2400.0, "stalls": 0,
               "stalled_s": 0, "lost": 0, "reopens": 0, "last_error": None}
    stalled = {**healthy, "pending_records": 3000, "stalls": 1, "stalled": True, "stalled_s": 7.2, "lost": 2,
               "last_error": "database is locked"}
    assert "store 12 records pending (40 KB)  2,400/s committed" in "\n".join(
        render(DashboardView(replace(busy_snapshot(), writer=healthy)), 80, 24))
    text = "\n".join(render(DashboardView(replace(busy_snapshot(), writer=stalled)), 120, 30))
    assert "3,000 records pending" in text and "STALLED 7 s: database is locked" in text and "LOST 2 records" in text
    assert "no running gateway writes this store" in "\n".join(render(DashboardView(busy_snapshot()), 80, 24))
