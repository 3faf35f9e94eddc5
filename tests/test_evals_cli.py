"""`tapgate score`, `tapgate evals report`, and scores in `tapgate logs` and `tapgate trace`."""

from __future__ import annotations

import json

import pytest
from known_store import build

from cli.evals import mean_ci
from cli.main import main


@pytest.fixture
def store(tmp_path, monkeypatch):
    monkeypatch.setenv("COLUMNS", "200")
    path = tmp_path / "tapgate.db"
    return path, build(path)


def run(capsys, *argv) -> str:
    assert main(list(argv)) == 0
    return capsys.readouterr().out


def test_score_then_logs_trace_and_report_show_it(store, capsys):
    path, calls = store
    first, second = calls[0], calls[1]
    assert "feedback = pass" in run(capsys, "score", first["id"], "true", "--db", str(path), "--reason", "good")
    run(capsys, "score", second["id"], "0.5", "--db", str(path))
    run(capsys, "score", second["id"], "rude", "--evaluator", "tone", "--db", str(path))
    out = json.loads(next(line for line in run(capsys, "logs", "--json", "--db", str(path)).splitlines()
                          if json.loads(line)["id"] == first["id"]))
    assert [(s["evaluator"], s["value"], s["label"], s["reason"]) for s in out["scores"]] == [
        ("feedback", 1.0, "pass", "good")]
    assert "feedback=pass" in run(capsys, "logs", "--db", str(path))
    assert "feedback=pass" in run(capsys, "trace", first["id"], "--db", str(path))
    lines = [json.loads(x) for x in run(capsys, "evals", "report", "--by", "evaluator", "--json", "--db",
                                        str(path)).splitlines()]
    feedback = next(x for x in lines if x["evaluator"] == "feedback")
    assert (feedback["scores"], feedback["mean"], feedback["pass_rate"]) == (2, 0.75, 1.0)
    assert next(x for x in lines if x["evaluator"] == "tone")["labels"] == {"rude": 1}
    assert "mean ± 95% CI" in run(capsys, "evals", "report", "--by", "customer", "--db", str(path))


def test_score_refuses_an_unknown_call(store, capsys):
    path, _ = store
    assert main(["score", "nope", "1", "--db", str(path)]) == 1
    assert "no call 'nope'" in capsys.readouterr().err


def test_report_refuses_an_unknown_group(store, capsys):
    path, _ = store
    assert main(["evals", "report", "--by", "colour", "--db", str(path)]) == 1
    assert "cannot group by 'colour'" in capsys.readouterr().err


def test_mean_and_interval():
    assert mean_ci([]) == (None, None) and mean_ci([3.0]) == (3.0, None)
    mean, ci = mean_ci([0.0, 1.0] * 50)
    assert mean == 0.5 and ci == pytest.approx(1.959964 * 0.50252 / 10, rel=1e-3)


def test_the_writer_line_shows_the_scoring_backlog():
    from cli.views import writer_line

    status = {"pending_records": 0, "pending_bytes": 0, "committed_per_s": 5.0, "scoring_queued": 12,
              "scoring_done": 340, "scoring_dropped": 0, "scoring_failed": 3}
    line = writer_line(status).plain
    assert "scoring 12 queued, 340 done" in line and "3 evaluator failures" in line and "dropped" not in line
    assert "scoring" not in writer_line({**status, "scoring_queued": 0, "scoring_done": 0}).plain
