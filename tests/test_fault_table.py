"""The router's fault table as unit tests: the engine (core/dispatch.py, relay.py and the seam's
attempt) against the fake upstream on a virtual clock, whole and streamed. Each case checks where the
call was routed, every attempt's outcome, the error the client gets, and the waits on the clock:
Retry-After honoured, backoffs under their ceilings, first-byte timeouts, the one deadline."""

from __future__ import annotations

import asyncio
import json
import math
import random
from dataclasses import dataclass, field
from itertools import pairwise

import pytest
from fake_upstream import FakeUpstream, VirtualClock

from core.config import RouterConfig
from core.dispatch import Attempt, Dispatch, Timeouts
from core.errors import AllAttemptsFailed, ProviderRejected, Refusal
from core.outcome import Outcome
from core.relay import ChatRelay, RawRelay
from core.routing import Routes
from core.sending import Answer, WholeAnswer
from providers import FRONTS, INNER_CHAT
from providers.chat import UpstreamRequest
from providers.pricing import PriceTable

PRICES = PriceTable.load()
BASE = "http://127.0.0.1:9"  # never connected to: the fake answers
DEAD = "http://127.0.0.1:8"
OAI, CLAUDE, GEMINI = "openai/gpt-4o-mini", "anthropic/claude-sonnet-4-5", "gemini/gemini-2.5-flash"
KEYS = {"TG_OPENAI": "sk-provider-secret-openai", "ANTHROPIC_API_KEY": "sk-a", "GEMINI_API_KEY": "g-key"}
CONFIG = {
    "connect_timeout": 0.5, "first_byte_timeout": 0.5, "timeout": 20,
    "retry": {"num_retries": 2, "retry_after": 0.5, "max_backoff": 2},
    "cooldown": {"failures": 1000, "seconds": 1},
    "providers": {"openai": {"base_url": f"{BASE}/v1", "api_key_env": "TG_OPENAI"},
                  "anthropic": {"base_url": BASE}, "gemini": {"base_url": BASE}},
    "models": {
        "oai-first": {"deployments": [{"provider": "openai", "model": "gpt-4o-mini"}], "fallback_models": [CLAUDE]},
        "claude-first": {"deployments": [{"provider": "anthropic", "model": "claude-sonnet-4-5"}],
                         "fallback_models": [GEMINI]},
        "dead-first": {"deployments": [{"provider": "openai", "model": "gpt-4o-mini", "base_url": f"{DEAD}/v1"}],
                       "fallback_models": [CLAUDE]},
    },
}
MSG = [{"role": "user", "content": "hi"}]


class ListSink:
    """What a relayed stream wrote to its client, and when (on the virtual clock, when given one)."""

    def __init__(self, clock: VirtualClock | None = None) -> None:
        self.data = b""
        self.eof = False
        self.clock = clock
        self.writes: list[tuple[float, bytes]] = []

    async def prepare(self) -> None:
        pass

    async def write(self, data: bytes) -> None:
        self.data += data
        self.writes.append((self.clock.now() if self.clock else 0.0, data))

    async def write_eof(self) -> None:
        self.eof = True


@dataclass
class Ran:
    """One routed call: its attempts, then an answer (a stream relayed into `sink`) or an error."""

    attempts: list[Attempt]
    started: float
    ended: float = 0.0
    answer: Answer | None = None
    error: Refusal | None = None
    outcome: Outcome | None = None
    sink: ListSink = field(default_factory=ListSink)

    @property
    def outcomes(self) -> list[str]:
        """Each attempt as "deployment: ok" or "deployment: kind[ status]"."""
        def one(a: Attempt) -> str:
            f = a.failure
            return f"{a.target.name}: " + ("ok" if f is None else f.kind + (f" {f.status}" if f.status else ""))
        return [one(a) for a in self.attempts]

    @property
    def routed_to(self) -> str:
        return self.attempts[-1].target.name

    @property
    def gaps(self) -> list[float]:
        """The waits between attempts (backoffs), in virtual seconds."""
        return [round(b.started - a.ended, 9) for a, b in pairwise(self.attempts)]

    @property
    def lengths(self) -> list[float]:
        return [round(a.ended - a.started, 9) for a in self.attempts]


def route(fake: FakeUpstream, model: str, stream: bool, **config) -> Ran:
    """Plan, dispatch and (for a stream) relay one call, as addons/router/ does, on the fake's clock."""
    return asyncio.run(_route(fake, model, stream, RouterConfig.model_validate({**CONFIG, **config})))


async def _route(fake: FakeUpstream, model: str, stream: bool, config: RouterConfig) -> Ran:
    clock = fake.clock
    routes = Routes(config, PRICES, env=KEYS)
    plan = routes.plan([model, *routes.fallbacks(model, None)], random.Random(0), now=clock.now())
    body = {"model": model, "messages": MSG, "stream": stream}
    ran = Ran([], clock.now(), sink=ListSink(clock))

    def prepare(target):
        return target.endpoint.adapter.chat_request(body, target.model, stream=stream), False

    deadline = clock.now() + config.timeout
    try:
        ran.answer = await Dispatch(fake, routes.cooling, clock, random.Random(0)).send(
            plan, prepare, stream=stream, policy=config.retry, deadline=deadline,
            timeouts=Timeouts(config.connect_timeout, config.first_byte_timeout), on_attempt=ran.attempts.append)
    except Refusal as e:
        ran.error = e
    if stream and ran.answer is not None:
        relay = ChatRelay(ran.answer, FRONTS["/v1/chat/completions"].stream(model, False), deadline, clock=clock)
        ran.outcome = await relay.run(ran.sink, lambda: None, lambda outcome: None)
    ran.ended = clock.now()
    return ran


def text_of(ran: Ran) -> str:
    """The answer's text as the client gets it (whole: the completion; stream: the relayed deltas)."""
    if isinstance(ran.answer, WholeAnswer):
        return ran.answer.body["choices"][0]["message"]["content"] or ""
    events = [line[6:] for line in ran.sink.data.decode().splitlines() if line.startswith("data: {")]
    return "".join(c["delta"].get("content") or "" for e in events for c in json.loads(e).get("choices", []))


@pytest.fixture
def fake() -> FakeUpstream:
    return FakeUpstream(VirtualClock())


# fault on the first deployment -> (model, programs, each attempt's outcome)
FAULTS = {
    "429 without Retry-After": ("oai-first", [dict(match="/chat/completions", times=3, status=429)],
                                [f"{OAI}: http 429"] * 3 + [f"{CLAUDE}: ok"]),
    "429 with Retry-After, then ok": ("oai-first", [dict(match="/chat/completions", status=429,
                                                         headers={"retry-after": "1"})],
                                      [f"{OAI}: http 429", f"{OAI}: ok"]),
    "429 with retry-after-ms, then ok": ("oai-first", [dict(match="/chat/completions", status=429,
                                                            headers={"retry-after-ms": "1500"})],
                                         [f"{OAI}: http 429", f"{OAI}: ok"]),
    "429 asking longer than max_backoff": ("oai-first", [dict(match="/chat/completions", status=429,
                                                              headers={"retry-after": "30"})],
                                           [f"{OAI}: http 429", f"{CLAUDE}: ok"]),
    "429 insufficient_quota": ("oai-first", [dict(match="/chat/completions", status=429,
                                                  fixture="openai/error_429_insufficient_quota.json")],
                               [f"{OAI}: http 429", f"{CLAUDE}: ok"]),
    "500 once, retried": ("oai-first", [dict(match="/chat/completions", status=500)], [f"{OAI}: http 500", f"{OAI}: ok"]),
    "500 always, fallback": ("oai-first", [dict(match="/chat/completions", times=3, status=500)],
                             [f"{OAI}: http 500"] * 3 + [f"{CLAUDE}: ok"]),
    "529 overloaded, fallback": ("claude-first", [dict(match="/v1/messages", times=3, status=529)],
                                 [f"{CLAUDE}: http 529"] * 3 + [f"{GEMINI}: ok"]),
    "refused connection": ("dead-first", [dict(match=DEAD, times=math.inf, fault="refused")],
                           [f"{OAI}: connect"] * 3 + [f"{CLAUDE}: ok"]),
    "reset before the answer": ("oai-first", [dict(match="/chat/completions", fault="reset")],
                                [f"{OAI}: reset", f"{OAI}: ok"]),
    "silent upstream": ("oai-first", [dict(match="/chat/completions", times=3, fault="silent")],
                        [f"{OAI}: first_byte_timeout"] * 3 + [f"{CLAUDE}: ok"]),
    "slow first byte": ("oai-first", [dict(match="/chat/completions", times=3, first_byte_delay=1.5)],
                        [f"{OAI}: first_byte_timeout"] * 3 + [f"{CLAUDE}: ok"]),
}


@pytest.mark.parametrize("stream", [False, True], ids=["whole", "stream"])
@pytest.mark.parametrize("fault", list(FAULTS))
def test_fault_table(fake, fault, stream):
    model, programs, outcomes = FAULTS[fault]
    for program in programs:
        fake.program(**program)
    ran = route(fake, model, stream)
    assert ran.error is None and text_of(ran)  # the client got an answer and never saw the fault
    assert ran.outcomes == outcomes and ran.routed_to == outcomes[-1].split(":")[0]
    if stream:
        assert (ran.outcome.status, ran.outcome.finished, ran.sink.eof) == ("ok", True, True)
        assert ran.sink.data.endswith(b"data: [DONE]\n\n")
    policy = RouterConfig.model_validate(CONFIG).retry
    ceilings = [min(policy.max_backoff, policy.retry_after * 2**retry) for retry in range(policy.num_retries)]
    retried = [a.target.name == b.target.name for a, b in pairwise(ran.attempts)]
    for i, (gap, same) in enumerate(zip(ran.gaps, retried, strict=True)):
        if not same:
            assert gap == 0  # a fallback goes at once
        elif "Retry-After, then" in fault:
            assert gap == 1.0  # waited as the provider asked: at least 1 s (jitter here is at most 0.5)
        elif "retry-after-ms" in fault:
            assert gap == 1.5
        else:
            assert 0 <= gap <= ceilings[i % policy.num_retries]  # full jitter under the doubling ceiling
    if fault in ("silent upstream", "slow first byte"):
        assert ran.lengths[:3] == [0.5] * 3  # each waited exactly the first-byte timeout
        assert all("first byte timeout" in a.failure.describe(a.target.name) for a in ran.attempts[:3])
        assert all(body.closed for body in fake.bodies[:3 if fault == "slow first byte" else 0])
    if fault == "refused connection":
        assert [s.url.startswith(DEAD) for s in fake.sent] == [False]  # nothing reached the dead one
    else:
        assert len(fake.sent) == len(outcomes)


@pytest.mark.parametrize("stream", [False, True], ids=["whole", "stream"])
def test_cut_mid_answer(fake, stream):
    """A stream cut after bytes reached the client is not retried: the client gets an error event and
    the row says upstream_error; a whole answer cut short is retried, since nothing reached the client."""
    fake.program("/chat/completions", fault="cut", chunk_delay=0.005)
    ran = route(fake, "oai-first", stream)
    if stream:
        assert ran.outcomes == [f"{OAI}: ok"]  # the attempt answered: the break came after the first chunk
        assert (ran.outcome.status, ran.outcome.finished) == ("upstream_error", False)
        assert "stream broke" in ran.outcome.error and ran.outcome.chars > 0  # what was passed on is charged
        assert b'"server_error"' in ran.sink.data and b"stream broke" in ran.sink.data and ran.sink.eof
        assert text_of(ran) and fake.bodies[0].released
    else:
        assert ran.outcomes == [f"{OAI}: reset", f"{OAI}: ok"] and text_of(ran)
        assert fake.bodies[0].closed


@pytest.mark.parametrize("stream", [False, True], ids=["whole", "stream"])
@pytest.mark.parametrize("status, expect, code", [(429, 429, "rate_limit_exceeded"), (500, 502, "upstream_failed"),
                                                  (529, 503, "upstream_unavailable")])
def test_every_deployment_failing(fake, stream, status, expect, code):
    fake.program("/chat/completions", times=3, status=status)
    fake.program("/v1/messages", times=3, status=status)
    ran = route(fake, "oai-first", stream)
    assert isinstance(ran.error, AllAttemptsFailed) and ran.answer is None
    assert (ran.error.status, ran.error.code) == (expect, code)
    assert ran.outcomes == [f"{OAI}: http {status}"] * 3 + [f"{CLAUDE}: http {status}"] * 3
    assert ran.error.message.count("attempt ") == 6 and "attempt 4: anthropic/claude-sonnet-4-5: HTTP" in ran.error.message
    assert "sk-provider-secret" not in ran.error.message
    assert ran.error.headers == ({"retry-after": "1"} if status == 429 else {})  # never 0: clients busy-loop


@pytest.mark.parametrize("stream", [False, True], ids=["whole", "stream"])
def test_all_timeouts_give_504(fake, stream):
    fake.program("/chat/completions", times=3, fault="silent")
    fake.program("/v1/messages", times=3, fault="silent")
    ran = route(fake, "oai-first", stream)
    assert (ran.error.status, ran.error.code) == (504, "upstream_timeout")
    assert ran.lengths == [0.5] * 6


@pytest.mark.parametrize("stream", [False, True], ids=["whole", "stream"])
@pytest.mark.parametrize("status", [400, 401, 403, 404])
def test_client_errors_are_never_retried(fake, stream, status):
    fake.program("/chat/completions", status=status)
    ran = route(fake, "oai-first", stream)
    assert isinstance(ran.error, ProviderRejected) and ran.error.status == status
    assert ran.outcomes == [f"{OAI}: http {status}"] and len(fake.sent) == 1


@pytest.mark.parametrize("stream", [False, True], ids=["whole", "stream"])
def test_the_one_deadline_bounds_every_retry_and_fallback(fake, stream):
    """timeout 1.2 s: the first try waits its 0.5 s, later ones only what is left; nothing starts after
    the deadline, and the call ends on it with a 504."""
    fake.program("/chat/completions", times=math.inf, fault="silent")
    fake.program("/v1/messages", times=math.inf, fault="silent")
    ran = route(fake, "oai-first", stream, timeout=1.2)
    assert (ran.error.status, ran.error.code) == (504, "upstream_timeout")
    assert ran.ended - ran.started <= 1.2 and all(a.ended <= ran.started + 1.2 for a in ran.attempts)
    assert ran.lengths[0] == 0.5 and sum(ran.lengths) + sum(ran.gaps) <= 1.2
    assert ran.error.attempts[-1][1].kind in ("deadline", "first_byte_timeout")


def test_a_stream_stalling_past_the_deadline_is_ended_with_an_error(fake):
    """The one deadline holds after the first chunk too: a provider that stops mid-stream does not hold
    the client for ever; the relay ends it at the deadline, told in the client's shape."""
    fake.program("/chat/completions", chunk_delay=3)
    ran = route(fake, "openai/gpt-4o-mini", True, timeout=1)
    assert ran.outcomes == [f"{OAI}: ok"]
    assert ran.outcome.status == "upstream_error" and "timeout" in ran.outcome.error
    assert ran.ended == ran.started + 1  # ended on the deadline, not at the next event 3 s later
    assert b"passed the call's timeout" in ran.sink.data


def test_first_token_after_a_fallback_is_not_held_back(fake):
    """The fallback's stream reaches the client event by event: each content delta is written when its
    event arrives (events 150 ms apart), so the first long before the last one is sent. (Moved from
    tests/e2e/test_router.py, which compared wall-clock spreads; the wire keeps its own e2e test.)"""
    fake.program("/chat/completions", times=3, status=503)
    fake.program("/v1/messages", chunk_delay=0.15)
    ran = route(fake, "oai-first", True)
    assert ran.outcomes == [f"{OAI}: http 503"] * 3 + [f"{CLAUDE}: ok"] and ran.outcome.status == "ok"
    stamps = [at for at, data in ran.sink.writes if b'"content":"' in data and b'"content":""' not in data]
    assert len(stamps) >= 2 and stamps[-1] - stamps[0] > 0.3  # spread out as sent, not buffered
    assert stamps == sorted(set(stamps))  # one content write per event, each at its own instant
    body = fake.bodies[-1]  # the fallback's: each content delta goes on at the instant its event came in
    assert stamps == [at for at, piece in zip(body.read_at, body.pieces, strict=False) if b'"text_delta"' in piece]
    assert stamps[0] < ran.ended - 0.3  # ttft well before the end (the e2e test's ttft_ms < duration - 300)


def test_a_missing_key_is_skipped_without_sending(fake):
    ran = asyncio.run(_route(fake, "oai-first", False, RouterConfig.model_validate(
        {**CONFIG, "providers": {**CONFIG["providers"], "openai": {"base_url": f"{BASE}/v1", "api_key_env": "NONE"}}})))
    assert ran.outcomes == [f"{OAI}: missing_key", f"{CLAUDE}: ok"]
    assert [s.url for s in fake.sent] == [f"{BASE}/v1/messages"]


def test_raw_stream_relays_bytes_and_notes_a_cut(fake):
    """/v1/responses and same-dialect calls relay the provider's bytes; a cut is told in the outcome."""
    fake.program("/responses", fault="cut")
    clock = fake.clock
    routes = Routes(RouterConfig.model_validate(CONFIG), PRICES, env=KEYS)
    (target,) = routes.resolve(OAI)

    async def go():
        answer = await Dispatch(fake, routes.cooling, clock).send(
            [target], lambda t: (UpstreamRequest("/responses", {"model": t.model, "input": "hi", "stream": True}), True), stream=True,
            policy=RouterConfig.model_validate(CONFIG).retry, deadline=clock.now() + 20,
            timeouts=Timeouts(0.5, 0.5), on_attempt=lambda a: None)
        sink = ListSink()
        relay = RawRelay(answer, INNER_CHAT.route_for("responses"), clock.now() + 20, clock=clock)
        outcome = await relay.run(sink, lambda: None, lambda o: None)
        return answer, outcome, sink

    answer, outcome, sink = asyncio.run(go())
    assert answer.content_type.startswith("text/event-stream") and sink.data.startswith(answer.first)
    assert outcome.status == "upstream_error" and "ClientPayloadError" in outcome.error

