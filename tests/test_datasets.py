"""`tapgate dataset`: from the logs (input, answer, tags), JSONL export and import round trip, expected answers."""

from __future__ import annotations

import json

import pytest
from known_store import build

from cli.main import main


@pytest.fixture
def store(tmp_path):
    path = tmp_path / "tapgate.db"
    return path, build(path)


def test_create_from_logs_export_and_import_round_trip(store, tmp_path, capsys):
    path, calls = store
    db = str(path)
    with_bodies = [c for c in calls if c["request_body"] and c["status"] == "ok"]
    assert main(["dataset", "create", "all", "--from-logs", "--expect-recorded", "--db", db]) == 0
    assert f"{len(with_bodies)} row" in capsys.readouterr().out
    out = tmp_path / "all.jsonl"
    assert main(["dataset", "export", "all", "--out", str(out), "--db", db]) == 0
    lines = [json.loads(x) for x in out.read_text().splitlines()]
    assert [x["call_id"] for x in lines] == [c["id"] for c in sorted(with_bodies, key=lambda c: (c["started_at"], c["id"]))]
    assert all(isinstance(x["request_body"], (dict, str)) and x["expected"] is not None for x in lines)
    first = lines[0]
    assert first["tags"].get("customer") == next(c for c in calls if c["id"] == first["call_id"])["customer_identifier"]
    lines[0]["expected"] = "a better answer"
    edited = tmp_path / "edited.jsonl"
    edited.write_text("".join(json.dumps(x) + "\n" for x in lines))
    assert main(["dataset", "import", "edited", str(edited), "--db", db]) == 0
    capsys.readouterr()
    assert main(["dataset", "export", "edited", "--db", db]) == 0
    again = [json.loads(x) for x in capsys.readouterr().out.splitlines()]
    assert again == lines
    assert main(["dataset", "list", "--db", db]) == 0
    assert "edited" in capsys.readouterr().out


def test_create_refuses_no_match_a_taken_name_and_bad_lines(store, tmp_path, capsys):
    path, _ = store
    db = str(path)
    assert main(["dataset", "create", "none", "--from-logs", "--customer", "nobody", "--db", db]) == 1
    assert "no recorded call" in capsys.readouterr().err
    assert main(["dataset", "create", "x", "--from-logs", "--db", db]) == 0
    assert main(["dataset", "create", "x", "--from-logs", "--db", db]) == 1
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"request_body": {"messages": []}}\n{"response_body": "x"}\n')
    assert main(["dataset", "import", "y", str(bad), "--db", db]) == 1
    assert "bad.jsonl:2: each line needs a request_body" in capsys.readouterr().err
