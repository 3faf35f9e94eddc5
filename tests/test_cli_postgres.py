"""Every `tapgate` command on PostgreSQL prints what it prints on SQLite: one known store written to
both (tests/known_store.py), each command run against each, outputs compared."""

import json
import re
import socket
from contextlib import closing
from datetime import UTC, datetime

import pytest
from known_store import at, build, copy_to_postgres, request
from services import fresh_database

from cli.main import main
from core import database
from core.schema import open_db


@pytest.fixture(scope="module")
def stores(tmp_path_factory):
    """(the SQLite file, the PostgreSQL URL) holding the same calls and spans."""
    path = tmp_path_factory.mktemp("store") / "tapgate.db"
    now = datetime.now(UTC)
    build(path, now)
    more = [  # an A/B experiment's calls, and a shadow call of call b
        request(id="1" * 32, started_at=at(now, minutes=3), experiment="tone", variant="a", cost_usd=0.004,
                duration_ms=120.0, routed_to="openai/gpt-4o"),
        request(id="2" * 32, started_at=at(now, minutes=3), experiment="tone", variant="b", cost_usd=0.002,
                duration_ms=90.0, status="error", status_code=500, routed_to="openai/gpt-4o-mini"),
        request(id="3" * 32, started_at=at(now, minutes=9), mode="shadow", model="gpt-4o-mini", cost_usd=0.001,
                routed_to="openai/gpt-4o-mini", metadata=json.dumps({"shadow": "mini", "shadow_of": "b" * 32}),
                response_body=json.dumps({"choices": [{"message": {"content": "London!"}}]})),
    ]
    with closing(open_db(path)) as db:
        db["requests"].insert_all(more)
    with fresh_database() as url:
        copy_to_postgres(path, url)
        yield str(path), url


def run(capsys, *argv) -> tuple[int, str, str]:
    code = main(list(argv))
    out = capsys.readouterr()
    return code, out.out, out.err


def both(stores, capsys, *argv, same=lambda text: text) -> str:
    """The command's output on SQLite, asserted the same on PostgreSQL (the store's name aside)."""
    sqlite, postgres = stores
    code, expected, err = run(capsys, *argv, "--db", sqlite)
    assert code == 0, err
    code, got, err = run(capsys, *argv, "--db", postgres)
    assert code == 0, err
    assert same(got.replace(postgres, sqlite)) == same(expected)
    return expected


COMMANDS = [
    ["logs"], ["logs", "--json"], ["logs", "--csv"], ["logs", "--json", "--bodies"],
    ["logs", "--json", "--provider", "anthropic"], ["logs", "--json", "--model", "gpt-4o-2024-08-06"],
    ["logs", "--json", "--status", "429"], ["logs", "--json", "--status", "error"],
    ["logs", "--json", "--meta", "team=search"], ["logs", "--json", "--meta", "tier=2"],
    ["logs", "--json", "--grep", "NEEDLE"], ["logs", "--json", "--grep", "100%"],
    ["logs", "--json", "--since", "1d"], ["logs", "--json", "--since", "5m", "--until", "90s"],
    ["logs", "--json", "--thread", "t1", "--limit", "1"],
    ["trace", "bbbbbbbb"], ["trace", "7ace7ace7ace7ace7ace7ace7ace7ace"], ["thread", "t1"], ["thread", "t1", "--full"],
    *[["spend", "--by", by, *fmt] for by in ("key", "customer", "model", "provider", "thread", "meta:team")
      for fmt in ([], ["--json"], ["--csv"])],
    ["spend", "--by", "customer", "--since", "1d", "--json"], ["spend", "--by", "variant", "--json"],
    ["spend", "--by", "client"], ["export"], ["export", "--since", "1d"],
    ["evals", "report"], ["evals", "report", "--json"],
    ["compare", "variants"], ["compare", "variants", "--json"], ["compare", "variants", "--experiment", "tone"],
    ["compare", "shadow"], ["compare", "shadow", "--json"], ["compare", "shadow", "--shadow", "mini"],
    ["spend", "--by", "variant"], ["logs", "--json", "--mode", "shadow"],
    # a number in the metadata groups as a number on both (JSON 2, not "2")
    ["spend", "--by", "meta:tier", "--json"], ["evals", "report", "--by", "meta:tier", "--json"],
]


@pytest.mark.parametrize("argv", COMMANDS, ids=" ".join)
def test_each_command_prints_the_same_on_both_stores(stores, capsys, monkeypatch, argv):
    monkeypatch.setenv("COLUMNS", "200")
    both(stores, capsys, *argv)


def test_errors_are_the_same_on_both_stores(stores, capsys):
    for argv in (["trace", "ffffffffff"], ["thread", "nobody"], ["spend", "--by", "colour"]):
        outcomes = [run(capsys, *argv, "--db", db) for db in stores]
        assert outcomes[0] == outcomes[1] and outcomes[0][0] == 1


def test_top_once_draws_the_same_frame(stores, capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", "160")
    # the header names the store, shortened to fit, and the time of day: the only differences
    out = both(stores, capsys, "top", "--once", "--window", "60",
               same=lambda text: re.sub(r"(/tmp|postgresql:)\S*|\d\d:\d\d:\d\d UTC", "", text))
    assert "globex" in out


def test_scores_datasets_and_prompts_edit_postgresql(stores, capsys, tmp_path):
    """Edits (a score, a dataset, a prompt and its label) land in the store named, and read back the same."""
    prompt = tmp_path / "p.json"
    prompt.write_text(json.dumps({"model": "gpt-4o", "messages": [{"role": "user", "content": "Hi {{name}}"}]}))
    prompt2 = tmp_path / "p2.json"
    prompt2.write_text(json.dumps({"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "Hey {{name}}"}]}))
    for argv in (["score", "bbbbbbbb", "0.5", "--evaluator", "helpful"], ["score", "cccc", "pass"],
                 ["dataset", "create", "uk", "--from-logs", "--expect-recorded"], ["prompts", "push", "greet", str(prompt)],
                 ["prompts", "push", "greet", str(prompt2)], ["prompts", "label", "greet", "1", "production"]):
        both(stores, capsys, *argv)
    for argv in (["evals", "report", "--json"], ["evals", "report", "--by", "customer"], ["logs", "--json"],
                 ["dataset", "list"], ["dataset", "export", "uk"], ["prompts", "list"], ["prompts", "show", "greet"],
                 ["prompts", "show", "greet", "production"], ["prompts", "diff", "greet", "1", "2"],
                 ["evals", "report", "--by", "meta:tier", "--json"]):
        # each store was edited a moment apart: the seconds of an edit's time may differ
        both(stores, capsys, *argv, same=lambda text: re.sub(r"(T\d\d:\d\d:)\d\d", r"\1", text))
    assert "helpful" in both(stores, capsys, "evals", "report", "--by", "evaluator")


def test_keys_create_update_revoke_and_rotate_on_postgresql(stores, capsys):
    _, url = stores
    code, out, err = run(capsys, "keys", "create", "--name", "app", "--budget", "5usd/day", "--rpm", "60", "--json",
                         "--db", url)
    assert code == 0, err
    created = json.loads(out)
    code, out, _ = run(capsys, "keys", "list", "--json", "--db", url)
    listed = [json.loads(line) for line in out.splitlines()]
    assert [(k["id"], k["status"], k["budgets"]) for k in listed] == [(created["id"], "active", ["5usd/day"])]
    assert run(capsys, "keys", "update", created["id"], "--rpm", "120", "--db", url)[0] == 0
    code, out, _ = run(capsys, "keys", "rotate", created["id"], "--json", "--db", url)
    assert code == 0 and json.loads(out)["secret"] != created["secret"]
    assert run(capsys, "keys", "revoke", created["id"], "--db", url)[0] == 0
    code, out, _ = run(capsys, "keys", "list", "--json", "--db", url)
    key = json.loads(out)
    assert key["status"] == "revoked" and key["rate_limit"] == {"rpm": 120} and key["rotated_at"]
    code, _, err = run(capsys, "keys", "revoke", "key_00000000", "--db", url)
    assert code == 1 and "no key 'key_00000000'" in err
    with database.connect(url) as conn:  # the hash of the rotated secret, never the secret
        row = conn.execute("SELECT * FROM keys").fetchone()
    assert created["secret"] not in json.dumps(dict(row))


def test_tapgate_db_names_the_store_when_db_is_not_given(stores, capsys, monkeypatch):
    sqlite, url = stores
    monkeypatch.setenv("TAPGATE_DB", url)
    import importlib

    from cli import main as cli_main

    importlib.reload(cli_main)  # the parser reads the default when built
    try:
        code, out, err = run_with(cli_main, capsys, "logs", "--json", "--customer", "globex")
        assert code == 0, err
        assert [json.loads(line)["id"][0] for line in out.splitlines()] == ["e", "d"]
    finally:
        monkeypatch.delenv("TAPGATE_DB")
        importlib.reload(cli_main)


def run_with(module, capsys, *argv):
    code = module.main(list(argv))
    out = capsys.readouterr()
    return code, out.out, out.err


def test_an_unreachable_postgresql_is_one_line_without_the_password(capsys):
    with socket.socket() as s:  # a loopback port nothing listens on
        s.bind(("127.0.0.1", 0))
        unused_port = s.getsockname()[1]
    url = f"postgresql://tapgate:hunter2secret@127.0.0.1:{unused_port}/calls"
    for argv in (["logs"], ["keys", "list"], ["top", "--once"]):
        code, out, err = run(capsys, *argv, "--db", url)
        assert code == 1 and out == ""
        assert err.count("\n") == 1 and f"127.0.0.1:{unused_port}" in err, err
        assert "hunter2secret" not in err and "Traceback" not in err
