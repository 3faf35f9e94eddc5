"""Shadow traffic on the fake upstream and virtual clock: which recorded calls are shadowed, how the shadow
call is linked to its original, its own budget and in-flight bound; and `tapgate compare shadow`."""

from __future__ import annotations

import asyncio
import json
import random
from datetime import UTC, datetime

import pytest
from fake_upstream import FakeUpstream, VirtualClock
from known_store import at, request

from cli.compare import similarity
from cli.main import main
from core.call import Call
from core.config import RouterConfig, ShadowTraffic
from core.routing import Routes
from core.schema import open_db
from core.shadow import ShadowSender, chat_of
from providers.base import Route
from providers.openai import OPENAI
from providers.pricing import PriceTable

BASE = "http://127.0.0.1:9"
ROUTER = RouterConfig.model_validate({"providers": {"openai": {"base_url": f"{BASE}/v1"},
                                                    "anthropic": {"base_url": BASE}}, "timeout": 30})
CHAT = {"model": "gpt-4o", "messages": [{"role": "user", "content": "hi"}], "stream": True,
        "stream_options": {"include_usage": True}}


def original(mode: str = "router", model: str = "gpt-4o", **extra) -> tuple[dict, Call]:
    call = Call(id="req-1", trace_id="t" * 32, span_id="s" * 16, parent_span_id=None, started=0.0, mode=mode,
                route=Route(OPENAI, "chat.completions"), host="api.openai.com", path="/v1/chat/completions")
    call.facts.model = model
    call.body = dict(CHAT)  # the router keeps OpenAI chat; passthrough the provider's own body
    for name, value in extra.items():
        setattr(call, name, value)
    return {"mode": mode, "status": "ok", "cost_usd": 0.001}, call


class Rig:
    """A ShadowSender on the fake upstream; `recorded` holds each shadow call as it would be recorded."""

    def __init__(self, **shadow) -> None:
        self.fake = FakeUpstream(VirtualClock())
        self.recorded: list[tuple[Call, int, str]] = []
        config = {"model": "gpt-4o*", "to": "anthropic/claude-sonnet-4-5", "percent": 100, **shadow}
        self.sender = ShadowSender({"try-claude": ShadowTraffic.model_validate(config)},
                                   Routes(ROUTER, PriceTable.load(), env={"OPENAI_API_KEY": "o",
                                                                          "ANTHROPIC_API_KEY": "a"}),
                                   self.fake, self._record, clock=self.fake.clock, rng=random.Random(3))

    def _record(self, call, code, status, error, facts, chars, body) -> None:
        self.recorded.append((call, code, status))
        self.sender.offer({"mode": "shadow", "status": status, "cost_usd": 0.4}, call)  # as the Recorder would

    def run(self, *offers: tuple[dict, Call]) -> list[int]:
        """Offer each call; returns how many requests had gone upstream right after each offer."""
        async def go():
            sent_after = []
            for row, call in offers:
                self.sender.offer(row, call)
                sent_after.append(len(self.fake.sent))
            await self.sender.drain()
            return sent_after
        return asyncio.run(go())


def test_a_shadow_is_sent_in_the_background_and_linked_to_its_original():
    rig = Rig()
    row, call = original()
    assert rig.run((row, call)) == [0]  # offer returned before anything was sent: the client never waits
    ((shadow, code, status),) = rig.recorded
    assert (code, status, shadow.mode, shadow.facts.model) == (200, "ok", "shadow", "anthropic/claude-sonnet-4-5")
    assert (shadow.trace_id, shadow.parent_span_id) == (call.trace_id, call.span_id)
    assert shadow.tags.metadata == {"shadow": "try-claude", "shadow_of": "req-1"}
    assert shadow.tags.customer_identifier is None and shadow.caller.key_id is None  # nobody's budget is charged
    assert shadow.routing.deployment == "anthropic/claude-sonnet-4-5" and shadow.prompt_sent
    assert shadow.routing.attempts == 1
    (sent,) = rig.fake.sent
    assert sent.url == f"{BASE}/v1/messages" and sent.request.body["stream"] is False
    assert sent.request.body["messages"] == [{"role": "user", "content": [{"type": "text", "text": "hi"}]}]


@pytest.mark.parametrize("mode, endpoint, body, shadowed", [
    ("passthrough", "chat.completions", CHAT, True),
    ("passthrough", "messages", {"model": "gpt-4o", "max_tokens": 5, "system": "Be brief.",
                                 "messages": [{"role": "user", "content": "hi"}]}, True),
    ("passthrough", "embeddings", {"model": "gpt-4o", "input": "hi"}, False),
])
def test_passthrough_calls_are_shadowed_from_their_own_dialect(mode, endpoint, body, shadowed):
    rig = Rig()
    row, call = original(mode, route=Route(OPENAI, endpoint), body=body)
    rig.run((row, call))
    assert len(rig.recorded) == int(shadowed)
    assert rig.sender.skipped["not_chat"] == int(not shadowed)
    if endpoint == "messages":
        sent = rig.fake.sent[0].request.body
        assert "Be brief." in json.dumps(sent["system"]) and "hi" in json.dumps(sent["messages"][-1])


def test_which_calls_are_shadowed():
    rig = Rig(percent=25, modes=["router"], max_in_flight=1000, budget_usd_per_day=1000)
    offers = [original() for _ in range(400)]
    offers += [original(model="claude-haiku-4-5"), original("passthrough")]  # another model; a door not shadowed
    failed, call = original()
    offers.append(({**failed, "status": "error"}, call))
    rig.run(*offers)
    assert abs(len(rig.recorded) - 100) <= 20  # about a quarter of the 400 matching calls
    assert all(c.tags.metadata["shadow_of"] == "req-1" for c, _, _ in rig.recorded)
    shadow_row, shadow_call = ({"mode": "shadow", "status": "ok", "cost_usd": 0.0}, rig.recorded[0][0])
    before = len(rig.recorded)
    rig.run((shadow_row, shadow_call))
    assert len(rig.recorded) == before  # a shadow is never shadowed


def test_the_shadows_own_budget_stops_it_for_the_day():
    rig = Rig(budget_usd_per_day=1.0)  # each shadow is recorded as costing 0.4
    for _ in range(6):
        rig.run(original())
    assert len(rig.recorded) == 3 and rig.sender.skipped["budget"] == 3
    assert sum(rig.sender.spent.values()) == pytest.approx(1.2) and not rig.sender.reserved


def test_shadows_in_flight_together_reserve_their_estimated_cost():
    rig = Rig(budget_usd_per_day=0.01)
    big = dict(CHAT, max_tokens=1000)  # claude-sonnet-4-5: 1000 output tokens are about $0.015
    rig.run(*(original(body=big) for _ in range(3)))
    assert len(rig.recorded) == 1 and rig.sender.skipped["budget"] == 2


def test_shadows_in_flight_are_bounded():
    rig = Rig(max_in_flight=2)
    rig.fake.program("/v1/messages", times=10, first_byte_delay=5)
    rig.run(*(original() for _ in range(5)))
    assert len(rig.recorded) == 2 and rig.sender.skipped["busy"] == 3
    assert rig.sender.in_flight["try-claude"] == 0


def test_a_failing_shadow_is_recorded_as_an_error():
    rig = Rig()
    rig.fake.program("/v1/messages", status=500)
    rig.run(original())
    ((shadow, code, status),) = rig.recorded
    assert (code, status) == (502, "error")


def test_chat_of_strips_streaming():
    _, call = original()
    call.body = {**CHAT, "stream_options": {"include_usage": True}}
    assert chat_of(call) == {"model": "gpt-4o", "messages": [{"role": "user", "content": "hi"}]}


@pytest.fixture
def store(tmp_path):
    path = tmp_path / "t.db"
    db = open_db(path)
    now = datetime.now(UTC)
    rows = []
    answers = [("London.", "London."), ("The capital is London.", "London is the capital."), ("Paris", None)]
    for i, (mine, theirs) in enumerate(answers):
        rows.append(request(id=f"o{i}", started_at=at(now, minutes=10 - i), duration_ms=100.0 * (i + 1),
                            cost_usd=0.01, mode="router", routed_to="openai/gpt-4o",
                            response_body=json.dumps({"text": mine, "tool_calls": [], "finish_reason": "stop"})))
        rows.append(request(id=f"s{i}", started_at=at(now, minutes=10 - i), duration_ms=300.0, cost_usd=0.002,
                            mode="shadow", model="anthropic/claude-haiku-4-5", routed_to="anthropic/claude-haiku-4-5",
                            status="ok" if theirs else "error", metadata=json.dumps({"shadow": "h", "shadow_of": f"o{i}"}),
                            response_body=json.dumps({"choices": [{"message": {"content": theirs}}]}) if theirs else None))
    db["requests"].insert_all(rows)
    db.close()
    return path


def test_compare_shadow(store, capsys):
    assert main(["compare", "shadow", "--db", str(store), "--json"]) == 0
    (row,) = map(json.loads, capsys.readouterr().out.splitlines())
    assert (row["shadow"], row["pairs"], row["compared"], row["shadow_errors"]) == ("h", 3, 2, 1)
    assert row["original_cost_usd"] == pytest.approx(0.03) and row["shadow_cost_usd"] == pytest.approx(0.006)
    assert (row["original_p50_ms"], row["shadow_p50_ms"]) == (200.0, 300.0)
    assert row["differ_exact"] == 0.5  # one identical answer of the two compared
    assert row["mean_similarity"] == pytest.approx((1 + similarity("The capital is London.",
                                                                   "London is the capital.")) / 2, abs=1e-4)
    assert row["models"] == "openai/gpt-4o -> anthropic/claude-haiku-4-5"
    assert main(["compare", "shadow", "--db", str(store)]) == 0
    assert "answers differ" in capsys.readouterr().out
    assert main(["compare", "shadow", "--db", str(store), "--shadow", "other"]) == 0
    assert "no shadow calls named other" in capsys.readouterr().out


def test_similarity():
    assert similarity("a b c", "a b c") == 1.0 and similarity("a b", "c d") == 0.0
