"""Online scoring through the real openai SDK, router and passthrough: a sampled tenth of the calls is
scored in the background, a crashing evaluator leaves the calls whole, and feedback joins the scores."""

from __future__ import annotations

import json
import os
import urllib.request

import anthropic
import openai
import pytest
from harness import query, router_url, start_gateway, wait_rows
from support import until

from cli.main import main

MASTER = "sk-tapgate-master-evals"
MSG = [{"role": "user", "content": "hi"}]
CHECKS = '''
def crash(subject):
    raise RuntimeError("a bug in the user's evaluator")
'''


def config(mock: int) -> str:
    return f"""
router:
  master_key: {MASTER}
  providers:
    openai: {{base_url: "http://127.0.0.1:{mock}/v1"}}
    anthropic: {{base_url: "http://127.0.0.1:{mock}"}}
evals:
  evaluators:
    answered: {{kind: regex, pattern: '\\w'}}
    crash: {{kind: python, function: "evalchecks:crash"}}
  online:
    - evaluators: [answered, crash]
      rate: 0.1
"""


@pytest.fixture(scope="module")
def gw(mock, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("evals")
    (tmp / "tapgate.yaml").write_text(config(mock))
    (tmp / "evalchecks.py").write_text(CHECKS)
    for n, model in enumerate(("gpt-4o-mini", "gpt-4o")):
        (tmp / f"greet{n}.yaml").write_text(f"model: openai/{model}\nmessages:\n"
                                            "  - {role: user, content: 'Say hi to {{name}}, version %d'}\n" % (n + 1))
        assert main(["prompts", "push", "greet", str(tmp / f"greet{n}.yaml"), "--db", str(tmp / "t.db")]) == 0
    before = os.environ.get("PYTHONPATH")
    os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, (str(tmp), before)))
    try:
        process, port = start_gateway(mock, tmp / "conf", tmp / "t.db", "--set", f"tapgate_config={tmp / 'tapgate.yaml'}")
    finally:
        os.environ.pop("PYTHONPATH") if before is None else os.environ.__setitem__("PYTHONPATH", before)
    yield process, port, tmp
    assert process.stop() == 0, "\n".join(process.lines[-30:])


def test_a_tenth_of_both_doors_calls_is_scored_and_a_crashing_evaluator_leaves_them_whole(gw, customer, monkeypatch):
    process, port, tmp = gw
    routed = openai.OpenAI(base_url=router_url(process), api_key=MASTER, max_retries=0)
    for _ in range(100):
        reply = routed.chat.completions.create(model="openai/gpt-4o-mini", messages=MSG,
                                               extra_body={"customer_identifier": customer})
        assert reply.choices[0].message.content  # the crashing evaluator never reaches the caller
    monkeypatch.setenv("HTTPS_PROXY", f"http://127.0.0.1:{port}")
    monkeypatch.setenv("SSL_CERT_FILE", str(tmp / "conf" / "mitmproxy-ca-cert.pem"))
    direct = openai.OpenAI(api_key="sk-test-passthrough", max_retries=0,
                           default_headers={"X-Tapgate-Customer-Identifier": customer})
    for _ in range(50):
        assert direct.chat.completions.create(model="gpt-4o-mini", messages=MSG).choices[0].message.content
    db = tmp / "t.db"
    calls = wait_rows(db, "SELECT id, mode, status FROM requests WHERE customer_identifier = ?", (customer,), 150)
    assert {c["status"] for c in calls} == {"ok"} and {c["mode"] for c in calls} == {"router", "passthrough"}
    scores = wait_rows(db, "SELECT s.*, r.mode FROM scores s JOIN requests r ON r.id = s.call_id "
                           "WHERE r.customer_identifier = ?", (customer,), 15)
    assert 13 <= len(scores) <= 17  # 10% of 150, within 2 points
    assert {s["evaluator"] for s in scores} == {"answered"} and {s["label"] for s in scores} == {"pass"}
    assert {s["mode"] for s in scores} == {"router", "passthrough"}
    process.wait_for(r"evaluator crash raised")


def test_feedback_on_the_router_port_joins_the_scores(gw, customer):
    process, _, tmp = gw
    base = router_url(process)
    c = openai.OpenAI(base_url=base, api_key=MASTER, max_retries=0)
    reply = c.chat.completions.with_raw_response.create(model="openai/gpt-4o-mini", messages=MSG,
                                                        extra_body={"customer_identifier": customer})
    reply.parse()
    call = wait_rows(tmp / "t.db", "SELECT id FROM requests WHERE customer_identifier = ?", (customer,))[0]

    def post(body: dict, key: str = MASTER) -> tuple[int, dict]:
        req = urllib.request.Request(f"{base}/feedback", json.dumps(body).encode(), method="POST",
                                     headers={"authorization": f"Bearer {key}", "content-type": "application/json"})
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        try:
            with opener.open(req, timeout=10) as r:
                return r.status, json.loads(r.read())
        except urllib.error.HTTPError as e:
            return e.code, json.loads(e.read())

    assert post({"call_id": call["id"], "value": False, "reason": "wrong"})[0] == 200
    status, error = post({"call_id": call["id"]})
    assert status == 400 and error["error"]["param"] == "value"  # OpenAI's error shape, naming the field
    assert post({"call_id": call["id"], "value": 1}, key="sk-wrong")[0] == 401
    row = wait_rows(tmp / "t.db", "SELECT * FROM scores WHERE call_id = ?", (call["id"],))[0]
    assert (row["evaluator"], row["value"], row["label"], row["reason"], row["source"]) == (
        "feedback", 0.0, "fail", "wrong", "feedback")
    assert query(tmp / "t.db", "SELECT count(*) AS n FROM scores WHERE call_id = ?", (call["id"],))[0]["n"] == 1


def test_a_prompt_is_rendered_before_routing_and_the_row_carries_its_version(gw, customer):
    process, _, tmp = gw
    db = tmp / "t.db"
    c = openai.OpenAI(base_url=router_url(process), api_key=MASTER, max_retries=0)

    def ask(**prompt) -> dict:
        c.chat.completions.create(model="", messages=[], extra_body={
            "customer_identifier": customer, "prompt": {"prompt_id": "greet", "variables": {"name": "Ann"}, **prompt}})
        return query(db, "SELECT * FROM requests WHERE customer_identifier = ? ORDER BY started_at DESC", (customer,))

    ask()
    row = wait_rows(db, "SELECT * FROM requests WHERE customer_identifier = ?", (customer,))[0]
    assert (row["prompt_id"], row["prompt_version"], row["model"]) == ("greet", 2, "openai/gpt-4o")  # the newest
    assert json.loads(row["request_body"])["messages"] == [{"role": "user", "content": "Say hi to Ann, version 2"}]
    assert main(["prompts", "label", "greet", "1", "production", "--db", str(db)]) == 0

    def labelled():
        ask()
        rows = wait_rows(db, "SELECT * FROM requests WHERE customer_identifier = ? ORDER BY started_at DESC",
                         (customer,))
        return rows[0]["prompt_version"] == 1 and rows[0]

    assert until(labelled, what="the router to use the production label")["model"] == "openai/gpt-4o-mini"
    with pytest.raises(openai.BadRequestError) as e:
        c.chat.completions.create(model="", messages=[], extra_body={"prompt": {"prompt_id": "greet", "version": 1}})
    assert e.value.status_code == 400 and e.value.body["param"] == "prompt.variables.name"
    assert "'name'" in e.value.body["message"]
    claude = anthropic.Anthropic(base_url=router_url(process).removesuffix("/v1"), api_key=MASTER, max_retries=0)
    with pytest.raises(anthropic.BadRequestError) as e:  # the same 400 in Anthropic's own shape
        claude.messages.create(model="x", max_tokens=10, messages=[], extra_body={"prompt": {"prompt_id": "greet"}})
    assert e.value.body["type"] == "error" and "'name'" in e.value.body["error"]["message"]


def test_an_experiment_over_two_candidates_prints_the_table_with_the_right_counts(gw, customer, capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", "200")
    process, _, tmp = gw
    db, base = str(tmp / "t.db"), router_url(process)
    c = openai.OpenAI(base_url=base, api_key=MASTER, max_retries=0)
    for n in range(6):
        c.chat.completions.create(model="openai/gpt-4o-mini", messages=[{"role": "user", "content": f"q{n}"}],
                                  extra_body={"customer_identifier": customer})
    wait_rows(tmp / "t.db", "SELECT id FROM requests WHERE customer_identifier = ?", (customer,), 6)
    assert main(["dataset", "create", customer, "--from-logs", "--customer", customer, "--db", db]) == 0
    capsys.readouterr()
    models = ["openai/gpt-4o-mini", "anthropic/claude-sonnet-4-5"]
    run = ["eval", "run", customer, "--model", models[0], "--model", models[1], "--router", base, "--key", MASTER,
           "--concurrency", "4", "--db", db]
    assert main([*run, "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    lines = {line["candidate"]: line for line in out["candidates"]}
    assert [(lines[m]["rows"], lines[m]["errors"]) for m in models] == [(6, 0), (6, 0)]
    # the mock answers every OpenAI call alike (as recorded) and every Anthropic call otherwise
    assert (lines[models[0]]["differ"], lines[models[1]]["differ"]) == (0, 6)
    assert lines[models[0]]["scores"]["similarity"]["mean"] == 1.0 > lines[models[1]]["scores"]["similarity"]["mean"]
    assert len(out["results"]) == 12 and lines[models[0]]["p95_ms"] >= lines[models[0]]["p50_ms"] > 0
    ids = [r["id"] for r in wait_rows(tmp / "t.db", "SELECT id FROM requests WHERE json_extract(metadata, "
                                                    "'$.experiment') = ?", (out["experiment"],), 12)]
    marks = ",".join("?" * len(ids))  # recorded like any call, never scored online (the 10% rule would pick one)
    assert query(tmp / "t.db", f"SELECT count(*) AS n FROM scores WHERE call_id IN ({marks}) AND source = 'online'",
                 tuple(ids))[0]["n"] == 0
    stored = query(tmp / "t.db", f"SELECT s.value, json_extract(r.metadata, '$.candidate') AS candidate FROM scores s"
                                 f" JOIN requests r ON r.id = s.call_id WHERE s.source = 'experiment' AND s.call_id IN ({marks})",
                   tuple(ids))
    assert len(stored) == 12 and {s["value"] for s in stored if s["candidate"] == models[0]} == {1.0}
    report = tmp / "report.svg"
    assert main([*run, "--report", str(report)]) == 0
    table = capsys.readouterr().out
    assert "similarity (mean ± 95% CI)" in table and "6/6" in table and "<svg" in report.read_text()
