"""Evaluators written in Python: a function found by its dotted path, given the Subject."""

from __future__ import annotations

import importlib

from core.evals.config import PythonEval
from core.evals.score import Score
from core.evals.subject import Subject


def resolve(path: str):
    """`pkg.mod:func` or `pkg.mod.func` -> the function. Raises ValueError saying what is missing."""
    module, sep, name = path.partition(":")
    if not sep:
        module, _, name = path.rpartition(".")
    try:
        found = getattr(importlib.import_module(module), name)
    except ImportError as e:
        raise ValueError(f"cannot import {module!r} for evaluator {path!r}: {e}") from None
    except AttributeError:
        raise ValueError(f"module {module!r} has no {name!r}") from None
    if not callable(found):
        raise ValueError(f"{path!r} is not callable")
    return found


class Function:
    def __init__(self, spec: PythonEval) -> None:
        self.function = resolve(spec.function)

    def __call__(self, s: Subject) -> Score:
        return Score.of(self.function(s))
