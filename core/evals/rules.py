"""Rule-based and reference-based evaluators: pure functions of the call, no network."""

from __future__ import annotations

import difflib
import fnmatch
import json
import re
import unicodedata

from core.evals.config import (
    ContainsEval,
    JsonEval,
    LengthEval,
    ReferenceEval,
    RegexEval,
    ThresholdEval,
    ToolCallEval,
)
from core.evals.score import EvaluatorError, Score
from core.evals.subject import Subject


class Regex:
    def __init__(self, spec: RegexEval) -> None:
        self.rx, self.on = re.compile(spec.pattern), spec.on

    def __call__(self, s: Subject) -> Score:
        return Score.of(self.rx.search(s.answer if self.on == "answer" else s.question) is not None)


class Contains:
    def __init__(self, spec: ContainsEval) -> None:
        self.spec = spec

    def __call__(self, s: Subject) -> Score:
        text, needle = s.answer, self.spec.text
        if not self.spec.case_sensitive:
            text, needle = text.casefold(), needle.casefold()
        return Score.of((needle in text) != self.spec.negate)


class Json:
    def __init__(self, spec: JsonEval) -> None:
        self.validator = None
        if spec.json_schema is not None:
            from jsonschema import validators

            self.validator = validators.validator_for(spec.json_schema)(spec.json_schema)

    def __call__(self, s: Subject) -> Score:
        try:
            doc = json.loads(strip_fence(s.answer))
        except ValueError as e:
            return Score.of(False, f"not JSON: {e}"[:200])
        if self.validator is not None and (error := next(iter(self.validator.iter_errors(doc)), None)):
            where = "/".join(str(p) for p in error.absolute_path) or "the top"
            return Score.of(False, f"at {where}: {error.message}"[:200])
        return Score.of(True)


def strip_fence(text: str) -> str:
    """A model's ```json ... ``` fence around the JSON taken off."""
    m = re.fullmatch(r"\s*```(?:json)?\s*\n(.*)\n\s*```\s*", text, re.S)
    return m.group(1) if m else text


class Length:
    def __init__(self, spec: LengthEval) -> None:
        self.spec = spec

    def __call__(self, s: Subject) -> Score:
        n = len(s.answer.split()) if self.spec.unit == "words" else len(s.answer)
        ok = (self.spec.min is None or n >= self.spec.min) and (self.spec.max is None or n <= self.spec.max)
        return Score.of(ok, f"{n} {self.spec.unit}")


class Threshold:
    def __init__(self, spec: ThresholdEval) -> None:
        self.spec = spec

    def __call__(self, s: Subject) -> Score:
        measured = s.duration_ms if self.spec.kind == "latency" else s.cost_usd
        if measured is None:
            raise EvaluatorError(f"the call has no {'duration' if self.spec.kind == 'latency' else 'cost'}")
        return Score.of(measured <= self.spec.max, f"{measured:g} {'ms' if self.spec.kind == 'latency' else 'USD'}")


class ToolCall:
    def __init__(self, spec: ToolCallEval) -> None:
        self.spec = spec

    def __call__(self, s: Subject) -> Score:
        calls = [n for n in s.tool_calls if self.spec.name is None or fnmatch.fnmatchcase(n, self.spec.name)]
        return Score.of(bool(calls) == self.spec.made, ", ".join(s.tool_calls) or "no tool call")


def normalise(text: str) -> str:
    """Case, Unicode forms, punctuation at the ends and runs of white space made not to matter."""
    text = unicodedata.normalize("NFKC", text).casefold()
    return " ".join(text.split()).strip(" .!?\"'")


class Reference:
    def __init__(self, spec: ReferenceEval) -> None:
        self.spec = spec

    def __call__(self, s: Subject) -> Score:
        if s.expected is None:
            raise EvaluatorError("no expected answer to compare with (reference evaluators need a dataset row)")
        got, want = normalise(s.answer), normalise(s.expected)
        if self.spec.kind == "exact":
            return Score.of(got == want)
        ratio = difflib.SequenceMatcher(None, got, want, autojunk=False).ratio()
        if self.spec.threshold is not None:
            return Score.of(ratio >= self.spec.threshold, f"similarity {ratio:.3f}")
        return Score(round(ratio, 4))
