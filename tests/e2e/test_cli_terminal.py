"""`tapgate logs`, `spend` and `keys list` in real terminals (tmux) at 80 and 200 columns, over a store
of known calls made through a real gateway: passthrough, a routed call that fell back, a cache hit,
a provider error and a refusal. At 80 columns ids are whole (or a prefix `tapgate trace` takes) and
costs are never cut; at 200 every column is there."""

from __future__ import annotations

import io
import json
import re
import socket
import ssl
import sys
from contextlib import redirect_stdout
from pathlib import Path

import openai
import pytest
from harness import query, router_url, start_gateway, wait_rows
from terminal import TMUX, Terminals

from cli.cells import cost_text
from cli.main import main
from cli.views import usd

pytestmark = pytest.mark.skipif(TMUX is None, reason="tmux is not installed (apt-get install tmux); "
                                                     "these tests read the commands from a real terminal")
TAPGATE = str(Path(sys.executable).parent / "tapgate")
MASTER = "sk-views-master"
MSG = [{"role": "user", "content": "hi"}]
CA = "mitmproxy-ca-cert.pem"
CUSTOMER = "customer-with-a-rather-long-name-0123456789"


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def config(mock: int) -> str:
    base = f"http://127.0.0.1:{mock}"
    return f"""
router:
  master_key: {MASTER}
  connect_timeout: 0.5
  retry: {{num_retries: 0}}
  providers:
    openai: {{base_url: "{base}/v1"}}
    anthropic: {{base_url: "{base}"}}
  models:
    falls-back:
      deployments: [{{provider: openai, model: gpt-4o-mini, base_url: "http://127.0.0.1:{closed_port()}/v1"}}]
      fallback_models: [anthropic/claude-sonnet-4-5]
"""


def made(db: Path, *argv: str) -> dict:
    with redirect_stdout(io.StringIO()) as printed:
        assert main(["keys", "create", "--db", str(db), "--json", *argv]) == 0
    return json.loads(printed.getvalue())


@pytest.fixture(scope="module")
def store(mock, tmp_path_factory, gateway):
    """A gateway of its own, the calls made, then stopped: the commands read a finished store."""
    tmp = tmp_path_factory.mktemp("views")
    (tmp / "tapgate.yaml").write_text(config(mock))
    db = tmp / "t.db"
    process, port = start_gateway(mock, tmp / "conf", db, "--set", f"tapgate_config={tmp / 'tapgate.yaml'}")
    try:
        keys = [made(db, "--name", "one call a day", "--budget", "1requests/day"),
                made(db, "--name", "a team with a long name for its key", "--budget", "100usd/month@50,80",
                     "--rpm", "600", "--models", "falls-back", "--models", "openai/*", "--meta", "team=search")]
        process.wait_for(r"tapgate: 2 gateway keys")
        keyed = {"X-Tapgate-Key": keys[0]["secret"]}
        routed = openai.OpenAI(base_url=router_url(process), api_key=keys[1]["secret"], max_retries=0,
                               default_headers={"X-Tapgate-Customer-Identifier": CUSTOMER})
        routed.chat.completions.create(model="falls-back", messages=MSG)
        for _ in range(2):
            routed.chat.completions.create(model="openai/gpt-4o-mini", messages=MSG, extra_body={"cache_enabled": True})
        passthrough = openai.OpenAI(api_key="sk-views", max_retries=0, http_client=openai.DefaultHttpxClient(
            proxy=f"http://127.0.0.1:{port}", verify=ssl.create_default_context(cafile=tmp / "conf" / CA)))
        passthrough.chat.completions.create(model="gpt-4o", messages=MSG, extra_headers=keyed)
        with pytest.raises(openai.RateLimitError):  # over the key's one call a day
            passthrough.chat.completions.create(model="gpt-4o", messages=MSG, extra_headers=keyed)
        with pytest.raises(openai.RateLimitError):  # the provider's 429
            passthrough.chat.completions.create(model="gpt-4o", messages=MSG, extra_headers={"x-mock-status": "429"})
        wait_rows(db, "SELECT id FROM requests", count=6)
    finally:
        assert process.stop() == 0, "\n".join(process.lines[-30:])
    return db, keys, query(db, "SELECT * FROM requests ORDER BY started_at")


@pytest.fixture
def terminals():
    t = Terminals()
    yield t
    t.close()


def shown(terminals: Terminals, name: str, argv: list[str], width: int) -> list[str]:
    """What a command prints in a terminal `width` columns wide (tall enough for all of it)."""
    pane = terminals.run(name, [TAPGATE, *argv], width, 60)
    terminals.wait(pane, lambda _: terminals.exit_status(pane) is not None)
    assert terminals.exit_status(pane) == 0
    lines = terminals.text(pane, history=True).splitlines()  # tmux scrolls a new pane's first line off
    return [line.rstrip() for line in lines[: lines.index(next(x for x in lines if x.startswith("[exited")))]]


def test_the_rows_are_the_ones_the_views_are_checked_on(store):
    _, keys, rows = store
    assert len(rows) == 6
    fell_back = next(r for r in rows if r["attempts"] == 2)
    assert fell_back["routed_to"] == "anthropic/claude-sonnet-4-5"
    assert [r["cache_hit"] for r in rows if r["model"] == "openai/gpt-4o-mini"] == [0, 1]
    assert sorted(r["status"] for r in rows) == ["error", "ok", "ok", "ok", "ok", "refused"]


def test_logs_at_80_columns_keeps_ids_usable_and_costs_whole(store, terminals, capsys):
    db, _, rows = store
    lines = shown(terminals, "logs80", ["logs", "--db", str(db)], 80)
    assert lines[0].startswith("6 calls, newest first") and max(map(len, lines)) <= 80, "\n".join(lines)
    for r in rows:
        (line,) = [x for x in lines if (m := re.match(r"([0-9a-f]{8,}) ", x)) and r["id"].startswith(m.group(1))]
        prefix = line.split()[0]
        if r["status"] == "refused":
            assert "$" not in line  # no cost, not `$?`
        else:
            assert cost_text(r) in line and "…" not in cost_text(r)
        assert main(["trace", "--db", str(db), prefix]) == 0  # the prefix is one `tapgate trace` takes
        assert capsys.readouterr().out.startswith(f"trace {r['trace_id']}")


def test_logs_at_200_columns_shows_every_column(store, terminals):
    db, _, rows = store
    lines = shown(terminals, "logs200", ["logs", "--db", str(db)], 200)
    header = lines[1].split()
    for column in ("id", "time", "provider", "model", "status", "routed", "attempts", "cache", "ms", "tokens", "cost",
                   "customer", "error"):
        assert column in header, column
    assert max(map(len, lines)) > 120  # the width is used
    by_id = {r["id"]: next(x for x in lines if x.startswith(r["id"] + " ")) for r in rows}  # whole ids
    fell_back = next(r for r in rows if r["attempts"] == 2)
    assert re.search(r"anthropic/claude-sonnet-4-5\s+2\s", by_id[fell_back["id"]])
    hit = next(r for r in rows if r["cache_hit"] == 1)
    assert " hit " in by_id[hit["id"]] and CUSTOMER[:20] in by_id[hit["id"]]
    failed = next(r for r in rows if r["status"] == "error")
    assert "429 error" in by_id[failed["id"]] and failed["error"][:11] in by_id[failed["id"]]


def test_logs_json_carries_the_router_and_cache_fields(store, capsys):
    db, _, rows = store
    assert main(["logs", "--db", str(db), "--json"]) == 0
    listed = {r["id"]: r for r in map(json.loads, capsys.readouterr().out.splitlines())}
    for r in rows:
        for field in ("routed_to", "attempts", "cache_hit", "cost_saved_usd", "host", "path"):
            assert listed[r["id"]][field] == r[field], field
    hit = next(r for r in rows if r["cache_hit"] == 1)
    assert listed[hit["id"]]["cost_saved_usd"] > 0 and listed[hit["id"]]["path"] == "/v1/chat/completions"


@pytest.mark.parametrize("width", [80, 200])
def test_spend_by_key_shows_whole_keys_and_costs(store, terminals, width):
    db, keys, rows = store
    lines = shown(terminals, f"spend{width}", ["spend", "--db", str(db), "--by", "key"], width)
    assert max(map(len, lines)) <= width
    for key in keys:
        mine = [r for r in rows if r["key_id"] == key["id"]]
        (line,) = [x for x in lines if x.startswith(key["id"] + " ")]
        assert usd(sum(r["cost_usd"] or 0 for r in mine)) in line
        assert re.search(rf"\s{len(mine)}\s", line)  # requests
    total = next(x for x in lines if x.startswith("total"))
    assert usd(sum(r["cost_usd"] or 0 for r in rows)) in total
    if width == 200:
        assert "cache hits" in lines[1] and "saved" in lines[1]


@pytest.mark.parametrize("width", [80, 140])
def test_keys_list_shows_whole_ids(store, terminals, width):
    db, keys, _ = store
    lines = shown(terminals, f"keys{width}", ["keys", "list", "--db", str(db)], width)
    assert lines[0].startswith("2 gateway keys") and max(map(len, lines)) <= width
    for key in keys:
        assert any(x.startswith(key["id"] + " ") for x in lines)
    assert any("100usd/month@50,80" in x for x in lines) and any("1requests/day" in x for x in lines)
    if width == 140:
        assert {"created", "models", "metadata"} <= set(lines[1].split())
        assert any("team=search" in x for x in lines)
