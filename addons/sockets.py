"""Sockets: passthrough's door for calls made over a WebSocket (OpenAI's Responses API over a socket:
Codex CLI's transport on a ChatGPT login). Each request message a client sends on a provider's socket
is one call, run through the same pipeline as an HTTP call with the upgrade request's headers; the
provider's event messages that follow are its answer, recorded at the final event, or as incomplete
when the socket closes first. Messages always pass on unchanged unless the pipeline refuses one."""

from __future__ import annotations

import dataclasses
import json
import logging
from dataclasses import dataclass

from mitmproxy import ctx, http

from addons.attribution import Attribution
from addons.capture import Capture, replayed, request_host
from core.call import Call
from core.errors import Refusal
from core.outcome import Outcome
from core.secrets import redact_url
from core.tagging import new_span_id, new_trace_id, trace_context
from providers.base import Route, StreamState
from providers.safe_json import loads

log = logging.getLogger(__name__)

SOCKET = "tapgate_socket"  # flow.metadata: the socket's Turns


@dataclass
class Turns:
    """A provider socket: its route, and the call in flight (one at a time: a turn's events end it)."""

    route: Route
    call: Call | None = None
    state: StreamState | None = None


class Sockets:
    def __init__(self, capture: Capture, attribution: Attribution) -> None:
        self.capture = capture
        self.attribution = attribution

    def requestheaders(self, flow: http.HTTPFlow) -> None:
        """A provider's socket is known by its upgrade request, read here: before any --map-remote."""
        req = flow.request
        if req.headers.get("upgrade", "").lower() != "websocket" or replayed(flow):
            return
        route = self.capture.settings.registry.route(request_host(req), req.port, req.path)
        if route is not None and hasattr(route.provider, "socket_request"):
            flow.metadata[SOCKET] = Turns(route)

    async def websocket_message(self, flow: http.HTTPFlow) -> None:
        if (turns := flow.metadata.get(SOCKET)) is None:
            return
        # mitmproxy keeps every message of a socket in the flow; an agent's socket lives for its whole
        # session, its turns carrying the conversation, so only the one being passed on is kept.
        del flow.websocket.messages[:-1]
        if not (message := flow.websocket.messages[-1]).is_text:
            return
        try:
            data = loads(message.content)
        except ValueError:
            return  # not JSON: not a call, passed on as it is
        if message.from_client:
            if (body := turns.route.provider.socket_request(turns.route, data)) is not None:
                await self._begin(flow, turns, message, body)
        elif turns.call is not None:
            turns.call.mark_first_chunk()
            turns.route.provider.stream_event(turns.route, turns.state, None, data)
            if turns.state.finished:
                status = "error" if turns.state.error else "ok"
                self._end(turns, status, turns.state.error)

    def websocket_end(self, flow: http.HTTPFlow) -> None:
        if (turns := flow.metadata.get(SOCKET)) is not None and turns.call is not None:
            self._end(turns, "incomplete", "the socket closed before the turn's final event")

    async def _begin(self, flow: http.HTTPFlow, turns: Turns, message, body: dict) -> None:
        """A new turn: the message made a Call and run through the pipeline; a refusal drops the
        message and answers the client an error event in its place."""
        if turns.call is not None:
            self._end(turns, "incomplete", "a new turn began before this one's final event")
        req = flow.request
        trace_id, parent = trace_context(req.headers.get("traceparent"))
        call = Call(id=new_trace_id(), trace_id=trace_id, span_id=new_span_id(), parent_span_id=parent,
                    started=message.timestamp, mode="passthrough", route=turns.route, host=request_host(req),
                    path=redact_url(req.path))
        self.attribution.attribute(flow, call)
        ask = dataclasses.replace(self.capture.ask(flow, call, json.dumps(body).encode()), cache=None)
        try:
            await self.capture.pipeline.enter(call, ask)
        except Refusal as e:
            message.drop()
            error = {"type": "error", "status": e.status, "error": {"type": e.code, "message": e.message}}
            ctx.master.commands.call("inject.websocket", flow, True, json.dumps(error).encode())
            self.capture.pipeline.leave(call, Outcome.failed(e.status, "refused" if e.refused else "error", e.message))
            return
        turns.call, turns.state = call, StreamState()

    def _end(self, turns: Turns, status: str, error: str | None) -> None:
        call, state = turns.call, turns.state
        turns.call = turns.state = None
        try:
            outcome = Outcome.of(state, status, error)
            if not self.capture.store_bodies:
                outcome.body = None
        except Exception:  # recording must never break the proxy
            log.exception("tapgate: could not read how call %s ended", call.id)
            outcome = Outcome.failed(None, "error", "the gateway could not read the answer")
        self.capture.pipeline.leave(call, outcome)
