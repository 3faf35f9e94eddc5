"""The LLM judge end to end: a sampled call's question and answer go to a judge model through the
gateway's own router (the mock, told to answer as a judge would), its score, reason and cost land in
the scores table, and the judge's own call is recorded but never scored."""

from __future__ import annotations

import json
import shutil
import sys

import openai
import pytest
from harness import ROOT, Process, query, router_url, start_gateway, wait_rows

MASTER = "sk-tapgate-master-judge"
VERDICT = {"id": "chatcmpl-judge", "object": "chat.completion", "created": 1, "model": "gpt-4o-mini-2024-07-18",
           "choices": [{"index": 0, "message": {"role": "assistant", "content": '{"score": 4, "reason": "clear"}'},
                        "finish_reason": "stop"}],
           "usage": {"prompt_tokens": 120, "completion_tokens": 12, "total_tokens": 132}}


@pytest.fixture(scope="module")
def judged(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("judge")
    shutil.copytree(ROOT / "testdata" / "fixtures", tmp / "data" / "fixtures")
    (tmp / "data" / "fixtures" / "openai" / "judge_verdict.json").write_text(json.dumps(VERDICT))
    mock = Process.start([sys.executable, str(ROOT / "scripts" / "mock_provider.py"), "--port", "0",
                          "--data", str(tmp / "data")])
    port = int(mock.wait_for(r"MOCK_PORT=(\d+)").group(1))
    (tmp / "tapgate.yaml").write_text(f"""
router:
  master_key: {MASTER}
  providers:
    openai: {{base_url: "http://127.0.0.1:{port}/v1"}}
  models:
    judge:
      - {{provider: openai, model: gpt-4o-mini, base_url: "http://127.0.0.1:{port}/v1",
          headers: {{x-mock-fixture: openai/judge_verdict.json}}}}
evals:
  evaluators:
    helpful: {{kind: judge, model: judge, rubric: "Is the answer helpful?"}}
  online:
    - evaluators: [helpful]  # every call: the judge's own calls are left out by the scorer itself
""")
    gateway, _ = start_gateway(port, tmp / "conf", tmp / "t.db", "--set", f"tapgate_config={tmp / 'tapgate.yaml'}")
    yield gateway, tmp / "t.db"
    assert gateway.stop() == 0, "\n".join(gateway.lines[-30:])
    mock.stop()


def test_a_judged_call_gets_the_judges_score_reason_and_cost(judged, customer):
    gateway, db = judged
    c = openai.OpenAI(base_url=router_url(gateway), api_key=MASTER, max_retries=0)
    c.chat.completions.create(model="openai/gpt-4o-mini", messages=[{"role": "user", "content": "weather?"}],
                              extra_body={"customer_identifier": customer, "metadata": {"judge": "yes"}})
    call = wait_rows(db, "SELECT id FROM requests WHERE customer_identifier = ?", (customer,))[0]
    score = wait_rows(db, "SELECT * FROM scores WHERE call_id = ?", (call["id"],))[0]
    assert (score["evaluator"], score["value"], score["reason"], score["source"]) == ("helpful", 4.0, "clear", "online")
    judge = wait_rows(db, "SELECT * FROM requests WHERE json_extract(metadata, '$.tapgate_eval') = 'judge'")[0]
    assert judge["routed_to"] == "openai/gpt-4o-mini" and judge["cost_usd"] > 0
    assert score["judge_cost_usd"] == pytest.approx(judge["cost_usd"])  # the same price, from the same usage
    body = json.loads(judge["request_body"])
    assert "Is the answer helpful?" in body["messages"][0]["content"] and "weather?" in body["messages"][1]["content"]
    assert query(db, "SELECT count(*) AS n FROM scores WHERE call_id = ?", (judge["id"],))[0]["n"] == 0
