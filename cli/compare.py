"""`tapgate compare`: A/B variants side by side (calls, cost, latency p50/p95, error rate), and shadow
calls against the calls they shadowed, from the store."""

from __future__ import annotations

import argparse
import json
import math
from collections import defaultdict
from typing import Any

from cli import queries


def percentile(values: list[float], p: float) -> float | None:
    """Nearest-rank percentile (p in 0..100) of the values; None when there are none."""
    if not values:
        return None
    ordered = sorted(values)
    return ordered[max(0, math.ceil(p / 100 * len(ordered)) - 1)]


def variant_summary(calls: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per (experiment, variant)."""
    groups: dict[tuple[str, str], list[dict[str, Any]]] = defaultdict(list)
    for call in calls:
        groups[call["experiment"], call["variant"]].append(call)
    out = []
    for (experiment, variant), rows in sorted(groups.items()):
        durations = [r["duration_ms"] for r in rows if r["duration_ms"] is not None]
        costs = [r["cost_usd"] for r in rows if r["cost_usd"] is not None]
        errors = sum(r["status"] != "ok" for r in rows)
        out.append({
            "experiment": experiment, "variant": variant, "calls": len(rows),
            "cost_usd": round(sum(costs), 9) if costs else None,
            "cost_per_call_usd": round(sum(costs) / len(costs), 9) if costs else None,
            "p50_ms": percentile(durations, 50), "p95_ms": percentile(durations, 95),
            "error_rate": round(errors / len(rows), 4),
            "output_tokens": sum(r["output_tokens"] or 0 for r in rows),
        })
    return out


def add_command(sub, store_command, time_flags, formats) -> None:
    compare = sub.add_parser("compare", help="A/B variants, or shadow calls against their originals",
                             description="Compare what the store recorded: the variants of A/B experiments, or "
                             "shadow calls against the calls they shadowed.")
    what = compare.add_subparsers(dest="what", required=True, metavar="WHAT")
    s = store_command(what, "variants", cmd_variants, "calls, cost, latency p50/p95 and error rate per variant",
                      "Per variant of each A/B experiment (routing.experiments): calls, total and per-call cost, "
                      "latency p50 and p95, error rate.")
    s.add_argument("--experiment", metavar="NAME", help="only this experiment")
    time_flags(s)
    formats(s)


def cmd_variants(args: argparse.Namespace) -> int:
    from cli.main import console, print_rows, time_range

    since, until = time_range(args)
    rows = variant_summary(queries.variant_calls(queries.connect(args.db), args.experiment, since, until))
    columns = ["experiment", "variant", "calls", "cost_usd", "cost_per_call_usd", "p50_ms", "p95_ms", "error_rate",
               "output_tokens"]
    if args.format:
        print_rows(rows, columns, args.format)
        return 0
    if not rows:
        print("no calls in an experiment" + (f" named {args.experiment}" if args.experiment else ""))
        return 0
    from rich.table import Table

    table = Table(*columns, box=None)
    for row in rows:
        table.add_row(*("" if row[c] is None else json.dumps(row[c]).strip('"') for c in columns))
    console().print(table)
    return 0
