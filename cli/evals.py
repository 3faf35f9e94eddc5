"""`tapgate evals report`: scores aggregated per evaluator and group, with a confidence interval."""

from __future__ import annotations

import math
import statistics
from typing import Any

Z95 = 1.959964  # two-sided 95% normal quantile


def mean_ci(values: list[float]) -> tuple[float | None, float | None]:
    """The mean and the half-width of its 95% confidence interval (normal approximation; None below 2)."""
    if not values:
        return None, None
    mean = statistics.fmean(values)
    if len(values) < 2:
        return mean, None
    return mean, Z95 * statistics.stdev(values) / math.sqrt(len(values))


def report(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One line per (evaluator, group): scores, mean ± CI of the values, pass rate, labels, judge cost."""
    groups: dict[tuple, list[dict[str, Any]]] = {}
    for r in rows:
        groups.setdefault((r["evaluator"], r["grp"]), []).append(r)
    out = []
    for (evaluator, group), items in sorted(groups.items(), key=lambda kv: (kv[0][0], str(kv[0][1]))):
        values = [r["value"] for r in items if r["value"] is not None]
        mean, ci = mean_ci(values)
        judged = [r["label"] for r in items if r["label"] in ("pass", "fail")]
        labels: dict[str, int] = {}
        for r in items:
            if r["label"] not in (None, "pass", "fail"):
                labels[r["label"]] = labels.get(r["label"], 0) + 1
        costs = [r["judge_cost_usd"] for r in items if r["judge_cost_usd"] is not None]
        out.append({"evaluator": evaluator, "group": group, "scores": len(items), "mean": mean, "ci95": ci,
                    "pass_rate": judged.count("pass") / len(judged) if judged else None, "labels": labels,
                    "judge_cost_usd": sum(costs) if costs else None})
    return out
