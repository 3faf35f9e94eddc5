"""Mid-stream failover as a fault table on the fake upstream and virtual clock: a stream cut, stalled or
ended early after its first bytes is continued by the next deployment of the plan, sent the partial answer
(an assistant prefill where the model takes one, else a continuation message); the client reads one
stream in its dialect with one final usage adding both attempts."""

from __future__ import annotations

import asyncio
import json
import random

import pytest
from fake_upstream import FakeUpstream, VirtualClock
from test_fault_table import CONFIG, KEYS, MSG, PRICES, ListSink

from core.config import RouterConfig
from core.continuation import CONTINUE, continuation_body, resumer
from core.dispatch import Dispatch, Timeouts
from core.relay import ChatRelay
from core.routing import Routes
from providers import FRONTS

OAI, CLAUDE, GEMINI = "openai/gpt-4o-mini", "anthropic/claude-sonnet-4-5", "gemini/gemini-2.5-flash"
PATHS = {OAI: "/chat/completions", CLAUDE: "/v1/messages", GEMINI: ":streamGenerateContent"}
CONFIG2 = {**CONFIG, "models": {
    **CONFIG["models"],
    "gemini-first": {"deployments": [{"provider": "gemini", "model": "gemini-2.5-flash"}], "fallback_models": [OAI]},
    "alone": {"deployments": [{"provider": "openai", "model": "gpt-4o-mini"}]}}}
FIRST = {OAI: "oai-first", CLAUDE: "claude-first", GEMINI: "gemini-first"}
NEXT = {OAI: CLAUDE, CLAUDE: GEMINI, GEMINI: OAI}


def run(fake: FakeUpstream, model: str, front: str, *, stall: float | None = 1.0, continuing: bool = True):
    """One streamed call relayed with continuation on; (attempts, outcome, sink, relay)."""
    clock, config = fake.clock, RouterConfig.model_validate(CONFIG2)
    routes = Routes(config, PRICES, env=KEYS)
    plan = routes.plan([model, *routes.fallbacks(model, None)], random.Random(0), now=0)
    body = {"model": model, "messages": MSG, "stream": True}
    attempts, sink, notes = [], ListSink(), []

    def prepare(target, chat=body):
        return target.endpoint.adapter.chat_request(chat, target.model, stream=True), False

    async def go():
        dispatch = Dispatch(fake, routes.cooling, clock, stats=routes.stats)
        send = dict(policy=config.retry, deadline=clock.now() + 20, timeouts=Timeouts(0.5, 0.5),
                    on_attempt=attempts.append)
        answer = await dispatch.send(plan, prepare, stream=True, **send)
        resume = resumer(dispatch, plan, prepare, body, prompt_chars=8, note=notes.append, **send)
        relay = ChatRelay(answer, FRONTS[front].stream(model, True), clock.now() + 20, clock=clock, stall=stall,
                          resume=resume if continuing else None)
        return await relay.run(sink, lambda: None, lambda o: None), relay

    outcome, relay = asyncio.run(go())
    return attempts, outcome, sink, relay, notes


def events(sink: ListSink) -> list[dict]:
    return [json.loads(line[6:]) for line in sink.data.decode().splitlines() if line.startswith("data: {")]


def text_and_usage(sink: ListSink, front: str) -> tuple[str, dict]:
    evs = events(sink)
    if front == "/v1/messages":
        text = "".join(e["delta"].get("text", "") for e in evs if e["type"] == "content_block_delta")
        usage = [e["usage"] for e in evs if e["type"] == "message_delta"][-1]
        return text, {"in": usage["input_tokens"], "out": usage["output_tokens"]}
    text = "".join(c["delta"].get("content") or "" for e in evs for c in e.get("choices", []))
    usage = [e["usage"] for e in evs if e.get("usage")][-1]
    return text, {"in": usage["prompt_tokens"], "out": usage["completion_tokens"]}


def whole_text(fake: FakeUpstream, model: str, front: str) -> tuple[str, dict]:
    """What `model` answers when nothing breaks, as the client would read it."""
    clean = FakeUpstream(VirtualClock())
    _, outcome, sink, _, _ = run(clean, model, front, continuing=False)
    assert outcome.status == "ok"
    return text_and_usage(sink, front)


FAULTS = {"cut": dict(fault="cut", chunk_delay=0.01), "stall": dict(stall_midway=5),
          "short": dict(fault="short")}


@pytest.mark.parametrize("front", ["/v1/chat/completions", "/v1/messages"], ids=["openai-client", "anthropic-client"])
@pytest.mark.parametrize("fault", list(FAULTS))
@pytest.mark.parametrize("broken", [OAI, CLAUDE, GEMINI])
def test_a_broken_stream_is_continued_by_the_next_deployment(broken, fault, front):
    fake = FakeUpstream(VirtualClock())
    fake.program(PATHS[broken], **FAULTS[fault])
    attempts, outcome, sink, relay, notes = run(fake, FIRST[broken], front)
    follower = NEXT[broken]
    assert [(a.target.name, a.failure) for a in attempts] == [(broken, None), (follower, None)]
    assert (outcome.status, outcome.error) == ("ok", None) and sink.eof
    assert len(relay.continued) == 1 and broken in relay.continued[0]
    assert notes and notes[0].startswith(f"continued on {follower} after {broken}: stream")
    # What the follower was sent: the client's prompt, the partial answer, and (without prefill) a nudge.
    sent = fake.sent[-1]
    full_first, first_usage = whole_text(fake, FIRST[broken], front)
    follower_text, follower_usage = whole_text(fake, FIRST[follower], front)
    text, usage = text_and_usage(sink, front)
    assert text.endswith(follower_text) and full_first.startswith(text[: len(text) - len(follower_text)])
    cut_at = len(text) - len(follower_text)
    assert 0 < cut_at < len(full_first)
    partial = text[:cut_at]
    request = json.dumps(sent.request.body)
    assert json.dumps(partial.rstrip())[1:-1] in request  # the partial answer went to the follower
    if follower == CLAUDE:  # Claude takes a prefill: the last message is the partial answer itself
        last = sent.request.body["messages"][-1]
        assert last["role"] == "assistant" and last["content"][0]["text"] == partial.rstrip()
        assert CONTINUE not in request
    else:
        assert CONTINUE in request
    # One final usage adding both attempts: the follower's plus the broken one's estimate.
    assert usage["out"] == follower_usage["out"] + -(-len(partial) // 4)
    assert usage["in"] == follower_usage["in"] + 2  # the broken attempt's prompt: 8 characters
    evs = events(sink)
    if front == "/v1/messages":
        assert [e["type"] for e in evs].count("message_start") == 1 and evs[-1]["type"] == "message_stop"
    else:
        assert len({e["id"] for e in evs}) == 1 and sink.data.endswith(b"data: [DONE]\n\n")
        assert sum(1 for e in evs for c in e["choices"] if "role" in c["delta"]) <= 1


def test_without_a_next_deployment_the_break_is_told():
    fake = FakeUpstream(VirtualClock())
    fake.program("/chat/completions", fault="cut", chunk_delay=0.01)
    attempts, outcome, sink, relay, _ = run(fake, "alone", "/v1/chat/completions")
    assert len(attempts) == 1 and outcome.status == "upstream_error" and not relay.continued
    assert "stream broke" in events(sink)[-1]["error"]["message"]


def test_when_the_follower_fails_too_the_first_break_is_told():
    fake = FakeUpstream(VirtualClock())
    fake.program("/chat/completions", fault="cut", chunk_delay=0.01)
    fake.program("/v1/messages", times=3, status=500)
    attempts, outcome, sink, relay, _ = run(fake, "oai-first", "/v1/chat/completions")
    assert [a.target.name for a in attempts] == [OAI, *[CLAUDE] * 3]
    assert outcome.status == "upstream_error" and OAI in outcome.error and not relay.continued


def test_continuation_body_prefill_or_message():
    body = {"model": "m", "messages": MSG, "temperature": 0}
    assert continuation_body(body, "Hel ", prefill=True)["messages"] == [*MSG, {"role": "assistant", "content": "Hel"}]
    assert continuation_body(body, "Hel", prefill=False)["messages"][-1] == {"role": "user", "content": CONTINUE}
    assert body["messages"] == MSG  # the client's body is left as it was
