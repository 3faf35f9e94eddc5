"""Online scoring (core/evals/online.py): which calls are picked, exact shares, a crashing evaluator
that leaves the others and the caller alone, a full queue counted, and feedback rows."""

from __future__ import annotations

import json
import queue
from types import SimpleNamespace

import pytest

from core.config import TapgateConfig
from core.evals.feedback import BadFeedback, feedback_row
from core.evals.online import OnlineScorer
from core.evals.sampling import Sampler


class Rows:
    def __init__(self) -> None:
        self.rows: list[tuple[str, dict]] = []

    def add(self, table, row):
        self.rows.append((table, row))

    def add_all(self, records):
        self.rows += records


def settings(evals: dict) -> SimpleNamespace:
    return SimpleNamespace(config=TapgateConfig.model_validate({"evals": evals}))


def boom(subject):
    raise RuntimeError("evaluator bug")


EVALS = {"evaluators": {"answered": {"kind": "regex", "pattern": r"\w"}, "crash": {"kind": "python",
                                                                                   "function": "test_online_scoring:boom"}},
         "online": [{"evaluators": ["answered", "crash"], "rate": 0.1}]}


def call_row(i: int, **over) -> dict:
    return {"id": f"call{i}", "status": "ok", "provider": "openai", "mode": "router", "model": "gpt-4o-mini",
            "customer_identifier": "acme", "metadata": json.dumps({"env": "prod"}),
            "request_body": json.dumps({"messages": [{"role": "user", "content": "hi"}]}),
            "response_body": json.dumps({"choices": [{"message": {"content": "hello"}}]}), **over}


def test_the_sampler_picks_exactly_the_rate():
    sampler = Sampler()
    assert sum(sampler.pick(0, 0.1) for _ in range(1000)) == 100
    assert sum(sampler.pick(1, 0.37) for _ in range(1000)) in (369, 370, 371)
    assert not any(sampler.pick(2, 0.0) for _ in range(100)) and all(sampler.pick(3, 1.0) for _ in range(100))


def test_a_sampled_tenth_is_scored_in_the_background_and_a_crashing_evaluator_scores_nothing():
    rows = Rows()
    scorer = OnlineScorer(settings(EVALS), rows)
    scorer.start()
    for i in range(200):
        scorer.offer(call_row(i))  # never raises, whatever the evaluators do
    scorer.stop()
    scores = [r for t, r in rows.rows if t == "scores"]
    assert len(scores) == 20 and {s["evaluator"] for s in scores} == {"answered"}
    assert scores[0]["id"] == f"{scores[0]['call_id']}:answered" and scores[0]["label"] == "pass"
    assert scorer.status() == {"scoring_queued": 0, "scoring_done": 20, "scoring_dropped": 0,
                               "scoring_failed": 20, "scoring_skipped": 0}


@pytest.mark.parametrize("rule, row, picked", [
    ({"providers": ["anthropic"]}, {}, False),
    ({"models": ["gpt-4o*"]}, {}, True),
    ({"models": ["claude*"]}, {}, False),
    ({"customers": ["acme"]}, {}, True),
    ({"modes": ["passthrough"]}, {}, False),
    ({"metadata": {"env": "prod"}}, {}, True),
    ({"metadata": {"env": "dev"}}, {}, False),
    ({}, {"status": "error"}, False),
    ({"only_ok": False}, {"status": "error"}, True),
    ({}, {"metadata": json.dumps({"tapgate_eval": "judge"})}, False),  # the judge's own calls
])
def test_filters(rule, row, picked):
    rows = Rows()
    scorer = OnlineScorer(settings({"evaluators": {"a": {"kind": "length"}},
                                    "online": [{"evaluators": ["a"], **rule}]}), rows)
    scorer.start()
    scorer.offer(call_row(1, **row))
    scorer.stop()
    assert bool(rows.rows) is picked


def test_a_full_queue_drops_and_counts():
    scorer = OnlineScorer(settings({**EVALS, "queue_size": 2, "online": [{"evaluators": ["answered"]}]}), Rows())
    scorer.queue = queue.Queue(2)  # no thread taking from it: the third call finds it full
    for i in range(5):
        scorer.offer(call_row(i))
    assert (scorer.queued, scorer.dropped) == (2, 3)


def test_feedback_rows():
    row = feedback_row({"call_id": "abc", "value": True, "reason": "thumbs up"})
    assert (row["id"], row["value"], row["label"], row["source"]) == ("abc:feedback", 1.0, "pass", "feedback")
    assert feedback_row({"call_id": "abc", "label": "rude", "evaluator": "tone"})["id"] == "abc:tone"
    with pytest.raises(BadFeedback, match="value"):
        feedback_row({"call_id": "abc"})
    with pytest.raises(BadFeedback) as e:
        feedback_row({"call_id": "abc", "value": "lots"})
    assert e.value.param == "value"
