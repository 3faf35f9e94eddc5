"""Online scoring: recorded calls (from either door) picked by the config's rules are queued, and one
background thread runs the evaluators and journals their scores. The listener only filters and queues:
a call's answer never waits for an evaluator, and an evaluator that fails never fails a call."""

from __future__ import annotations

import logging
import queue
import threading
import time
from typing import Any

from core.call import iso
from core.config import Configured
from core.evals.judge import JudgeSend
from core.evals.registry import Evaluators
from core.evals.sampling import Sampler, is_eval_call, matches, metadata_of
from core.evals.score import Score
from core.evals.subject import Subject
from core.store import Rows

log = logging.getLogger(__name__)


def score_row(call_id: str, evaluator: str, score: Score, source: str, at: float | None = None) -> dict[str, Any]:
    """The `scores` row of one verdict."""
    return {"id": f"{call_id}:{evaluator}", "call_id": call_id, "evaluator": evaluator, "value": score.value,
            "label": score.label, "reason": score.reason, "judge_cost_usd": score.judge_cost_usd,
            "source": source, "created_at": iso(time.time() if at is None else at)}


class OnlineScorer:
    """A Recorder listener, `offer(row, call)`, and the thread that scores what it queued."""

    def __init__(self, settings: Configured, store: Rows, judge: JudgeSend | None = None) -> None:
        self.settings, self.store, self.judge = settings, store, judge
        self.sampler = Sampler()
        self.queue: queue.Queue | None = None
        self.thread: threading.Thread | None = None
        self._built: tuple[int, Evaluators] | None = None
        self.queued = self.done = self.dropped = 0

    def evaluators(self) -> Evaluators:
        """The config in force's evaluators, built once per config (a reload builds them again)."""
        config = self.settings.config.evals
        if self._built is None or self._built[0] != id(config):
            self._built = (id(config), Evaluators(config, self.judge))
        return self._built[1]

    # -- on the event loop: choose and queue ---------------------------------------------------------

    def offer(self, row: dict[str, Any], call: Any = None) -> None:
        rules = self.settings.config.evals.online
        if not rules or self.queue is None:
            return
        metadata = metadata_of(row, getattr(getattr(call, "tags", None), "metadata", None))
        if is_eval_call(metadata):
            return
        names: list[str] = []
        for i, rule in enumerate(rules):
            if matches(rule, row, metadata) and self.sampler.pick(i, rule.rate):
                names += [n for n in rule.evaluators if n not in names]
        if not names:
            return
        try:
            self.queue.put_nowait((row, names))
            self.queued += 1
        except queue.Full:
            self.dropped += 1

    # -- the scoring thread -------------------------------------------------------------------------

    def start(self) -> None:
        if self.thread is not None:
            return
        self.queue = queue.Queue(self.settings.config.evals.queue_size)
        self.thread = threading.Thread(target=self._run, name="tapgate-scoring", daemon=True)
        self.thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        """Score what is queued (within `timeout`), then stop."""
        if self.thread is None:
            return
        self.queue.put(None)
        self.thread.join(timeout)
        self.thread = None

    def _run(self) -> None:
        while (item := self.queue.get()) is not None:
            row, names = item
            try:
                self.score(row, names)
            except Exception:  # never let one call stop the thread
                log.exception("tapgate: scoring call %s failed", row.get("id"))
            self.done += 1

    def score(self, row: dict[str, Any], names: list[str]) -> None:
        evaluators = self.evaluators()
        subject = Subject.from_row(row)
        rows = []
        for name in names:
            if name in evaluators.by_name and (score := evaluators.run(name, subject)) is not None:
                rows.append(("scores", score_row(row["id"], name, score, "online")))
        if rows:
            self.store.add_all(rows)

    def status(self) -> dict[str, Any]:
        """The backlog and counts, for the writer's status file (the dashboard and `tapgate top`)."""
        built = self._built[1] if self._built else None
        return {"scoring_queued": self.queue.qsize() if self.queue is not None else 0,
                "scoring_done": self.done, "scoring_dropped": self.dropped,
                "scoring_failed": built.failed if built else 0, "scoring_skipped": built.skipped if built else 0}
