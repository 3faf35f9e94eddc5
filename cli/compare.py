"""`tapgate compare`: A/B variants side by side (calls, cost, latency p50/p95, error rate), and shadow
calls against the calls they shadowed, from the store."""

from __future__ import annotations

import argparse
import difflib
import json
import math
from collections import defaultdict
from typing import Any

from cli import queries
from providers import transcript


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


def similarity(a: str, b: str) -> float:
    """How alike two answers read, 0 to 1 (difflib's ratio over words)."""
    return difflib.SequenceMatcher(None, a.split(), b.split(), autojunk=False).ratio()


def shadow_summary(pairs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per shadow: the originals against their shadows, and how often the answers differ."""
    groups: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for pair in pairs:
        groups[pair["shadow"]].append(pair)
    out = []
    for name, rows in sorted(groups.items()):
        row: dict[str, Any] = {"shadow": name, "pairs": len(rows),
                               "models": " -> ".join(sorted({f"{r['o_routed_to'] or r['o_model']}" for r in rows})
                                                     + sorted({r["s_routed_to"] or r["s_model"] for r in rows}))}
        for side, label in (("o", "original"), ("s", "shadow")):
            costs = [r[f"{side}_cost_usd"] for r in rows if r[f"{side}_cost_usd"] is not None]
            durations = [r[f"{side}_duration_ms"] for r in rows if r[f"{side}_duration_ms"] is not None]
            row |= {f"{label}_cost_usd": round(sum(costs), 9) if costs else None,
                    f"{label}_p50_ms": percentile(durations, 50), f"{label}_p95_ms": percentile(durations, 95),
                    f"{label}_input_tokens": sum(r[f"{side}_input_tokens"] or 0 for r in rows),
                    f"{label}_output_tokens": sum(r[f"{side}_output_tokens"] or 0 for r in rows)}
        row["shadow_errors"] = sum(r["s_status"] != "ok" for r in rows)
        texts = [(transcript.answer(r["o_response_body"]), transcript.answer(r["s_response_body"]))
                 for r in rows if r["s_status"] == "ok" and r["o_response_body"] and r["s_response_body"]]
        row["compared"] = len(texts)
        row["differ_exact"] = round(sum(a.strip() != b.strip() for a, b in texts) / len(texts), 4) if texts else None
        row["mean_similarity"] = round(sum(similarity(a, b) for a, b in texts) / len(texts), 4) if texts else None
        out.append(row)
    return out


SHADOW_COLUMNS = ["shadow", "pairs", "models", "original_cost_usd", "shadow_cost_usd", "original_p50_ms",
                  "shadow_p50_ms", "original_p95_ms", "shadow_p95_ms", "original_input_tokens", "shadow_input_tokens",
                  "original_output_tokens", "shadow_output_tokens", "shadow_errors", "compared", "differ_exact",
                  "mean_similarity"]


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
    s = store_command(what, "shadow", cmd_shadow, "shadow calls against the calls they shadowed",
                      "Per shadow (routing.shadow): the originals and their shadows side by side (cost, latency "
                      "p50/p95, tokens, shadow errors) and, where both answers were stored, how often they differ "
                      "exactly and their mean word similarity (0 to 1).")
    s.add_argument("--shadow", metavar="NAME", help="only this shadow")
    time_flags(s)
    formats(s)


def cmd_shadow(args: argparse.Namespace) -> int:
    from cli.main import console, print_rows, time_range

    since, until = time_range(args)
    rows = shadow_summary(queries.shadow_pairs(queries.connect(args.db), args.shadow, since, until))
    if args.format:
        print_rows(rows, SHADOW_COLUMNS, args.format)
        return 0
    if not rows:
        print("no shadow calls" + (f" named {args.shadow}" if args.shadow else ""))
        return 0
    from rich.table import Table

    for row in rows:
        table = Table("", "original", "shadow", title=f"shadow {row['shadow']}: {row['pairs']} calls, {row['models']}",
                      box=None)
        for what in ("cost_usd", "p50_ms", "p95_ms", "input_tokens", "output_tokens"):
            table.add_row(what, *(str(row[f"{side}_{what}"]) for side in ("original", "shadow")))
        table.add_row("errors", "", str(row["shadow_errors"]))
        table.add_row("answers differ", "", f"{row['differ_exact']} exact, similarity {row['mean_similarity']} "
                      f"({row['compared']} compared)")
        console().print(table)
    return 0


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
