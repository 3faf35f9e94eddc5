"""The evaluators (core/evals/): each kind's verdicts, the judge's parsing and budget, Python callables,
and config errors that name the file, line and field."""

from __future__ import annotations

import json

import pytest

from core.config import ConfigError, load_config
from core.evals.config import EvalsConfig
from core.evals.judge import JudgeBudget, parse_verdict
from core.evals.registry import Evaluators
from core.evals.score import EvaluatorError, Score
from core.evals.subject import Subject, split_tools


def evaluators(judge=None, budget=None, **specs) -> Evaluators:
    return Evaluators(EvalsConfig.model_validate({"evaluators": specs}), judge, budget)


def verdict(spec: dict, **subject) -> Score | None:
    return evaluators(e=spec).run("e", Subject(**subject))


def row(answer: str, tools=()) -> dict:
    message = {"role": "assistant", "content": answer}
    if tools:
        message["tool_calls"] = [{"id": f"c{i}", "type": "function", "function": {"name": n, "arguments": "{}"}}
                                 for i, n in enumerate(tools)]
    return {"request_body": json.dumps({"messages": [{"role": "user", "content": "what is 2+2?"}]}),
            "response_body": json.dumps({"choices": [{"message": message}]}), "duration_ms": 120.0,
            "cost_usd": 0.002, "status": "ok"}


def test_a_subject_reads_question_answer_and_tool_calls_from_a_row():
    s = Subject.from_row(row("four", tools=["lookup", "add"]))
    assert (s.question, s.answer, s.tool_calls, s.duration_ms) == ("what is 2+2?", "four", ["lookup", "add"], 120.0)
    assert split_tools("hi\n→ f({})") == ("hi", ["f"])


@pytest.mark.parametrize("spec, answer, value", [
    ({"kind": "regex", "pattern": r"\b4\b"}, "it is 4.", 1.0),
    ({"kind": "regex", "pattern": r"^\d+$"}, "four", 0.0),
    ({"kind": "contains", "text": "Sorry"}, "sorry, no", 1.0),
    ({"kind": "contains", "text": "Sorry", "case_sensitive": True}, "sorry, no", 0.0),
    ({"kind": "contains", "text": "sorry", "negate": True}, "sorry, no", 0.0),
    ({"kind": "valid_json"}, '```json\n{"a": 1}\n```', 1.0),
    ({"kind": "valid_json"}, "{a: 1}", 0.0),
    ({"kind": "json_schema", "json_schema": {"type": "object", "required": ["a"]}}, '{"a": 1}', 1.0),
    ({"kind": "json_schema", "json_schema": {"type": "object", "required": ["a"]}}, '{"b": 1}', 0.0),
    ({"kind": "length", "min": 2, "max": 5}, "four", 1.0),
    ({"kind": "length", "max": 1, "unit": "words"}, "two words", 0.0),
])
def test_rule_evaluators_pass_and_fail(spec, answer, value):
    score = verdict(spec, answer=answer)
    assert score.value == value and score.label == ("pass" if value else "fail")


def test_schema_failures_say_where():
    score = verdict({"kind": "json_schema", "json_schema": {"properties": {"n": {"type": "integer"}}}}, answer='{"n": "x"}')
    assert score.value == 0.0 and score.reason.startswith("at n:")


def test_latency_cost_and_tool_call_rules():
    assert verdict({"kind": "latency", "max": 100}, duration_ms=150).value == 0.0
    assert verdict({"kind": "cost", "max": 0.01}, cost_usd=0.002).value == 1.0
    assert verdict({"kind": "cost", "max": 0.01}) is None  # no cost known: no score, not a pass
    assert verdict({"kind": "tool_call"}, tool_calls=["search"]).value == 1.0
    assert verdict({"kind": "tool_call", "name": "sea*"}, tool_calls=["lookup"]).value == 0.0
    assert verdict({"kind": "tool_call", "made": False}, tool_calls=[]).value == 1.0


def test_reference_evaluators_compare_with_the_expected_answer():
    assert verdict({"kind": "exact"}, answer="  Paris. ", expected="paris").value == 1.0
    assert verdict({"kind": "exact"}, answer="Lyon", expected="Paris").value == 0.0
    ratio = verdict({"kind": "similarity"}, answer="the cat sat", expected="the cat sat down").value
    assert 0.7 < ratio < 1.0
    assert verdict({"kind": "similarity", "threshold": 0.9}, answer="the cat sat", expected="the cat sat down").label == "fail"
    assert verdict({"kind": "exact"}, answer="Paris") is None  # no expected answer: no score


def test_the_judge_sends_the_rubric_and_parses_score_reason_and_cost():
    sent = []

    def judge(model, messages, max_tokens):
        sent.append((model, messages))
        return '```json\n{"score": 4, "reason": "correct but curt"}\n```', 0.0005

    budget = JudgeBudget(0.001)
    ev = evaluators(judge, budget, polite={"kind": "judge", "model": "judge-model", "rubric": "Be polite."})
    score = ev.run("polite", Subject(question="2+2?", answer="4"))
    assert score == Score(4.0, None, "correct but curt", 0.0005)
    assert sent[0][0] == "judge-model" and "Be polite." in sent[0][1][0]["content"] and "4" in sent[0][1][1]["content"]
    assert ev.run("polite", Subject(answer="4")).value == 4.0  # 0.001 spent: the cap is reached
    assert ev.run("polite", Subject(answer="4")) is None and ev.skipped == 1 and len(sent) == 2


def test_the_judges_budget_starts_again_each_day():
    day = ["2026-01-01"]
    budget = JudgeBudget(1.0, today=lambda: day[0])
    budget.add(1.0)
    with pytest.raises(EvaluatorError):
        budget.check()
    day[0] = "2026-01-02"
    budget.check()


@pytest.mark.parametrize("text, expected", [
    ('{"score": 3, "reason": "ok"}', (3.0, "ok")),
    ("Score: 5. Great answer.", (5.0, None)),
])
def test_judge_verdicts_parse(text, expected):
    assert parse_verdict(text, (1, 5)) == expected


@pytest.mark.parametrize("text", ["I like it", '{"score": 9}'])
def test_judge_verdicts_without_a_score_in_the_scale_give_none(text):
    with pytest.raises(EvaluatorError):
        parse_verdict(text, (1, 5))


def shouty(subject):
    return {"value": subject.answer.isupper(), "reason": "all caps"}


def crashes(subject):
    raise RuntimeError("a bug in the user's evaluator")


def test_python_evaluators_by_dotted_path_and_a_crash_gives_no_score():
    ev = evaluators(shout={"kind": "python", "function": "test_evals:shouty"},
                    crash={"kind": "python", "function": "test_evals.crashes"})
    assert ev.run("shout", Subject(answer="HI")) == Score(1.0, "pass", "all caps")
    assert ev.run("crash", Subject(answer="HI")) is None and ev.failed == 1


def test_a_python_evaluator_that_cannot_be_imported_is_a_config_error():
    with pytest.raises(ValueError, match="no_such_module"):
        evaluators(x={"kind": "python", "function": "no_such_module:f"})


def test_labels_and_bad_results():
    assert Score.of("rude") == Score(None, "rude")
    with pytest.raises(EvaluatorError):
        Score.of([1])


@pytest.mark.parametrize("yaml, where", [
    ("evals:\n  evaluators:\n    a:\n      kind: regex\n      pattern: '('\n", ":5: evals.evaluators.a.pattern"),
    ("evals:\n  evaluators:\n    a: {kind: nope}\n", ":3: evals.evaluators.a"),
    ("evals:\n  evaluators:\n    a: {kind: length}\n  online:\n    - evaluators: [a]\n      rate: 2\n",
     ":6: evals.online.0.rate"),
    ("evals:\n  online:\n    - evaluators: [missing]\n", ":1: evals: Value error, online[0] names evaluator 'missing'"),
    ("evals:\n  evaluators:\n    s:\n      kind: json_schema\n      json_schema: {type: 12}\n",
     ":5: evals.evaluators.s.json_schema"),
])
def test_config_errors_name_file_line_and_field(tmp_path, yaml, where):
    path = tmp_path / "tapgate.yaml"
    path.write_text(yaml)
    with pytest.raises(ConfigError) as e:
        load_config(path)
    assert str(e.value).startswith(f"{path}{where}"), str(e.value)
