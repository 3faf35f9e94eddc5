"""`tapgate eval run`: each dataset input sent through the router to each candidate model (bounded
concurrency, a budget, a progress bar), scored, and summed up side by side."""

from __future__ import annotations

import asyncio
import json
import math
import statistics
import time
import uuid
from contextlib import closing
from dataclasses import dataclass, field
from typing import Any

import aiohttp

from cli.evals import mean_ci
from core.evals.config import EvalsConfig, ReferenceEval
from core.evals.judge import EVAL_METADATA, RouterJudge
from core.evals.registry import Evaluators
from core.evals.rules import normalise
from core.evals.subject import Subject, split_tools
from providers import transcript
from providers.base import Usage
from providers.pricing import PriceTable
from providers.safe_json import parse_json

# Router paths by the dataset row's endpoint: the router speaks OpenAI chat and Anthropic messages.
PATHS = {"chat.completions": "/v1/chat/completions", "messages": "/v1/messages"}
DEFAULT_EVALUATOR = "similarity"  # to the expected answer, else to the recorded one


@dataclass
class Result:
    candidate: str
    position: int
    ok: bool
    answer: str = ""
    latency_ms: float | None = None
    cost_usd: float | None = None
    scores: dict[str, float | None] = field(default_factory=dict)
    differs: bool = False
    error: str | None = None


def request_for(row: dict[str, Any], model: str, prompt: tuple[str, str] | None, run_id: str
                ) -> tuple[str, dict[str, Any]] | None:
    """(router path, body) replaying the row against `model`; None when the router cannot take it."""
    path = PATHS.get(row.get("endpoint") or "")
    body = parse_json(row.get("request_body"))
    if path is None or not isinstance(body, dict):
        return None
    body = {k: v for k, v in body.items() if k not in ("stream", "stream_options")}
    body["model"] = model
    tags = parse_json(row.get("tags")) or {}
    if prompt is not None:  # the prompt's messages replace the row's; its variables from the row's metadata
        variables = {**(tags.get("metadata") or {}), "input": transcript.question(row.get("request_body"))}
        body["prompt"] = {"prompt_id": prompt[0], "version": prompt[1], "variables": variables, "override": False}
        body["messages"] = []
    body["metadata"] = {EVAL_METADATA: "experiment", "experiment": run_id, "candidate": model,
                        "row": str(row["position"])}
    return path, body


class Experiment:
    def __init__(self, rows: list[dict[str, Any]], models: list[str], router: str, key: str | None,
                 evals: EvalsConfig, evaluator_names: list[str], prompt: tuple[str, str] | None = None,
                 concurrency: int = 8, budget_usd: float | None = None, timeout: float = 120.0) -> None:
        self.rows, self.models, self.router, self.key = rows, models, router.rstrip("/"), key
        self.prompt, self.concurrency, self.budget, self.timeout = prompt, concurrency, budget_usd, timeout
        self.run_id = uuid.uuid4().hex[:12]
        if not evaluator_names:
            evals = evals.model_copy(update={"evaluators": {**evals.evaluators,
                                                            DEFAULT_EVALUATOR: ReferenceEval(kind="similarity")}})
            evaluator_names = [DEFAULT_EVALUATOR]
        missing = [n for n in evaluator_names if n not in evals.evaluators]
        if missing:
            raise ValueError(f"no evaluator {missing[0]!r} in the config's evals.evaluators")
        judge = RouterJudge(lambda: self.router.removesuffix("/v1"), lambda: key)
        self.evaluators, self.names = Evaluators(evals, judge), evaluator_names
        self.prices = PriceTable.load()
        self.spent = 0.0
        self.skipped = 0  # rows the router cannot take (Gemini-native bodies)

    async def run(self, progress=None) -> list[Result]:
        jobs = [(m, row) for row in self.rows for m in self.models]
        limit = asyncio.Semaphore(self.concurrency)
        headers = {"content-type": "application/json", **({"authorization": f"Bearer {self.key}"} if self.key else {})}
        timeout = aiohttp.ClientTimeout(total=self.timeout)
        async with aiohttp.ClientSession(headers=headers, timeout=timeout, trust_env=False) as session:

            async def one(model: str, row: dict[str, Any]) -> Result | None:
                async with limit:
                    result = await self.call(session, model, row)
                if progress is not None:
                    progress()
                return result

            results = await asyncio.gather(*(one(m, r) for m, r in jobs))
        return [r for r in results if r is not None]

    async def call(self, session: aiohttp.ClientSession, model: str, row: dict[str, Any]) -> Result | None:
        made = request_for(row, model, self.prompt, self.run_id)
        if made is None:
            self.skipped += 1
            return None
        if self.budget is not None and self.spent >= self.budget:
            return Result(model, row["position"], False, error="the experiment's budget is spent")
        path, body = made
        started = time.perf_counter()
        try:
            async with session.post(self.router.removesuffix("/v1") + path, json=body) as response:
                text = await response.text()
                status = response.status
        except (aiohttp.ClientError, TimeoutError) as e:
            return Result(model, row["position"], False, error=f"{type(e).__name__}: {e}")
        latency = (time.perf_counter() - started) * 1000
        doc = parse_json(text)
        if status >= 400 or not isinstance(doc, dict):
            return Result(model, row["position"], False, latency_ms=latency, error=f"HTTP {status}: {text[:200]}")
        cost = self.cost(doc)
        self.spent += cost or 0.0
        answer = transcript.answer(text)
        recorded = transcript.answer(row.get("response_body"))
        expected = row.get("expected") if row.get("expected") is not None else recorded
        text_only, tools = split_tools(answer)
        subject = Subject(question=transcript.question(row.get("request_body")), answer=text_only, tool_calls=tools,
                          duration_ms=latency, cost_usd=cost, status="ok", expected=expected)
        scores = {}
        for name in self.names:  # evaluators are blocking (a judge's HTTP call): off the event loop
            score = await asyncio.to_thread(self.evaluators.run, name, subject)
            scores[name] = None if score is None else score.value
        return Result(model, row["position"], True, answer, latency, cost, scores,
                      differs=normalise(answer) != normalise(recorded))

    def cost(self, doc: dict[str, Any]) -> float | None:
        usage = doc.get("usage") if isinstance(doc.get("usage"), dict) else {}
        tokens = Usage(input_tokens=usage.get("prompt_tokens", usage.get("input_tokens")),
                       output_tokens=usage.get("completion_tokens", usage.get("output_tokens")))
        return self.prices.cost("", str(doc.get("model") or ""), tokens)


def percentile(values: list[float], p: float) -> float | None:
    """Nearest rank, as the store's latency view."""
    if not values:
        return None
    ordered = sorted(values)
    return ordered[max(0, math.ceil(p * len(ordered)) - 1)]


def summary(results: list[Result], models: list[str], names: list[str]) -> list[dict[str, Any]]:
    """One line per candidate: calls, errors, per evaluator mean ± CI, cost, latency p50/p95, differing answers."""
    out = []
    for model in models:
        mine = [r for r in results if r.candidate == model]
        ok = [r for r in mine if r.ok]
        latencies = [r.latency_ms for r in ok if r.latency_ms is not None]
        costs = [r.cost_usd for r in ok if r.cost_usd is not None]
        line: dict[str, Any] = {"candidate": model, "rows": len(mine), "errors": len(mine) - len(ok), "scores": {}}
        for name in names:
            values = [r.scores[name] for r in ok if r.scores.get(name) is not None]
            mean, ci = mean_ci(values)
            line["scores"][name] = {"mean": mean, "ci95": ci, "n": len(values)}
        line.update(cost_usd=sum(costs) if costs else None, unpriced=len(ok) - len(costs),
                    p50_ms=percentile(latencies, 0.5), p95_ms=percentile(latencies, 0.95),
                    differ=sum(r.differs for r in ok),
                    mean_ms=statistics.fmean(latencies) if latencies else None)
        out.append(line)
    return out


def as_json(run_id: str, dataset: str, lines: list[dict[str, Any]], results: list[Result]) -> str:
    return json.dumps({"experiment": run_id, "dataset": dataset, "candidates": lines,
                       "results": [r.__dict__ for r in results]}, ensure_ascii=False)


def store_scores(db_path: str, run_id: str, results: list[Result], timeout: float = 10.0) -> int:
    """The experiment's scores into the scores table (source `experiment`), on the calls the gateway recorded
    for it, once its writer has committed them (or `timeout` passed). Returns the scores stored."""
    from cli import queries
    from core.database import open_for_edit
    from core.evals.online import score_row
    from core.evals.score import Score

    wanted = sum(r.ok for r in results)
    sql = ("SELECT id, json_extract(metadata, '$.candidate') AS candidate, json_extract(metadata, '$.row') AS row"
           " FROM requests WHERE json_extract(metadata, '$.experiment') = ?")
    deadline = time.monotonic() + timeout
    while True:  # another process's writer: nothing to await but the file
        with closing(queries.connect(db_path)) as conn:
            calls = conn.execute(sql, (run_id,)).fetchall()
        if len(calls) >= wanted or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    ids = {(c["candidate"], int(c["row"])): c["id"] for c in calls if c["row"] is not None}
    rows = [score_row(ids[r.candidate, r.position], name, Score(value), "experiment")
            for r in results if r.ok and (r.candidate, r.position) in ids
            for name, value in r.scores.items() if value is not None]
    db = open_for_edit(db_path)
    try:
        db["scores"].insert_all(rows, replace=True)
    finally:
        db.close()
    return len(rows)
