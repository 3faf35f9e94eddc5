"""The LLM judge: a rubric, the question and the answer go to a router model; its reply's score and
reason are parsed, and its cost counted against the judge's daily budget."""

from __future__ import annotations

import json
import re
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Protocol

from core.evals.config import JudgeEval
from core.evals.score import EvaluatorError, Score, Skipped
from core.evals.subject import Subject

# Marks the judge's own calls, so online scoring never scores its judge (which would score its judge...).
EVAL_METADATA = "tapgate_eval"
INSTRUCTIONS = ('You grade an AI assistant\'s answer. Rubric:\n{rubric}\n\nReply with JSON only: '
                '{{"score": <a number from {low:g} to {high:g}>, "reason": "<one short sentence>"}}.')
SCORE_TEXT = re.compile(r"score\W{0,3}(-?\d+(?:\.\d+)?)", re.I)


class JudgeSend(Protocol):
    def __call__(self, model: str, messages: list[dict], max_tokens: int) -> tuple[str, float | None]:
        """The judge model's reply text and what the call cost (None: unknown). Raises EvaluatorError."""


class JudgeBudget:
    """USD the judge may spend per UTC day; None: no cap. Shared by every judge evaluator."""

    def __init__(self, cap_usd: float | None, today: Callable[[], str] | None = None) -> None:
        self.cap = cap_usd
        self.today = today or (lambda: datetime.now(UTC).date().isoformat())
        self.day, self.spent = self.today(), 0.0
        self.lock = threading.Lock()

    def check(self) -> None:
        with self.lock:
            if (day := self.today()) != self.day:
                self.day, self.spent = day, 0.0
            if self.cap is not None and self.spent >= self.cap:
                raise Skipped(f"the judge's budget of ${self.cap:g} for {self.day} is spent")

    def add(self, cost: float | None) -> None:
        with self.lock:
            self.spent += cost or 0.0


class Judge:
    def __init__(self, spec: JudgeEval, send: JudgeSend | None, budget: JudgeBudget) -> None:
        self.spec, self.send, self.budget = spec, send, budget

    def messages(self, s: Subject) -> list[dict]:
        low, high = self.spec.scale
        user = f"Question:\n{s.question}\n\nAnswer:\n{s.answer}"
        if s.expected is not None:
            user += f"\n\nA reference answer:\n{s.expected}"
        return [{"role": "system", "content": INSTRUCTIONS.format(rubric=self.spec.rubric, low=low, high=high)},
                {"role": "user", "content": user}]

    def __call__(self, s: Subject) -> Score:
        if self.send is None:
            raise EvaluatorError("no router to send the judge's call to (tapgate_router is off)")
        self.budget.check()
        text, cost = self.send(self.spec.model, self.messages(s), self.spec.max_tokens)
        self.budget.add(cost)
        value, reason = parse_verdict(text, self.spec.scale)
        return Score(value, None, reason, cost)


def parse_verdict(text: str, scale: tuple[float, float]) -> tuple[float, str | None]:
    """(score, reason) from a judge's reply: a JSON object (fenced or not), else `score: n` in prose.
    Raises EvaluatorError when there is no score in the scale."""
    value, reason = None, None
    if m := re.search(r"\{.*\}", text, re.S):
        try:
            doc = json.loads(m.group(0))
        except ValueError:
            doc = None
        if isinstance(doc, dict) and isinstance(doc.get("score"), (int, float)) and not isinstance(doc["score"], bool):
            value, reason = float(doc["score"]), doc.get("reason") if isinstance(doc.get("reason"), str) else None
    if value is None and (m := SCORE_TEXT.search(text)):
        value, reason = float(m.group(1)), None
    if value is None:
        raise EvaluatorError(f"the judge gave no score: {text[:120]!r}")
    low, high = scale
    if not low <= value <= high:
        raise EvaluatorError(f"the judge's score {value:g} is outside {low:g}..{high:g}")
    return value, (reason or "")[:300] or None


class RouterJudge:
    """Sends judge calls to the gateway's own router (blocking: it runs on the scoring thread, never the
    event loop). `base_url` is read at each call: the router's port is known only once it listens."""

    def __init__(self, base_url: Callable[[], str], key: Callable[[], str | None],
                 cost_of: Callable[[str, dict], float | None] = lambda model, usage: None,
                 timeout: float = 60.0) -> None:
        self.base_url, self.key, self.cost_of, self.timeout = base_url, key, cost_of, timeout
        # Loopback, never through a proxy the environment names.
        self.opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))

    def __call__(self, model: str, messages: list[dict], max_tokens: int) -> tuple[str, float | None]:
        base = self.base_url()
        if not base:
            raise EvaluatorError("the router is not listening")
        body = {"model": model, "messages": messages, "max_tokens": max_tokens, "temperature": 0,
                "metadata": {EVAL_METADATA: "judge"}}
        headers = {"content-type": "application/json"}
        if key := self.key():
            headers["authorization"] = f"Bearer {key}"
        request = urllib.request.Request(f"{base}/v1/chat/completions", json.dumps(body).encode(), headers)
        started = time.monotonic()
        try:
            with self.opener.open(request, timeout=self.timeout) as response:
                doc = json.loads(response.read())
        except urllib.error.HTTPError as e:
            raise EvaluatorError(f"the judge's call failed: HTTP {e.code}") from None
        except (OSError, ValueError) as e:
            raise EvaluatorError(f"the judge's call failed after {time.monotonic() - started:.1f}s: {e}") from None
        try:
            text = doc["choices"][0]["message"]["content"] or ""
        except (KeyError, IndexError, TypeError):
            raise EvaluatorError("the judge's reply has no message") from None
        usage = doc.get("usage") if isinstance(doc.get("usage"), dict) else {}
        cost = usage.get("cost")  # OpenRouter-style reported cost, else priced from the usage
        if not isinstance(cost, (int, float)):
            cost = self.cost_of(str(doc.get("model") or model), usage)
        return text, cost
