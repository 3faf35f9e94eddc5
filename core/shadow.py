"""Shadow traffic (issue #14): a share of the calls for some models sent again, in the background, to a
candidate model, so its cost, speed and answers can be compared on real traffic before a switch. It
listens to recorded calls (both doors record through one Recorder), never delays them, is bounded in
flight, and spends from its own daily budget: the shadow row has no key or customer to charge."""

from __future__ import annotations

import asyncio
import dataclasses
import fnmatch
import json
import logging
import random
import time
from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from core.call import CHARS_PER_TOKEN, Call
from core.clock import SYSTEM, Clock
from core.config import RetryPolicy, ShadowTraffic
from core.dispatch import Dispatch, Timeouts
from core.errors import Refusal
from core.routing import Cooling, Routes, Target, UnknownModel
from core.sending import Upstream
from core.strategies import DEFAULT_OUTPUT_TOKENS, Need, cost_of
from core.tagging import Tags, new_span_id, new_trace_id
from providers import FRONTS, INNER_CHAT
from providers.base import ResponseFacts, Route
from providers.chat import InvalidRequest, UnsupportedParam

log = logging.getLogger(__name__)
NO_RETRY = RetryPolicy(retry_enabled=False)


def chat_of(call: Call) -> dict[str, Any] | None:
    """The call's request as a non-streamed OpenAI chat body, or None when it is not a chat call."""
    body = None
    if call.mode == "router":  # the router keeps the OpenAI chat body it works in
        body = call.body if call.route.endpoint in ("chat.completions", "messages") else None
    elif isinstance(call.body, dict):
        if call.route.endpoint == "chat.completions":
            body = call.body
        elif call.route.endpoint == "messages":
            try:
                body, _ = FRONTS["/v1/messages"].to_chat(call.body, "drop")
            except (InvalidRequest, UnsupportedParam):
                return None
    if not isinstance(body, dict) or not isinstance(body.get("messages"), list):
        return None
    return {k: v for k, v in body.items() if k not in ("stream", "stream_options")}


class ShadowSender:
    """`routing.shadow` in force: `offer` each recorded call; shadows run as tasks on the running loop.
    `record(call, status_code, status, error, facts, chars, body)` records a finished shadow call."""

    def __init__(self, shadows: dict[str, ShadowTraffic], routes: Routes, upstream: Upstream,
                 record: Callable[..., None], *, clock: Clock = SYSTEM, rng: random.Random | None = None) -> None:
        self.shadows, self.routes, self.upstream, self.record = shadows, routes, upstream, record
        self.clock, self.rng = clock, rng or random.Random()
        self.cooling = Cooling(routes.config.cooldown)  # the shadows' health never steers real calls
        self.in_flight: Counter[str] = Counter()
        self.spent: dict[tuple[str, str], float] = {}  # (shadow, UTC day) -> USD
        self.reserved: dict[str, float] = {}  # shadow call id -> the estimate booked in `spent` when sent
        self.skipped: Counter[str] = Counter()  # why calls went unshadowed: budget, busy, not_chat
        self.tasks: set[asyncio.Task] = set()

    @staticmethod
    def check(shadows: dict[str, ShadowTraffic], routes: Routes) -> list[str]:
        """Config errors: a candidate the router cannot reach."""
        bad = []
        for name, shadow in shadows.items():
            try:
                routes.resolve(shadow.to)
            except UnknownModel:
                bad.append(f"routing.shadow.{name}: to: {shadow.to!r} is not an alias, a provider/model name or "
                           "a known model")
        return bad

    def offer(self, row: dict[str, Any], call: Call) -> None:
        """A Recorder listener: every recorded call, once."""
        day = datetime.now(UTC).date().isoformat()
        if row["mode"] == "shadow":  # its cost replaces what was reserved for it when it was sent
            name, reserved = call.tags.metadata.get("shadow"), self.reserved.pop(call.id, 0.0)
            self.spent[name, day] = self.spent.get((name, day), 0.0) + (row["cost_usd"] or 0.0) - reserved
            return
        if row["status"] != "ok" or call.cache.hit or call.refused or not call.facts.model:
            return
        for name, shadow in self.shadows.items():
            if row["mode"] not in shadow.modes or not any(fnmatch.fnmatchcase(call.facts.model, g)
                                                          for g in shadow.model):
                continue
            if self.rng.random() * 100 >= shadow.percent:
                continue
            if (chat := chat_of(call)) is None:
                self.skipped["not_chat"] += 1
            elif self.spent.get((name, day), 0.0) >= shadow.budget_usd_per_day:
                self.skipped["budget"] += 1
            elif self.in_flight[name] >= shadow.max_in_flight:
                self.skipped["busy"] += 1
                log.info("tapgate: shadow %s: %d calls in flight, call %s not shadowed (%d so far)", name,
                         self.in_flight[name], call.id, self.skipped["busy"])
            else:
                try:
                    loop = asyncio.get_running_loop()
                except RuntimeError:  # recorded off the event loop: nothing to run a shadow on
                    self.skipped["no_loop"] += 1
                    continue
                # Reserve its estimated cost now, so shadows in flight together cannot overrun the budget.
                estimate = self._estimate(shadow, call, chat)
                self.spent[name, day] = self.spent.get((name, day), 0.0) + estimate
                self.in_flight[name] += 1
                task = loop.create_task(self._send(name, shadow, call, chat, estimate))
                self.tasks.add(task)
                task.add_done_callback(self.tasks.discard)

    async def drain(self, timeout: float = 10.0) -> None:
        """Wait for the shadows in flight (at shutdown, so their rows are recorded), then stop the rest."""
        if self.tasks:
            _, late = await asyncio.wait(set(self.tasks), timeout=timeout)
            for task in late:
                task.cancel()

    def _estimate(self, shadow: ShadowTraffic, original: Call, chat: dict[str, Any]) -> float:
        need = Need(-(-original.facts.prompt_chars // CHARS_PER_TOKEN),
                    chat.get("max_tokens") or chat.get("max_completion_tokens") or DEFAULT_OUTPUT_TOKENS)
        return cost_of(self.routes.resolve(shadow.to)[0], need, self.routes.prices) or 0.0

    async def _send(self, name: str, shadow: ShadowTraffic, original: Call, chat: dict[str, Any],
                    estimate: float = 0.0) -> None:
        config = self.routes.config
        try:
            plan = self.routes.plan([shadow.to], self.rng, self.clock.now())
            call = shadow_call(name, shadow.to, original, plan[0], chat)
            self.reserved[call.id] = estimate
            chars, body, facts = 0, None, ResponseFacts()
            status, code, error = "ok", 200, None

            def prepare(target: Target):
                if target.key:
                    call.secrets.append(target.key)
                call.prompt_sent = True
                return target.endpoint.adapter.chat_request(chat, target.model, stream=False,
                                                            unsupported="drop"), False

            def attempted(attempt) -> None:
                aim(call, attempt.target)
                call.routing.attempts = (call.routing.attempts or 0) + 1

            try:
                answer = await Dispatch(self.upstream, self.cooling, self.clock, self.rng).send(
                    plan, prepare, stream=False, policy=NO_RETRY, deadline=self.clock.now() + config.timeout,
                    timeouts=Timeouts(config.connect_timeout, config.first_byte_timeout), on_attempt=attempted)
                call.mark_first_chunk()
                call.answered_by = "provider"
                facts = INNER_CHAT.wire.response_facts(INNER_CHAT.route, answer.body)
                chars, body = len(answer.raw), json.dumps(answer.body) if call.keep_bodies else None
            except Refusal as e:
                status, code, error = "error", e.status, e.message
                facts = ResponseFacts(error=e.message)
            self.record(call, code, status, error, facts, chars, body)
        except Exception:  # a shadow must never disturb the gateway
            log.exception("tapgate: shadow %s of call %s failed", name, original.id)
        finally:
            self.in_flight[name] -= 1


def shadow_call(name: str, model: str, original: Call, target: Target, chat: dict[str, Any]) -> Call:
    """The shadow's own call: in the original's trace, under its root span, named for the candidate."""
    call = Call(id=new_trace_id(), trace_id=original.trace_id, span_id=new_span_id(),
                parent_span_id=original.span_id, started=time.time(), mode="shadow",
                route=Route(target.endpoint.provider, "chat.completions"), host="", path="/v1/chat/completions")
    call.facts = dataclasses.replace(INNER_CHAT.wire.request_facts(INNER_CHAT.route, chat), model=model, stream=False)
    call.tags = Tags(metadata={"shadow": name, "shadow_of": original.id})
    call.keep_bodies = original.keep_bodies
    aim(call, target)
    return call


def aim(call: Call, target: Target) -> None:
    from urllib.parse import urlsplit

    routing = call.routing
    routing.route = call.route = Route(target.endpoint.provider, "chat.completions")
    routing.model, routing.deployment, routing.host = target.model, target.name, urlsplit(target.base_url).netloc
    call.host = routing.host
