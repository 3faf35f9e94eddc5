"""Stream limits on the fake upstream and virtual clock: a first-token timeout fails over before the client
sees anything; a stall, a cut or a clean end without the final event after the first byte ends the
client's stream with an error event in its own dialect, never as a silent success."""

from __future__ import annotations

import asyncio
import json
import math

import pytest
from fake_upstream import FakeUpstream, VirtualClock
from test_fault_table import BASE, CONFIG, KEYS, MSG, PRICES, ListSink

from core.config import RouterConfig, StreamTimeouts
from core.dispatch import Dispatch, Timeouts
from core.relay import ChatRelay, RawRelay
from core.route_plan import stream_limits
from core.routing import Routes
from providers import FRONTS, INNER_CHAT
from providers.chat import UpstreamRequest

OAI, CLAUDE = "openai/gpt-4o-mini", "anthropic/claude-sonnet-4-5"


def relay(fake: FakeUpstream, model: str, front: str, *, first_token: float = 0.5, stall: float | None = None):
    """One streamed call of `model` relayed to a client speaking `front`: (attempts, outcome, sink, started)."""
    clock, config = fake.clock, RouterConfig.model_validate(CONFIG)
    routes = Routes(config, PRICES, env=KEYS)
    plan = routes.plan([model, *routes.fallbacks(model, None)], now=0)
    body = {"model": model, "messages": MSG, "stream": True}
    attempts, sink = [], ListSink()

    async def go():
        answer = await Dispatch(fake, routes.cooling, clock, stats=routes.stats).send(
            plan, lambda t: (t.endpoint.adapter.chat_request(body, t.model, stream=True), False), stream=True,
            policy=config.retry, deadline=clock.now() + 20, timeouts=Timeouts(0.5, first_token),
            on_attempt=attempts.append)
        out = FRONTS[front].stream(model, True)
        return await ChatRelay(answer, out, clock.now() + 20, clock=clock, stall=stall).run(
            sink, lambda: None, lambda o: None)

    started = clock.now()
    outcome = asyncio.run(go())
    return attempts, outcome, sink, started


def events(sink: ListSink) -> list[dict]:
    return [json.loads(line[6:]) for line in sink.data.decode().splitlines() if line.startswith("data: {")]


@pytest.mark.parametrize("front", ["/v1/chat/completions", "/v1/messages"])
def test_a_stall_ends_the_stream_with_an_error_event_in_the_clients_dialect(front):
    fake = FakeUpstream(VirtualClock())
    fake.program("/chat/completions", chunk_delay=3)
    attempts, outcome, sink, started = relay(fake, "oai-first", front, stall=1)
    assert [a.target.name for a in attempts] == [OAI]
    assert outcome.status == "upstream_error" and "stalled: no event for 1 s" in outcome.error
    assert fake.clock.now() == started + 1  # ended at the stall limit, not at the next event 3 s later
    last = events(sink)[-1]
    if front == "/v1/messages":
        assert last["type"] == "error" and "stalled" in last["error"]["message"]
        assert b"event: error" in sink.data
    else:
        assert "stalled" in last["error"]["message"] and not sink.data.endswith(b"[DONE]\n\n")


def test_without_a_stall_limit_a_slow_stream_is_only_bound_by_the_deadline():
    fake = FakeUpstream(VirtualClock())
    fake.program("/chat/completions", chunk_delay=3)
    _, outcome, sink, _ = relay(fake, "openai/gpt-4o-mini", "/v1/chat/completions", first_token=0.5)
    assert (outcome.status, outcome.finished) == ("upstream_error", False)  # the 20 s deadline passed
    assert "passed the call's timeout" in outcome.error


def test_a_first_token_timeout_fails_over_before_the_client_sees_anything():
    fake = FakeUpstream(VirtualClock())
    fake.program("/chat/completions", times=math.inf, first_byte_delay=2)
    attempts, outcome, sink, _ = relay(fake, "oai-first", "/v1/chat/completions", first_token=1)
    assert [(a.target.name, a.failure and a.failure.kind) for a in attempts] == (
        [(OAI, "first_byte_timeout")] * 3 + [(CLAUDE, None)])
    assert [round(a.ended - a.started, 6) for a in attempts[:3]] == [1.0] * 3
    assert outcome.status == "ok" and sink.data.endswith(b"data: [DONE]\n\n")


@pytest.mark.parametrize("front", ["/v1/chat/completions", "/v1/messages"])
def test_a_clean_end_before_the_final_event_is_an_error_not_a_success(front):
    fake = FakeUpstream(VirtualClock())
    fake.program("/v1/messages", fault="short")
    _, outcome, sink, _ = relay(fake, "claude-first", front)
    assert (outcome.status, outcome.finished) == ("upstream_error", False)
    assert "ended before its final event" in outcome.error
    assert "ended before its final event" in json.dumps(events(sink)[-1])
    assert b"[DONE]" not in sink.data and b"message_stop" not in sink.data


@pytest.mark.parametrize("fault, why", [("cut", "broke: ClientPayloadError"), ("short", "ended before its final")])
def test_a_relayed_stream_cut_short_gets_an_error_event(fault, why):
    """Same-dialect and /v1/responses streams are relayed byte for byte; a break is told to the client too."""
    fake = FakeUpstream(VirtualClock())
    fake.program("/chat/completions", fault=fault)
    clock, config = fake.clock, RouterConfig.model_validate(CONFIG)
    routes = Routes(config, PRICES, env=KEYS)
    (target,) = routes.resolve(OAI)

    async def go():
        answer = await Dispatch(fake, routes.cooling, clock).send(
            [target], lambda t: (UpstreamRequest("/chat/completions", {"model": t.model, "messages": MSG,
                                                                       "stream": True}), True),
            stream=True, policy=config.retry, deadline=clock.now() + 20, timeouts=Timeouts(0.5, 0.5),
            on_attempt=lambda a: None)
        sink = ListSink()
        out = FRONTS["/v1/chat/completions"].stream(OAI, True)
        outcome = await RawRelay(answer, INNER_CHAT.route_for(None), clock.now() + 20, clock=clock,
                                 error_event=out.error).run(sink, lambda: None, lambda o: None)
        return outcome, sink

    outcome, sink = asyncio.run(go())
    assert outcome.status == "upstream_error" and why in outcome.error
    assert why in json.dumps(events(sink)[-1]["error"])


def test_an_alias_overrides_the_routers_stream_limits():
    config = RouterConfig.model_validate({
        "stream_timeouts": {"first_token": 30, "stall": 20},
        "models": {"a": {"deployments": [{"provider": "openai", "model": "gpt-4o"}],
                         "stream_timeouts": {"stall": 5, "continue_on_failure": True}}}})
    assert stream_limits(config, config.models["a"]) == StreamTimeouts(first_token=30, stall=5,
                                                                      continue_on_failure=True)
    assert stream_limits(config, None) == StreamTimeouts(first_token=30, stall=20)
    assert BASE.startswith("http://127.0.0.1")
