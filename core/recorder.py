"""Recorder: one finished call (passthrough or routed) becomes its `requests` row and spans, priced,
and is handed to the listeners (spend settlement, the console). The record stage's work."""

from __future__ import annotations

import dataclasses
import json
import logging

from core.call import Call
from core.config import Configured
from core.outcome import Outcome
from core.secrets import scrub
from core.store import Rows

log = logging.getLogger(__name__)

BODY_LIMIT = 1024 * 1024  # stored bodies are cut here so one huge upload cannot bloat the store


def stored_text(raw: bytes) -> str:
    """A body as the store keeps it: text, cut at BODY_LIMIT with a note saying so."""
    text = raw[:BODY_LIMIT].decode("utf-8", "replace")
    return text + f"\n[tapgate: cut at {BODY_LIMIT} of {len(raw)} bytes]" if len(raw) > BODY_LIMIT else text


class Recorder:
    def __init__(self, settings: Configured, store: Rows, listeners=()) -> None:
        self.settings = settings
        self.store = store
        self.listeners = list(listeners)  # each called with (row, call) for every recorded call
        self._unpriced: set[str] = set()

    def record(self, call: Call, outcome: Outcome) -> None:
        facts, finished, output_chars = outcome.facts, outcome.finished, outcome.chars
        status, error, status_code, response_body = outcome.status, outcome.error, outcome.status_code, outcome.body
        if call.refused:
            status = "refused"
        usage, estimated = facts.usage, False
        if call.cache.usage is not None and call.cache.usage.known:
            usage = call.cache.usage  # a hit records what the original call used, never an estimate
        if status == "client_disconnected" and status_code is None and call.prompt_sent and not usage.known:
            # Gone before the answer: the provider still read (and bills) the whole prompt.
            usage, estimated = call.estimate(0), True
            error = "; ".join(filter(None, (error, "the provider got the prompt: its input tokens are "
                                                   "estimated and charged")))
        elif status_code is not None and status_code < 400 and status != "refused":
            if not usage.known:
                usage, estimated = call.estimate(output_chars), True
                error = error or "the provider reported no usage; tokens are estimated"
            elif not finished and (seen := call.estimate(output_chars).output_tokens) > (usage.output_tokens or 0):
                # A cut stream's last count (Anthropic's message_start) lags what was already sent.
                usage, estimated = dataclasses.replace(usage, output_tokens=seen), True
        # Price on the model that answered (a dated snapshot), else on the one asked for (for a routed
        # call: the deployment's model, not the alias the client sent).
        asked = call.routing.model or call.facts.model
        cost, model = None, facts.response_model or asked
        for candidate in dict.fromkeys(m for m in (facts.response_model, asked) if m):
            if (cost := self.settings.prices.cost(call.answering_route.prices_under, candidate, usage)) is not None:
                break
        if cost is None and usage.known and model and (key := f"{call.provider}/{model}") not in self._unpriced:
            self._unpriced.add(key)
            log.warning("tapgate: no price for %s; its calls are recorded with cost_usd NULL", key)
        saved = shadow = None
        if call.cache.hit:  # answered from the cache: it cost nothing, and saved what the call would cost
            cost, saved = 0.0, cost
        elif call.subscription:  # paid by a subscription: what it would cost at API prices, not a cost
            cost, shadow = None, cost
        call.status = status
        # A provider may echo the credential it was sent: no key reaches the store, the console or an alert.
        error = scrub(error, call.secrets)
        if status != "ok":  # ok answers are the model's text; error bodies are where keys come back
            response_body = scrub(response_body, call.secrets)
        request, spans = call.rows(
            ended=outcome.ended,
            status_code=status_code,
            status=status,
            error=error,
            usage=usage,
            usage_estimated=estimated,
            cost_usd=cost,
            response_model=facts.response_model,
            response_body=response_body,
            cost_saved=saved,
            shadow_cost=shadow,
        )
        for span in spans:
            if span["status"] != "ok":  # an attempt's or the upstream span's error text
                span["attributes"] = scrub(span["attributes"], call.secrets)
        records = [("requests", request), *(("spans", span) for span in spans)]
        if call.parser is not None and call.parser.frames and call.keep_bodies:
            records.append(("stream_events", stream_events(call)))
        self.store.add_all(records)  # one journal write
        for listener in self.listeners:
            listener(request, call)


def stream_events(call: Call) -> dict:
    """A recorded stream's events as they came: [[ms after the call started, raw event text], ...]."""
    events = [[round((t - call.started) * 1000, 1), raw.decode("utf-8", "replace")] for t, raw in call.parser.frames
              if raw]  # an event the client never saw (usage the gateway asked for) left as b""
    return {"call_id": call.id, "content_type": call.parser.content_type,
            "events": json.dumps(events, ensure_ascii=False)}
