"""Evaluators by name, built once per config from its `evals.evaluators` block."""

from __future__ import annotations

import logging
from collections.abc import Callable

from core.evals import rules
from core.evals.config import EvalsConfig, Evaluator, JudgeEval, PythonEval
from core.evals.judge import Judge, JudgeBudget, JudgeSend
from core.evals.python import Function
from core.evals.score import EvaluatorError, Score, Skipped
from core.evals.subject import Subject

log = logging.getLogger(__name__)

RULES: dict[str, Callable] = {
    "regex": rules.Regex, "contains": rules.Contains, "valid_json": rules.Json, "json_schema": rules.Json,
    "length": rules.Length, "latency": rules.Threshold, "cost": rules.Threshold, "tool_call": rules.ToolCall,
    "exact": rules.Reference, "similarity": rules.Reference,
}


def build(spec: Evaluator, judge: JudgeSend | None, budget: JudgeBudget) -> Callable[[Subject], Score]:
    """One evaluator from its config. Raises ValueError (a Python evaluator that cannot be imported)."""
    if isinstance(spec, JudgeEval):
        return Judge(spec, judge, budget)
    if isinstance(spec, PythonEval):
        return Function(spec)
    return RULES[spec.kind](spec)


class Evaluators:
    """The config's evaluators, ready to run. `run` never raises: an evaluator that fails or raises
    gives no score and is counted (a bug in one must not stop the others or the calls)."""

    def __init__(self, config: EvalsConfig, judge: JudgeSend | None = None, budget: JudgeBudget | None = None):
        self.budget = budget or JudgeBudget(config.judge_budget_usd)
        self.by_name = {name: build(spec, judge, self.budget) for name, spec in config.evaluators.items()}
        self.failed = 0
        self.skipped = 0

    def run(self, name: str, subject: Subject) -> Score | None:
        try:
            return self.by_name[name](subject)
        except Skipped:
            self.skipped += 1
        except EvaluatorError as e:
            self.failed += 1
            log.info("tapgate: evaluator %s gave no score: %s", name, e)
        except Exception:
            self.failed += 1
            log.exception("tapgate: evaluator %s raised; the call is unaffected, it has no %s score", name, name)
        return None
