"""How the store looks in a terminal: pure functions from rows or a Snapshot to rich renderables,
shared by the gateway's dashboard and the `tapgate` commands (and testable on a recording Console)."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Any

from rich import box
from rich.console import Console, ConsoleOptions, Group, RenderResult
from rich.segment import Segment
from rich.table import Table
from rich.text import Text
from rich.tree import Tree

from cli import columns
from cli.cells import cost_text, status_text, tokens_text
from cli.columns import Column, keep_end
from cli.snapshot import Snapshot, Spend
from core.ledger import fmt, plural
from providers import transcript
from providers.safe_json import loads

DASH = "–"  # no figure: nothing to compute it from (no calls, no streams, no cache hits recorded)


def ms(value: float | None) -> str:
    return DASH if value is None else f"{value:,.0f}"


def usd(value: float | None) -> str:
    if value is None:
        return "$?"
    if value == 0:
        return "$0.00"
    return f"${value:,.2f}" if value >= 100 else f"${value:.4f}" if value >= 0.01 else f"${value:.6f}"


def elapsed(seconds: float) -> str:
    """12 ms, 1.5 s, 6m00s."""
    if seconds < 1:
        return f"{seconds * 1000:.0f} ms"
    return f"{seconds:.1f} s" if seconds < 60 else f"{int(seconds // 60)}m{int(seconds % 60):02d}s"


def percent(value: float | None) -> str:
    return DASH if value is None else f"{value:.1%}"


# -- a list of calls (`tapgate logs`, the dashboard's last calls) ------------------------------------


def call_columns(compact: bool = False, ids: dict[str, str] | None = None) -> list[Column]:
    """The columns of a list of calls in the order shown, with their priorities at narrow widths.
    `compact` (the dashboard): the time of day, no id. `ids`: each id's shortest unique prefix, which
    the id column may show instead of the whole id (`tapgate trace` takes it)."""
    ids = ids or {}
    if compact:
        when = Column("time", lambda r: (r["started_at"] or "")[11:19], 0, style="dim")
    else:  # at narrow widths without the year ("06-01 10:00:00")
        when = Column("time (UTC)", lambda r: (r["started_at"] or "")[:19].replace("T", " "), 1, style="dim", floor=14,
                      cut=keep_end)
    shown = [
        when,
        Column("provider", lambda r: r["provider"] or "?", 7, floor=6, style="cyan"),
        Column("model", lambda r: r["response_model"] or r["model"] or "?", 3, floor=10, style="bold"),
        Column("status", lambda r: Text(status_text(r), style="green" if r["status"] == "ok" else "red"), 2, floor=11),
        Column("routed to", lambda r: r.get("routed_to") or "", 9, floor=12, optional=True, style="cyan"),
        Column("attempts", lambda r: "" if r.get("attempts") is None else str(r["attempts"]), 10, justify="right",
               optional=True),
        Column("cache", lambda r: {1: "hit", 0: "miss"}.get(r.get("cache_hit"), ""), 8, optional=True, style="green"),
        Column("ms", lambda r: ms(r["duration_ms"]), 6, justify="right"),
        Column("ttft", lambda r: "" if r["ttft_ms"] is None else ms(r["ttft_ms"]), 11, justify="right", optional=True),
        Column("tokens", tokens_text, 5, justify="right", style="yellow"),
        Column("cost", cost_text, 4, justify="right", style="yellow"),  # never cut
        Column("customer", lambda r: r["customer_identifier"] or "", 6, floor=8, optional=True, style="magenta"),
        Column("scores", lambda r: r.get("scores") or "", 12, floor=8, optional=True, style="cyan"),
    ]
    if compact:
        return [c for c in shown if c.header not in ("ttft", "attempts", "scores")]
    shortest = max((len(v) for v in ids.values()), default=32)
    ident = Column("id", lambda r: r["id"], 0, floor=shortest, cut=lambda t, w: t[:w], style="dim")
    error = Column("error", lambda r: "" if r["status"] == "ok" else (r["error"] or ""), 12, floor=12, optional=True,
                   yields=True, style="red")
    return [ident, *shown, error]


def calls_table(rows: Iterable[dict[str, Any]], width: int, *, compact: bool = False, title: str | None = None,
                ids: dict[str, str] | None = None) -> Table:
    """One line per call, in the colours of the gateway's console line, laid out for `width`."""
    return columns.table(call_columns(compact, ids), list(rows), width, title=title)


# -- the dashboard --------------------------------------------------------------------------------


class DashboardView:
    """The dashboard for one snapshot; lays itself out for the width and height it is given."""

    def __init__(self, snap: Snapshot) -> None:
        self.snap = snap

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        width, height = options.max_width, options.height or options.size.height
        head = Group(self.header(width), writer_line(self.snap.writer), self.panels(width), self.spend(width),
                     self.budgets(width, height))
        lines = console.render_lines(head, options.update(height=None), pad=False)  # rendered once
        for line in lines:
            yield from line
            yield Segment.line()
        room = height - len(lines) - 3  # the calls table's title, header and rule
        if room > 0:
            yield calls_table(self.snap.last[:room], width, compact=True, title="last calls")

    def header(self, width: int) -> Text:
        """Two lines (one from 130 columns): time and traffic, then health."""
        s = self.snap
        t = Text(no_wrap=True, overflow="ellipsis")
        t.append("tapgate ", style="bold cyan").append(s.at.strftime("%Y-%m-%d %H:%M:%S UTC"), style="dim")
        t.append("  req/s ", style="dim").append(f"{s.rps_10s:.1f}", style="bold").append(" (10s) ", style="dim")
        t.append(f"{s.rps_60s:.1f}", style="bold").append(" (60s)", style="dim")
        t.append("  calls ", style="dim").append(str(s.calls), style="bold")
        t.append(f" ({s.window_s / 60:g}m)", style="dim")
        t.append("  " if width >= 130 else "\n")
        for label, value, style in (
            ("errors", percent(s.error_rate) if s.calls else DASH, "bold red" if s.errors else "bold"),
            ("fallbacks", str(s.fallbacks), "bold"),
            ("retries", str(s.retries), "bold"),
            ("cache hits", percent(s.cache_hit_rate), "bold"),
        ):
            t.append(f"{label} ", style="dim").append(value, style=style).append("  ")
        t.append(s.source, style="dim")
        return t

    def panels(self, width: int) -> Table:
        s = self.snap
        lat = panel(f"latency ms, last {s.window_s / 60:g}m")
        lat.add_column("")
        for p in ("p50", "p95", "p99"):
            lat.add_column(p, justify="right")
        for name, pct in (("total", s.latency), ("ttft", s.ttft)):
            lat.add_row(name, *(ms(v) for v in (pct.p50, pct.p95, pct.p99)))
        prov = panel("errors by provider")
        prov.add_column("provider", style="cyan", no_wrap=True, overflow="ellipsis")
        prov.add_column("calls", justify="right")
        prov.add_column("errors", justify="right")
        for h in s.providers[:4]:
            prov.add_row(h.provider, str(h.calls),
                         Text(f"{h.errors} {h.error_rate:.0%}", style="red" if h.errors else "green"))
        if not s.providers:
            prov.add_row(Text("no calls", style="dim"), "", "")
        today = panel("today (UTC)")
        today.add_column("spend", justify="right", style="yellow")
        today.add_column("calls", justify="right")
        today.add_row(usd(s.today_cost_usd), str(s.today_calls))
        if s.today_unpriced:
            today.add_row(Text(f"{s.today_unpriced} unpriced", style="dim"), "")
        grid = Table.grid(expand=True, padding=(0, 2))
        grid.add_column(ratio=1, min_width=27, no_wrap=True)  # the latency table's own width
        grid.add_column(ratio=1)
        grid.add_column(ratio=1, no_wrap=True)
        grid.add_row(lat, prov, today)
        return grid

    def spend(self, width: int) -> Table:
        s = self.snap
        rows = 3 if width < 120 else 5
        grid = Table.grid(expand=True, padding=(0, 2))
        tables = [spend_column(title, items[:rows]) for title, items in
                  (("spend today by key", s.by_key), ("by customer", s.by_customer), ("by model", s.by_model))]
        for _ in tables:
            grid.add_column(ratio=1)
        grid.add_row(*tables)
        return grid

    def budgets(self, width: int, height: int) -> Text | Table:
        """The budgets nearest their caps first, as many as leave room for the last calls."""
        if self.snap.budgets is None:
            return Text("budgets: no budgets configured", style="dim")
        room = 3 if height < 30 else 6
        shown, more = self.snap.budgets[:room], len(self.snap.budgets) - room
        t = Table.grid(padding=(0, 1))
        bar = max(10, min(40, width - 55))  # room for a name and "2 requests / 5 requests"
        t.add_column(style="bold", no_wrap=True, overflow="ellipsis", max_width=max(16, width - bar - 26))
        t.add_column(no_wrap=True)
        t.add_column(justify="right", no_wrap=True)
        for name, spent, cap, unit in shown:
            amount = usd if unit == "usd" else (lambda v, unit=unit: fmt(v, unit))
            t.add_row(name, budget_bar(spent, cap, bar), f"{amount(spent)} / {amount(cap)}")
        if more > 0:
            t.add_row(Text(f"and {plural(more, 'more budget')}", style="dim"), "", "")
        return t


def writer_line(status: dict | None) -> Text:
    """The store writer's state in one line: what waits in the journal, how fast it is committed, and
    any stall or loss (red). From the status file a running gateway's writer keeps beside the store."""
    t = Text(no_wrap=True, overflow="ellipsis")
    t.append("store ", style="dim")
    if status is None:
        return t.append("no running gateway writes this store", style="dim")
    size = status["pending_bytes"]
    if status.get("store") == "postgresql":  # the PostgreSQL writer (tapgate_postgres)
        t.append("PostgreSQL ", style="dim")
        if not status.get("connected"):
            t.append("DISCONNECTED  ", style="bold red")
    t.append(f"{status['pending_records']:,}", style="bold").append(" records pending", style="dim")
    t.append(f" ({size / 1024:,.0f} KB)  " if size >= 1024 else f" ({size} B)  ", style="dim")
    t.append(f"{status['committed_per_s']:,.0f}", style="bold").append("/s committed  ", style="dim")
    if status.get("scoring_done") or status.get("scoring_queued"):  # online scoring's backlog (issue 15)
        t.append("scoring ", style="dim").append(f"{status['scoring_queued']:,}", style="bold")
        t.append(f" queued, {status['scoring_done']:,} done  ", style="dim")
        for key, what in (("scoring_dropped", "dropped"), ("scoring_failed", "evaluator failures")):
            if status.get(key):
                t.append(f"{status[key]:,} {what}  ", style="yellow")
    if status.get("stalled"):
        t.append(f"STALLED {status['stalled_s']:.0f} s: {status.get('last_error') or ''}  ", style="bold red")
    if status.get("stalls"):
        t.append(f"stalls {status['stalls']}  ", style="yellow")
    if status.get("reopens"):
        t.append(f"store recreated {status['reopens']}x  ", style="bold red")
    if status.get("dropped"):
        t.append(f"journal full: {status['dropped']:,} dropped  ", style="bold red")
    if status.get("lost"):
        t.append(f"LOST {status['lost']} records", style="bold red")
    return t


def panel(title: str, **options: Any) -> Table:
    """A small titled table of the dashboard: a rule under the header, one space between columns."""
    return Table(box=box.SIMPLE_HEAD, pad_edge=False, show_edge=False, padding=(0, 1, 0, 0), title=title,
                 title_justify="left", title_style="bold", **options)


def spend_column(title: str, items: list[Spend]) -> Table:
    t = panel(title, expand=True, show_header=False)
    t.add_column("name", no_wrap=True, overflow="ellipsis", ratio=1)
    t.add_column("usd", justify="right", style="yellow", no_wrap=True)
    for item in items:
        t.add_row(item.name, usd(item.cost_usd))
    if not items:
        t.add_row(Text("nothing yet", style="dim"), "")
    return t


def budget_bar(spent: float, cap: float, width: int) -> Text:
    """Spent against cap: green, yellow past 80%, red past the cap."""
    frac = spent / cap if cap else 1.0
    full = min(width, round(frac * width))
    style = "red" if frac >= 1 else "yellow" if frac >= 0.8 else "green"
    return Text.assemble(("█" * full, style), ("░" * (width - full), "dim"))


# -- `tapgate trace` ------------------------------------------------------------------------------


def trace_tree(trace_id: str, spans: list[dict[str, Any]], requests: dict[str, dict[str, Any]],
               bar: int = 24) -> Tree:
    """The trace's spans as a tree: each with its latency and status on a shared timeline bar, its
    start offset, and for a call's root span the model, tokens, cost and customer."""
    starts = {s["span_id"]: datetime.fromisoformat(s["started_at"]).timestamp() for s in spans}
    t0 = min(starts.values(), default=0.0)
    total = max([starts[s["span_id"]] + (s["duration_ms"] or 0) / 1000 - t0 for s in spans] + [1e-6])
    ids = set(starts)
    children: dict[str | None, list[dict[str, Any]]] = {}
    for s in spans:  # a parent outside the store (the caller's traceparent span) makes a top-level span
        children.setdefault(s["parent_span_id"] if s["parent_span_id"] in ids else None, []).append(s)
    depth: dict[str, int] = {}

    def measure(parent: str | None, level: int) -> None:
        for s in children.get(parent, []):
            # a top-level span with a caller hangs one level down, under its caller's node
            depth[s["span_id"]] = level + (parent is None and bool(s["parent_span_id"]))
            measure(s["span_id"], depth[s["span_id"]] + 1)

    measure(None, 0)
    width = max([len(s["name"] or "") + 4 * depth.get(s["span_id"], 0) for s in spans] + [0])
    roots = {r.get("span_id") for r in requests.values()}

    def label(s: dict[str, Any]) -> Text:
        """Name, timeline bar, latency and status; below, dim: when it started and what it was."""
        offset, dur = starts[s["span_id"]] - t0, (s["duration_ms"] or 0) / 1000
        lead = min(bar - 1, round(offset / total * bar))
        fill = max(1, min(bar - lead, round(dur / total * bar)))
        ok = s["status"] == "ok"
        line = Text.assemble(
            ((s["name"] or "?").ljust(width - 4 * depth.get(s["span_id"], 0)), "bold" if s["span_id"] in roots else ""),
            "  ", ("·" * lead, "dim"), ("━" * fill, "green" if ok else "red"), ("·" * (bar - lead - fill), "dim"),
            f" {ms(s['duration_ms']):>7} ms  ", (s["status"] or "", "green" if ok else "red"),
        )
        details = Text(f"+{elapsed(offset)}", style="dim")
        if (req := requests.get(s["request_id"])) and s["span_id"] == req.get("span_id"):
            details.append(f"  {req['response_model'] or req['model'] or '?'}  {tokens_text(req)} tokens  ",
                           style="yellow").append(cost_text(req), style="yellow")
            if req["customer_identifier"]:
                details.append(f"  {req['customer_identifier']}", style="magenta")
            if req.get("scores"):
                details.append(f"  {req['scores']}", style="cyan")
        attrs = _attributes(s)
        if attrs.get("http.status_code"):
            details.append(f"  HTTP {attrs['http.status_code']}", style="dim")
        if attrs.get("ttft_ms") is not None:
            details.append(f"  ttft {ms(attrs['ttft_ms'])} ms", style="dim")
        if attrs.get("error"):
            details.append(f"  {str(attrs['error'])[:80]}", style="red")
        notes = [Text(f"note: {n}", style="italic") for n in attrs.get("notes") or () if isinstance(n, str)]
        return Text("\n").join([line, details, *notes])

    def grow(tree: Tree, parent: str | None) -> None:
        for s in children.get(parent, []):
            grow(tree.add(label(s)), s["span_id"])

    root = Tree(Text.assemble(("trace ", "bold"), (trace_id, "cyan"), (f"  {elapsed(total)}", "dim")))
    nodes: dict[str | None, Tree] = {None: root}
    for s in children.get(None, []):
        caller = s["parent_span_id"]
        if caller and caller not in nodes:
            nodes[caller] = root.add(Text(f"caller span {caller}", style="dim"))
        node = nodes[caller if caller else None]
        grow(node.add(label(s)), s["span_id"])
    return root


def _attributes(span: dict[str, Any]) -> dict[str, Any]:
    try:
        attrs = loads(span.get("attributes") or "{}")
    except ValueError:
        return {}
    return attrs if isinstance(attrs, dict) else {}


# -- `tapgate thread` -----------------------------------------------------------------------------


def thread_view(thread_id: str, rows: list[dict[str, Any]], full: bool = False) -> Group:
    """The thread turn by turn: when, which model, tokens and cost, what the user said, the answer."""
    cut = None if full else 600
    parts: list[Any] = [Text.assemble(("thread ", "bold"), (thread_id, "cyan"), f"  {plural(len(rows), 'turn')}")]
    for n, r in enumerate(rows, 1):
        parts.append(Text.assemble(
            "\n", (f"turn {n}", "bold"), "  ", ((r["started_at"] or "")[:19].replace("T", " "), "dim"), "  ",
            (r["response_model"] or r["model"] or "?", "bold"), "  ",
            (status_text(r), "green" if r["status"] == "ok" else "red"), "  ",
            (f"{tokens_text(r)} tokens  {cost_text(r)}", "yellow"),
        ))
        for who, text, style in (("user", transcript.question(r["request_body"]), "magenta"),
                                 ("answer", transcript.answer(r["response_body"]), "")):
            text = text if cut is None or len(text) <= cut else text[:cut] + "…"
            parts.append(Text.assemble((f"  {who}: ", "bold " + style), (text or DASH, "" if text else "dim")))
    unpriced = sum(r["cost_usd"] is None and r["input_tokens"] is not None for r in rows)
    cost = group_cost(total(r["cost_usd"] for r in rows), unpriced)
    parts.append(Text.assemble("\n", ("total ", "bold"), (cost, "bold yellow"),
                               (f"  ({unpriced} unpriced)" if unpriced else "", "dim")))
    return Group(*parts)


# -- `tapgate spend` ------------------------------------------------------------------------------


def total(values: Iterable[float | None]) -> float | None:
    """The sum of the known values; None (unknown) when none is known."""
    known = [v for v in values if v is not None]
    return sum(known) if known else None


def count(value: float | None) -> str:
    return DASH if value is None else f"{value:,.0f}"


def group_cost(cost: float | None, unpriced: int) -> str:
    """A group's cost: unknown (`$?`) when it had unpriced calls only, `–` when nothing was priced
    because nothing went upstream (refused calls)."""
    return usd(cost) if cost is not None or unpriced else DASH


def spend_table(by: str, rows: list[dict[str, Any]], width: int) -> Table:
    """Spend per group with a total, laid out for `width`: the group's name and cost are never cut."""
    unpriced = sum(r["unpriced"] or 0 for r in rows)
    cost = total(r["cost_usd"] for r in rows)
    saved = total(r.get("saved_usd") for r in rows)
    table = [
        Column(by, lambda r: "(none)" if r["name"] is None else str(r["name"]), 0, floor=20, fold=True,
               footer="total"),
        Column("requests", lambda r: count(r["requests"]), 2, justify="right",
               footer=count(sum(r["requests"] for r in rows))),
        Column("tokens in", lambda r: count(r["input_tokens"]), 3, justify="right",
               footer=count(total(r["input_tokens"] for r in rows))),
        Column("tokens out", lambda r: count(r["output_tokens"]), 4, justify="right",
               footer=count(total(r["output_tokens"] for r in rows))),
        Column("cost", lambda r: group_cost(r["cost_usd"], r["unpriced"]), 1, justify="right", style="yellow",
               footer=group_cost(cost, unpriced)),
        Column("unpriced", lambda r: count(r["unpriced"]) if r["unpriced"] else "", 5, justify="right", style="dim",
               footer=count(unpriced) if unpriced else "", optional=True),
        Column("cache hits", lambda r: count(r.get("cache_hits")) if r.get("cache_hits") else "", 6, justify="right",
               footer=count(sum(r.get("cache_hits") or 0 for r in rows)), optional=True),
        Column("saved", lambda r: usd(r["saved_usd"]) if r.get("saved_usd") else "", 7, justify="right",
               style="green", footer=usd(saved) if saved else "", optional=True),
    ]
    return columns.table(table, rows, width, title=f"spend by {by}")


# -- `tapgate keys list` --------------------------------------------------------------------------


def keys_table(keys: list[dict[str, Any]], width: int) -> Table:
    """Every key, laid out for `width`: ids are what `revoke`, `rotate` and `update` take, never cut."""
    table = [
        Column("id", lambda k: k["id"], 0, style="bold"),
        Column("name", lambda k: k["name"], 2, floor=8),
        Column("prefix", lambda k: k["prefix"] + "…", 8, style="dim"),
        Column("status", lambda k: Text(k["status"], style="green" if k["status"] == "active" else "red"), 1),
        Column("created", lambda k: k["created_at"][:16], 10, style="dim"),
        Column("expires", lambda k: (k["expires_at"] or "")[:16], 7, optional=True),
        Column("revoked", lambda k: (k["revoked_at"] or "")[:16], 6, optional=True),
        # one setting a line, whole: each is what `keys update` would be given to change it
        Column("budgets", lambda k: "\n".join(k["budgets"]), 3, optional=True),
        Column("rate limit", lambda k: "\n".join(f"{v} {n}" for n, v in k["rate_limit"].items()), 4, optional=True),
        Column("models", lambda k: "\n".join(k["models"]), 5, optional=True),
        Column("downgrade", lambda k: "\n".join(k.get("downgrade") or ()), 11, optional=True),
        Column("alerts", lambda k: "\n".join(k.get("alerts") or ()), 9, optional=True),
        Column("metadata", lambda k: "\n".join(f"{n}={v}" for n, v in k["metadata"].items()), 12, floor=10,
               optional=True),
    ]
    return columns.table(table, keys, width, title=plural(len(keys), "gateway key"))


def evals_report_table(by: str, lines: list[dict[str, Any]], width: int) -> Table:
    """`tapgate evals report`: per evaluator and group, the mean with its 95% interval and the pass rate."""
    table = Table(box=box.SIMPLE_HEAD, width=min(width, 120), title=f"scores by {by}")
    for header, justify in (("evaluator", "left"), (by, "left"), ("scores", "right"), ("mean ± 95% CI", "right"),
                            ("pass", "right"), ("labels", "left"), ("judge cost", "right")):
        table.add_column(header, justify=justify, overflow="fold")
    for line in lines:
        mean = DASH if line["mean"] is None else f"{line['mean']:.3g}" + (
            f" ± {line['ci95']:.2g}" if line["ci95"] is not None else "")
        labels = ", ".join(f"{k} {v}" for k, v in line["labels"].items())
        table.add_row(line["evaluator"], str(line["group"]) if line["group"] is not None else DASH, str(line["scores"]),
                      mean, percent(line["pass_rate"]), labels,
                      usd(line["judge_cost_usd"]) if line["judge_cost_usd"] is not None else "")
    return table


def experiment_table(dataset: str, lines: list[dict[str, Any]], names: list[str], rows: int) -> Table:
    """`tapgate eval run`: one row per candidate model, side by side."""
    table = Table(box=box.SIMPLE_HEAD, title=f"{dataset}: {plural(rows, 'row')} per model")
    table.add_column("model", style="bold")
    table.add_column("ok", justify="right")
    for name in names:
        table.add_column(f"{name} (mean ± 95% CI)", justify="right")
    for header in ("cost", "p50 ms", "p95 ms", "differ"):
        table.add_column(header, justify="right", style="yellow" if header == "cost" else "")
    for line in lines:
        cells = [line["candidate"], f"{line['rows'] - line['errors']}/{line['rows']}"]
        for name in names:
            s = line["scores"][name]
            cells.append(DASH if s["mean"] is None else f"{s['mean']:.3g}"
                         + (f" ± {s['ci95']:.2g}" if s["ci95"] is not None else ""))
        cells += [usd(line["cost_usd"]) if line["cost_usd"] is not None else "$?", ms(line["p50_ms"]),
                  ms(line["p95_ms"]), str(line["differ"])]
        table.add_row(*cells)
    return table
