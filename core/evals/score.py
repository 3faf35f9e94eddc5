"""One evaluator's verdict on one call: a number, a boolean (1 or 0, labelled pass or fail) or a label."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


class EvaluatorError(Exception):
    """An evaluator that could not give a verdict (a judge that did not answer, a function that raised)."""


@dataclass(frozen=True, slots=True)
class Score:
    value: float | None = None
    label: str | None = None
    reason: str | None = None
    judge_cost_usd: float | None = None

    @classmethod
    def of(cls, result: Any, reason: str | None = None) -> Score:
        """A Score from what an evaluator returned: bool, number, str label, Score or a dict of its fields."""
        if isinstance(result, Score):
            return result
        if isinstance(result, bool):
            return cls(1.0 if result else 0.0, "pass" if result else "fail", reason)
        if isinstance(result, (int, float)):
            return cls(float(result), None, reason)
        if isinstance(result, str):
            return cls(None, result, reason)
        if isinstance(result, dict) and set(result) <= {"value", "label", "reason"}:
            value = result.get("value")
            if isinstance(value, bool):
                return cls(1.0 if value else 0.0, result.get("label") or ("pass" if value else "fail"),
                           result.get("reason"))
            if value is not None and not isinstance(value, (int, float)):
                raise EvaluatorError(f"value must be a number or a boolean, got {type(value).__name__}")
            return cls(None if value is None else float(value), result.get("label"), result.get("reason"))
        raise EvaluatorError(f"an evaluator returned {type(result).__name__}: give a bool, a number, a label, "
                             "or a dict with value, label and reason")


class Skipped(EvaluatorError):
    """An evaluator that chose not to score this call (its budget is spent); no score, not a failure."""
