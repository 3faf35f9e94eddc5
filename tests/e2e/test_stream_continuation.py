"""Mid-stream failover end to end: the mock cuts or stalls an OpenAI, Anthropic or Gemini deployment's
stream halfway; the router re-asks the alias's fallback with the partial answer, and the official OpenAI
and Anthropic SDKs read one stream (the partial answer, then the rest) with usage adding both attempts."""

from __future__ import annotations

import json

import anthropic
import openai
import pytest
from harness import admin, configured_gateway, query, router_url, wait_rows

MASTER = "sk-tapgate-master-continue"
MSG = [{"role": "user", "content": "hi"}]
OAI, CLAUDE, GEMINI = "openai/gpt-4o-mini", "anthropic/claude-sonnet-4-5", "gemini/gemini-2.5-flash"
PATHS = {OAI: "/chat/completions", CLAUDE: "/v1/messages", GEMINI: ":streamGenerateContent"}
NEXT = {OAI: CLAUDE, CLAUDE: GEMINI, GEMINI: OAI}
# The broken deployment per client: another model of the same provider for the Anthropic client, so no
# deployment breaks 3 times in this file and is put last by the health rule (core/deployment_stats.py).
BROKEN = {("openai", OAI): ("openai", "gpt-4o-mini"), ("anthropic", OAI): ("openai", "gpt-4.1-mini"),
          ("openai", CLAUDE): ("anthropic", "claude-sonnet-4-5"), ("anthropic", CLAUDE): ("anthropic", "claude-haiku-4-5"),
          ("openai", GEMINI): ("gemini", "gemini-2.5-flash"), ("anthropic", GEMINI): ("gemini", "gemini-2.5-pro")}


def alias(client: str, broken: str) -> str:
    return f"c-{client}-{broken.split('/')[0]}"


def config(mock: int) -> str:
    base = f"http://127.0.0.1:{mock}"
    limits = "stream_timeouts: {stall: 0.5, continue_on_failure: true}"
    models = "\n".join(f"    {alias(client, broken)}: {{{limits}, deployments: [{{provider: {p}, model: {m}}}], "
                       f"fallback_models: [{NEXT[broken]}]}}" for (client, broken), (p, m) in BROKEN.items())
    return f"""
router:
  master_key_env: TG_CONT_MASTER
  connect_timeout: 0.5
  first_byte_timeout: 5
  timeout: 20
  retry: {{num_retries: 0}}
  providers:
    openai: {{base_url: "{base}/v1"}}
    anthropic: {{base_url: "{base}"}}
    gemini: {{base_url: "{base}"}}
  models:
{models}
"""


@pytest.fixture(scope="module")
def router(mock, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("continue")
    process, _ = configured_gateway(mock, tmp, config(mock), env={"TG_CONT_MASTER": MASTER})
    yield router_url(process), tmp / "t.db", process
    assert process.stop() == 0, "\n".join(process.lines[-30:])


@pytest.fixture(autouse=True)
def clean_mock(mock):
    admin(mock, "POST", "/_mock/reset")


def read(router, client: str, model: str, customer: str) -> tuple[str, int, int]:
    """(text, input tokens, output tokens) of one streamed call, as the SDK assembles it."""
    if client == "openai":
        c = openai.OpenAI(base_url=router[0], api_key=MASTER, max_retries=0)
        chunks = list(c.chat.completions.create(model=model, messages=MSG, stream=True,
                                                stream_options={"include_usage": True},
                                                extra_body={"customer_identifier": customer}))
        text = "".join(ch.choices[0].delta.content or "" for ch in chunks if ch.choices)
        (usage,) = [ch.usage for ch in chunks if ch.usage]
        assert len({ch.id for ch in chunks}) == 1  # one stream
        return text, usage.prompt_tokens, usage.completion_tokens
    c = anthropic.Anthropic(base_url=router[0].removesuffix("/v1"), api_key=MASTER, max_retries=0)
    with c.messages.stream(model=model, max_tokens=200, messages=MSG, extra_body={"customer_identifier": customer}) as s:
        message = s.get_final_message()
    assert message.stop_reason
    return "".join(b.text for b in message.content if b.type == "text"), message.usage.input_tokens, \
        message.usage.output_tokens


@pytest.mark.parametrize("client", ["openai", "anthropic"])
@pytest.mark.parametrize("fault", ["cut", "stall-midway:2000"], ids=["cut", "stall"])
@pytest.mark.parametrize("broken", [OAI, CLAUDE, GEMINI], ids=["openai", "anthropic", "gemini"])
def test_a_cut_or_stalled_stream_continues_on_the_fallback(router, mock, customer, broken, fault, client):
    follower = NEXT[broken]
    clean, clean_in, clean_out = read(router, client, follower, customer + "-clean")  # the fallback's own answer
    admin(mock, "POST", "/_mock/reset")
    admin(mock, "POST", "/_mock/program", {"path_contains": PATHS[broken], "times": 1, "fault": fault,
                                           **({"chunk_delay_ms": 5} if fault == "cut" else {})})
    text, tokens_in, tokens_out = read(router, client, alias(client, broken), customer)
    sent = admin(mock, "GET", "/_mock/requests")
    assert [PATHS[broken] in s["path"] for s in sent] == [True, False] and PATHS[follower] in sent[1]["path"]
    partial = text[: len(text) - len(clean)]
    assert text.endswith(clean) and partial.strip()  # the broken attempt's part, then the fallback's answer
    assert json.dumps(partial.rstrip())[1:-1] in sent[1]["body"]  # the fallback was given the partial answer
    assert tokens_out > clean_out and tokens_in > clean_in  # usage adds both attempts
    r = wait_rows(router[1], "SELECT * FROM requests WHERE customer_identifier = ?", (customer,))[0]
    assert (r["status"], r["routed_to"], r["attempts"]) == ("ok", follower, 2)
    (root,) = query(router[1], "SELECT attributes FROM spans WHERE span_id = ?", (r["span_id"],))
    broke = "/".join(BROKEN[client, broken])
    assert any(n.startswith(f"continued on {follower} after {broke}") for n in json.loads(root["attributes"])["notes"])
