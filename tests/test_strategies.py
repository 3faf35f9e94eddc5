"""Routing strategies on the fake upstream and its virtual clock: lowest-latency follows the faster
deployment and comes back after a recovery, lowest-cost picks the cheapest capable one, least-busy spreads
open streams; health (recent errors) and the scores each call records."""

from __future__ import annotations

import asyncio
import math
import random
from collections import Counter

import pytest
from fake_upstream import FakeUpstream, VirtualClock

from core.config import Cooldown, RouterConfig
from core.dispatch import Dispatch, Timeouts
from core.errors import AllAttemptsFailed
from core.routing import Routes
from core.strategies import Need
from providers.pricing import PriceTable

BASE = "http://127.0.0.1:9"
KEYS = {"OPENAI_API_KEY": "sk-o", "ANTHROPIC_API_KEY": "sk-a", "GEMINI_API_KEY": "g"}
MSG = [{"role": "user", "content": "hi"}]
OAI, CLAUDE, GEMINI, OLD = ("openai/gpt-4o-mini", "anthropic/claude-sonnet-4-5", "gemini/gemini-2.5-flash",
                            "openai/gpt-3.5-turbo")


def config(strategy: str, *models: tuple[str, str], **alias) -> RouterConfig:
    return RouterConfig.model_validate({
        "timeout": 60, "first_byte_timeout": 10, "retry": {"num_retries": 0},
        "providers": {"openai": {"base_url": f"{BASE}/v1"}, "anthropic": {"base_url": BASE},
                      "gemini": {"base_url": BASE}},
        "models": {"a": {"strategy": strategy, **alias,
                         "deployments": [{"provider": p, "model": m} for p, m in models]}}})


def one_call(fake: FakeUpstream, routes: Routes, rng: random.Random, *, stream: bool = False, need: Need | None = None,
             release: bool = True):
    """Plan and send one call of alias "a"; returns the answer (a stream left open unless `release`)."""
    plan, choices = routes.choose(["a"], rng, fake.clock.now(), need or Need(stream=stream))
    body = {"model": "a", "messages": MSG, "stream": stream}

    async def go():
        return await Dispatch(fake, routes.cooling, fake.clock, rng, stats=routes.stats).send(
            plan, lambda t: (t.endpoint.adapter.chat_request(body, t.model, stream=stream), False), stream=stream,
            policy=routes.config.retry, deadline=fake.clock.now() + 60, timeouts=Timeouts(5, 10),
            on_attempt=lambda a: None)

    answer = asyncio.run(go())
    if stream and release:
        answer.release()
    return answer, choices[0]


def test_lowest_latency_moves_to_the_faster_deployment_and_back_after_recovery():
    fake = FakeUpstream(VirtualClock())
    routes = Routes(config("lowest-latency", ("openai", "gpt-4o-mini"), ("anthropic", "claude-sonnet-4-5")),
                    PriceTable.load(), env=KEYS)
    rng = random.Random(7)
    fake.program("/chat/completions", times=math.inf, first_byte_delay=0.1)
    fake.program("/v1/messages", times=math.inf, first_byte_delay=0.4)
    openai, claude = fake.programs

    def phase(calls: int) -> Counter:
        return Counter(one_call(fake, routes, rng)[0].target.name for _ in range(calls))

    phase(20)
    assert phase(40)[OAI] >= 34  # openai answers in 0.1 s, claude in 0.4: most calls go to openai
    openai.first_byte_delay = 2.0  # openai slows down
    phase(20)
    assert phase(40)[CLAUDE] >= 34
    openai.first_byte_delay = 0.05  # and recovers: exploration notices, traffic comes back
    phase(60)
    assert phase(40)[OAI] >= 34
    _, choice = one_call(fake, routes, rng)
    assert choice.strategy == "lowest-latency" and choice.scores[OAI] < choice.scores[CLAUDE]
    assert routes.stats.of(OAI).in_flight == routes.stats.of(CLAUDE).in_flight == 0


def test_lowest_latency_uses_time_to_first_token_for_streams():
    fake = FakeUpstream(VirtualClock())
    routes = Routes(config("lowest-latency", ("openai", "gpt-4o-mini"), ("anthropic", "claude-sonnet-4-5"), explore=0),
                    PriceTable.load(), env=KEYS)
    fake.program("/chat/completions", times=math.inf, first_byte_delay=0.5, chunk_delay=0.0)
    fake.program("/v1/messages", times=math.inf, first_byte_delay=0.1, chunk_delay=0.2)
    rng = random.Random(3)
    for _ in range(4):
        one_call(fake, routes, rng, stream=True)
        one_call(fake, routes, rng, stream=False)
    seen_o, seen_c = routes.stats.of(OAI), routes.stats.of(CLAUDE)
    assert seen_c.ttft is not None and seen_o.ttft is not None and seen_c.ttft < seen_o.ttft
    _, choice = one_call(fake, routes, rng, stream=True)
    assert list(choice.scores) and choice.order[0].name == CLAUDE  # first token sooner on claude


def test_lowest_cost_picks_the_cheapest_capable_deployment():
    # gpt-3.5-turbo made the cheapest by an override; it has no vision, no JSON schema and a 16k window.
    prices = PriceTable.load({"gpt-3.5-turbo": {"input": 0.01, "output": 0.02}})
    routes = Routes(config("lowest-cost", ("anthropic", "claude-sonnet-4-5"), ("openai", "gpt-3.5-turbo"),
                           ("gemini", "gemini-2.5-flash"), ("openai", "gpt-4o-mini")), prices, env=KEYS)
    fake = FakeUpstream(VirtualClock())
    rng = random.Random(1)
    cases = [(Need(), [OLD, OAI, GEMINI, CLAUDE], {}),
             (Need(images=True), [OAI, GEMINI, CLAUDE], {OLD: "no images"}),
             (Need(json_schema=True), [OAI, GEMINI, CLAUDE], {OLD: "no JSON schema"}),
             (Need(input_tokens=150_000), [GEMINI, CLAUDE], {OLD: "context 16385", OAI: "context 128000"}),
             (Need(input_tokens=300_000), [GEMINI], {OLD: "", OAI: "", CLAUDE: "context 200000"})]
    for need, order, skipped in cases:
        answer, choice = one_call(fake, routes, rng, need=need)
        assert [t.name for t in choice.order] == order
        assert answer.target.name == order[0] and fake.sent[-1].url.startswith(BASE)
        assert set(choice.skipped) == set(skipped)
        assert all(why in choice.skipped[name] for name, why in skipped.items())
        costs = [choice.scores[n] for n in order]
        assert costs == sorted(costs) and costs[0] > 0
    assert "/models/gemini-2.5-flash:generateContent" in fake.sent[-1].url  # the 300k-token call went to the only capable one


def test_no_capable_deployment_leaves_the_choice_to_the_providers():
    routes = Routes(config("lowest-cost", ("openai", "gpt-3.5-turbo")), PriceTable.load(), env=KEYS)
    plan, (choice,) = routes.choose(["a"], random.Random(0), 0, Need(images=True))
    assert [t.name for t in plan] == [OLD] and choice.skipped == {OLD: "no images"}


def test_least_busy_spreads_open_streams():
    fake = FakeUpstream(VirtualClock())
    routes = Routes(config("least-busy", ("openai", "gpt-4o-mini"), ("anthropic", "claude-sonnet-4-5"),
                           ("gemini", "gemini-2.5-flash")), PriceTable.load(), env=KEYS)
    rng = random.Random(5)
    held = [one_call(fake, routes, rng, stream=True, release=False)[0] for _ in range(9)]
    assert Counter(a.target.name for a in held) == {OAI: 3, CLAUDE: 3, GEMINI: 3}
    assert {routes.stats.of(n).in_flight for n in (OAI, CLAUDE, GEMINI)} == {3}
    for answer in held[:3]:
        answer.release()
    freed = {a.target.name for a in held[:3]}
    nxt, choice = one_call(fake, routes, rng, stream=True, release=False)
    assert nxt.target.name in freed and choice.scores[nxt.target.name] == 2.0
    for answer in [*held[3:], nxt]:
        answer.release()
    assert all(routes.stats.of(n).in_flight == 0 for n in (OAI, CLAUDE, GEMINI))


def test_cost_latency_weighs_both():
    prices = PriceTable.load()
    for weight, first in ((1.0, OAI), (0.0, CLAUDE)):
        fake = FakeUpstream(VirtualClock())
        routes = Routes(config("cost-latency", ("openai", "gpt-4o-mini"), ("anthropic", "claude-sonnet-4-5"),
                               cost_weight=weight, explore=0), prices, env=KEYS)
        fake.program("/chat/completions", times=math.inf, first_byte_delay=1.0)  # cheap but slow
        fake.program("/v1/messages", times=math.inf, first_byte_delay=0.1)
        rng = random.Random(2)
        for _ in range(6):
            one_call(fake, routes, rng)
        _, choice = one_call(fake, routes, rng)
        assert choice.order[0].name == first, (weight, choice.scores)


def test_recent_errors_move_a_deployment_last_for_every_strategy():
    routes = Routes(config("lowest-cost", ("openai", "gpt-4o-mini"), ("anthropic", "claude-sonnet-4-5")),
                    PriceTable.load(), env=KEYS)
    for _ in range(3):
        routes.stats.started(OAI)
        routes.stats.ended(OAI, ok=False)
    plan, (choice,) = routes.choose(["a"], random.Random(0), 0, Need())
    assert [t.name for t in choice.order] == [OAI, CLAUDE]  # still the cheapest
    assert [t.name for t in plan] == [CLAUDE, OAI]  # but failing: tried last


def test_the_error_rate_rule_can_be_turned_off():
    routes = Routes(config("lowest-cost", ("openai", "gpt-4o-mini"), ("anthropic", "claude-sonnet-4-5"),
                           ).model_copy(update={"cooldown": Cooldown(error_rate=None)}), PriceTable.load(), env=KEYS)
    for _ in range(3):
        routes.stats.started(OAI)
        routes.stats.ended(OAI, ok=False)
    plan, _ = routes.choose(["a"], random.Random(0), 0, Need())
    assert [t.name for t in plan] == [OAI, CLAUDE]


def test_a_probe_that_answers_after_a_cooldown_forgives_recent_errors():
    fake = FakeUpstream(VirtualClock())
    routes = Routes(config("weighted", ("openai", "gpt-4o-mini")).model_copy(
        update={"cooldown": Cooldown(failures=2, seconds=1)}), PriceTable.load(), env=KEYS)
    fake.program("/chat/completions", times=3, status=500)
    rng = random.Random(0)
    for _ in range(3):
        with pytest.raises(AllAttemptsFailed):
            one_call(fake, routes, rng)
    assert routes.stats.of(OAI).unhealthy(0.5)
    fake.clock.t += 2  # past the cooldown: the next call is its probe
    answer, _ = one_call(fake, routes, rng)
    assert answer.target.name == OAI and not routes.stats.of(OAI).unhealthy(0.5)
