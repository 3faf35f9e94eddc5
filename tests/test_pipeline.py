"""The pipeline on hand-made calls: stages run in order, the first answer or refusal stops the call
there, and a refusal is left on the call as the gateway's answer."""

import asyncio

import pytest

from core.call import Call
from core.errors import Forbidden
from core.pipeline import Ask, Hit, Stages
from providers import ENDPOINTS
from providers.base import Route

NAMES = ["identify", "tag", "admit", "input_policies", "cache", "output_policies", "record"]


class Step:
    def __init__(self, name, visited, does=None):
        self.name, self.visited, self.does = name, visited, does

    async def __call__(self, call, ask):
        self.visited.append(self.name)
        if isinstance(self.does, Exception):
            raise self.does
        return self.does


class End(Step):
    def __call__(self, call, outcome):
        self.visited.append(self.name)


def pipeline(visited, **does):
    way_in = {n: Step(n, visited, does.get(n)) for n in NAMES[:5]}
    way_out = {n: End(n, visited) for n in NAMES[5:]}
    return Stages(**way_in, **way_out).pipeline(Step("send", visited, does.get("send", "sent")))


def call():
    return Call(id="c", trace_id="t", span_id="s", parent_span_id=None, started=0.0, mode="router",
                route=Route(ENDPOINTS["openai"].provider, "chat.completions"), host="h", path="/")


ASK = Ask("router", None, {})


def test_every_stage_in_order_and_sends_answer_is_the_calls():
    visited = []
    p = pipeline(visited)
    assert asyncio.run(p.enter(c := call(), ASK)) == "sent"
    p.leave(c, None)
    assert visited == ["identify", "tag", "admit", "input_policies", "cache", "send", "output_policies", "record"]


def test_a_hit_stops_the_call_before_send():
    visited = []
    answer = asyncio.run(pipeline(visited, cache=Hit(b"cached")).enter(call(), ASK))
    assert answer == Hit(b"cached") and visited[-1] == "cache"


def test_a_refusal_stops_the_call_and_is_the_gateways_answer():
    visited = []
    c = call()
    with pytest.raises(Forbidden):
        asyncio.run(pipeline(visited, admit=Forbidden("no")).enter(c, ASK))
    assert visited == ["identify", "tag", "admit"]
    assert (c.answered_by, c.refused, c.refusal.status, c.prompt_sent) == ("gateway", True, 403, False)


def test_a_refused_call_is_still_described_for_its_row():
    """Stages that only describe the call (tag) run after an earlier refusal; nothing else does."""
    visited = []
    p = pipeline(visited, identify=Forbidden("who?"))
    p.way_in[1].describes = True
    with pytest.raises(Forbidden):
        asyncio.run(p.enter(call(), ASK))
    assert visited == ["identify", "tag"]
