"""The `tapgate` commands over the store, on a store of known calls: what each prints, in each format."""

import csv
import io
import json
import subprocess
import sys

import pytest
from known_store import CALLER, TRACE, build

from cli.main import main
from core.schema import open_db


@pytest.fixture
def store(tmp_path, monkeypatch):
    monkeypatch.setenv("COLUMNS", "200")  # rich lays tables out for this width when stdout is not a terminal
    path = tmp_path / "tapgate.db"
    return path, build(path)


def run(capsys, *argv) -> str:
    assert main(list(argv)) == 0
    return capsys.readouterr().out


def jsonl(text: str) -> list[dict]:
    return [json.loads(line) for line in text.splitlines()]


def test_logs_lists_newest_first_as_a_table(store, capsys):
    path, calls = store
    out = run(capsys, "logs", "--db", str(path))
    ids = [c["id"] for c in calls]
    positions = [out.index(i) for i in reversed(ids)]
    assert positions == sorted(positions), "newest first"
    assert "5 calls, newest first" in out
    assert "429 error" in out and "$?" in out and "acme" in out
    one = run(capsys, "logs", "--db", str(path), "--limit", "1")
    assert "1 call, newest first" in one


def test_logs_json_lines_and_csv(store, capsys):
    path, calls = store
    rows = jsonl(run(capsys, "logs", "--db", str(path), "--json"))
    assert [r["id"] for r in rows] == [c["id"] for c in reversed(calls)]
    assert rows[-2]["metadata"] == {"team": "search", "tier": 2}  # decoded, not a string
    assert "request_body" not in rows[0]
    with_bodies = jsonl(run(capsys, "logs", "--db", str(path), "--json", "--bodies", "--limit", "1"))
    assert len(with_bodies) == 1 and "response_body" in with_bodies[0]

    table = list(csv.DictReader(io.StringIO(run(capsys, "logs", "--db", str(path), "--csv"))))
    assert table[0]["id"] == calls[-1]["id"] and len(table) == 5
    assert json.loads(table[-2]["metadata"])["tier"] == 2


@pytest.mark.parametrize("flags, expected", [
    (["--provider", "anthropic"], "c"),
    (["--model", "gpt-4o-2024-08-06"], "ba"),  # the answering model matches too
    (["--status", "error"], "d"),
    (["--status", "429"], "d"),
    (["--customer", "globex"], "ed"),
    (["--thread", "t1"], "cb"),
    (["--meta", "team=search"], "ba"),
    (["--meta", "team=search", "--meta", "tier=2"], "b"),  # a JSON number matches its text
    (["--meta", "team=nobody"], ""),
    (["--grep", "NEEDLE"], "d"),  # in the request body, case-insensitive
    (["--grep", "Paris"], "c"),  # in the response body
    (["--grep", "100%"], ""),  # % is literal, not a wildcard
    (["--since", "1d"], "edcb"),
    (["--since", "5m", "--until", "90s"], "dc"),
    (["--mode", "passthrough", "--limit", "2"], "ed"),
])
def test_logs_filters(store, capsys, flags, expected):
    path, _ = store
    rows = jsonl(run(capsys, "logs", "--db", str(path), "--json", *flags))
    assert "".join(r["id"][0] for r in rows) == expected


def test_logs_rejects_a_bad_time_or_meta(store, capsys):
    path, _ = store
    assert main(["logs", "--db", str(path), "--since", "yesterday"]) == 1
    assert "not a time: 'yesterday'" in capsys.readouterr().err
    assert main(["logs", "--db", str(path), "--meta", "team"]) == 1
    assert "--meta takes key=value" in capsys.readouterr().err


def test_a_missing_store_is_a_clear_error(tmp_path, capsys):
    assert main(["logs", "--db", str(tmp_path / "none.db")]) == 1
    assert "no store at" in capsys.readouterr().err
    assert not (tmp_path / "none.db").exists()  # read-only: never creates a file
    (tmp_path / "notes.txt").write_text("not a database")
    assert main(["spend", "--db", str(tmp_path / "notes.txt")]) == 1
    assert f"cannot read {tmp_path / 'notes.txt'}: file is not a database" in capsys.readouterr().err


def test_trace_shows_the_span_tree_by_trace_or_request_id(store, capsys):
    path, calls = store
    by_trace = run(capsys, "trace", "--db", str(path), TRACE)
    assert run(capsys, "trace", "--db", str(path), calls[2]["id"]) == by_trace
    assert run(capsys, "trace", "--db", str(path), "cccccccc") == by_trace  # a prefix of the request id
    lines = by_trace.splitlines()
    assert lines[0].startswith(f"trace {TRACE}")
    assert f"caller span {CALLER}" in lines[1]
    root = next(i for i, line in enumerate(lines) if "passthrough anthropic messages" in line)
    assert "400 ms" in lines[root] and "ok" in lines[root]
    assert "+6m00s" in lines[root + 1]  # after the first call of the trace
    assert "claude-sonnet-4-5-20250929" in lines[root + 1] and "$0.020000" in lines[root + 1]
    assert "upstream api.anthropic.com" in lines[root + 2]
    assert lines[root + 2].index("upstream") > lines[root].index("passthrough")  # nested under its call
    assert "HTTP 200" in lines[root + 3] and "ttft 50 ms" in lines[root + 3]
    assert sum("passthrough" in line for line in lines) == 2  # both calls of the trace


def test_trace_of_an_unknown_id_fails(store, capsys):
    path, _ = store
    assert main(["trace", "--db", str(path), "deadbeef"]) == 1
    assert "no trace or request 'deadbeef'" in capsys.readouterr().err


def test_thread_shows_turns_with_cost(store, capsys):
    path, _ = store
    out = run(capsys, "thread", "--db", str(path), "t1")
    assert out.index("turn 1") < out.index("What is the capital of the UK?") < out.index("London.")
    assert out.index("turn 2") < out.index("And of France?") < out.index("Paris.")
    assert "$0.010000" in out and "$0.020000" in out
    assert "total $0.0300" in out


def test_spend_by_each_group(store, capsys):
    path, _ = store
    rows = jsonl(run(capsys, "spend", "--db", str(path), "--by", "customer", "--json"))
    assert rows[0] == {"customer": "acme", "requests": 3, "input_tokens": 30, "output_tokens": 60,
                       "cost_usd": 1.03, "unpriced": 0, "cache_hits": 0, "saved_usd": None,
                       "shadow_cost_usd": None}
    assert rows[1]["customer"] == "globex" and rows[1]["cost_usd"] is None and rows[1]["unpriced"] == 1
    recent = jsonl(run(capsys, "spend", "--db", str(path), "--by", "customer", "--since", "1d", "--json"))
    assert recent[0]["cost_usd"] == pytest.approx(0.03)
    by_team = list(csv.DictReader(io.StringIO(run(capsys, "spend", "--db", str(path), "--by", "meta:team", "--csv"))))
    assert [(r["meta:team"], r["requests"]) for r in by_team] == [("search", "2"), ("", "2"), ("chat", "1")]
    table = run(capsys, "spend", "--db", str(path), "--by", "provider")
    assert "spend by provider" in table and "anthropic" in table and "$1.0300" in table  # the total
    assert main(["spend", "--db", str(path), "--by", "colour"]) == 1


def test_spend_counts_cache_hits_and_what_they_saved(store, capsys):
    path, calls = store
    db = open_db(path)
    hit = {**db["requests"].get(calls[0]["id"]), "id": "hit-1", "cache_hit": 1, "cost_usd": 0.0, "cost_saved_usd": 0.25}
    db["requests"].insert(hit)
    db.close()
    rows = jsonl(run(capsys, "spend", "--db", str(path), "--by", "customer", "--json"))
    mine = next(r for r in rows if r["customer"] == hit["customer_identifier"])
    assert (mine["cache_hits"], mine["saved_usd"]) == (1, pytest.approx(0.25))
    assert "cache hits" in run(capsys, "spend", "--db", str(path)) and "$0.2500" in run(capsys, "spend", "--db", str(path))


def test_export_nests_spans_oldest_first(store, capsys, tmp_path):
    path, calls = store
    rows = jsonl(run(capsys, "export", "--db", str(path)))
    assert [r["id"] for r in rows] == [c["id"] for c in calls]
    assert [s["name"] for s in rows[2]["spans"]] == ["passthrough anthropic messages", "upstream api.anthropic.com"]
    assert rows[2]["spans"][1]["attributes"]["ttft_ms"] == 50.0  # decoded
    assert rows[1]["request_body"] == calls[1]["request_body"]  # bodies as stored

    out = tmp_path / "out.jsonl"
    assert main(["export", "--db", str(path), "--since", "3m", "--out", str(out)]) == 0
    assert "exported 2 requests" in capsys.readouterr().err
    assert [json.loads(line)["id"][0] for line in out.read_text().splitlines()] == ["d", "e"]


def test_top_once_prints_one_frame(store, capsys):
    path, _ = store
    out = run(capsys, "top", "--db", str(path), "--once", "--window", "5")
    assert "calls 3 (5m)" in out  # c, d, e started in the last five minutes
    assert "errors 33.3%" in out
    assert "acme" in out and "globex" in out


def test_json_and_csv_print_floats_rounded(store, capsys):
    path, calls = store
    db = open_db(path)
    db["requests"].insert({**db["requests"].get(calls[-1]["id"]), "id": "f" * 32,
                           "started_at": "2999-01-01T00:00:00.000Z", "cost_usd": 0.1 + 0.2})
    db.close()
    assert '"cost_usd": 0.3,' in run(capsys, "logs", "--db", str(path), "--json", "--limit", "1")
    assert ",0.3," in run(capsys, "logs", "--db", str(path), "--csv", "--limit", "1")


NO_MITMPROXY = """
import pkgutil, sys
import cli
from cli.main import main
def loaded(*names):
    return sorted(name for name in sys.modules if name.split(".")[0] in names)
assert main(["logs", "--json", "--db", sys.argv[1]]) == 0
print(loaded("mitmproxy", "sqlite_utils", "pydantic"), file=sys.stderr)
for module in pkgutil.iter_modules(cli.__path__):
    __import__(f"cli.{module.name}")
assert main(["spend", "--db", sys.argv[1]]) == 0
assert main(["keys", "list", "--db", sys.argv[1]]) == 0
print(loaded("mitmproxy"), file=sys.stderr)
"""


def test_the_cli_never_imports_mitmproxy(store):
    """In a fresh interpreter: `tapgate logs --json` loads neither mitmproxy nor sqlite-utils nor
    pydantic (its start is short); every module of cli/ imported, and spend and keys list run,
    mitmproxy still stays out (only shell-init asks it to create its CA)."""
    path, _ = store
    done = subprocess.run([sys.executable, "-c", NO_MITMPROXY, str(path)], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stderr.strip().splitlines()[-2:] == ["[]", "[]"]
