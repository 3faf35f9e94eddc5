"""Capture: passthrough's door. Each native provider call through the proxy is made a Call, run
through the pipeline (core/pipeline.py) in `request`, forwarded as it is, parsed on the way back
(streams as they pass) and recorded as one `requests` row and its spans."""

from __future__ import annotations

import json
import logging
import time
from typing import Any

from mitmproxy import ctx, http

from addons.provider_layer import REASON, REPLY, TOO_LARGE
from addons.settings import Settings
from addons.store import Store
from core.cache import HEADER
from core.call import Call
from core.errors import BadRequest, BodyTooLarge, PolicyBlocked, Refusal, Unreachable
from core.outcome import Outcome
from core.pipeline import Ask, CacheAsk, Hit, Stages
from core.policies.streaming import FrameFilter
from core.recorder import stored_text
from core.secrets import fingerprint_key, key_from, redact_url
from core.stages.cache import passthrough_cacheable
from core.stages.forward import Forward, Forwarded
from core.tagging import HEADER_PREFIX, new_span_id, new_trace_id, strip_gateway_headers, trace_context
from providers.base import ResponseFacts
from providers.safe_json import TooDeep, loads
from providers.stream import StreamParser, StreamTap

log = logging.getLogger(__name__)

STREAM_TYPES = ("text/event-stream", "application/x-ndjson")
# A call's request body is refused (413) past this: Anthropic's own Messages API limit is 32 MB, and
# a body is held whole while the gateway reads it, so a bigger one costs memory and stalls other calls.
MAX_REQUEST_BYTES = 32 * 1024 * 1024
CREDENTIAL = "tapgate_credential"  # flow.metadata: the gateway key the caller presented (addons/auth.py)
CHALLENGE = {"proxy-authenticate": 'Basic realm="tapgate"'}


class Capture:
    """Parses requests and responses of provider hosts (streams as they pass) and records each call."""

    def __init__(self, settings: Settings, store: Store, stages: Stages) -> None:
        self.settings = settings
        self.store = store
        self.caching = stages.cache.caching
        self.pipeline = stages.pipeline(send=Forward())
        self.store_bodies = True

    def load(self, loader) -> None:
        loader.add_option(
            "tapgate_store_bodies", bool, True, "Store request and response bodies (assembled text for streams)."
        )
        loader.add_option(
            "tapgate_max_request_bytes", int, MAX_REQUEST_BYTES,
            "Largest request body of an LLM call through the proxy; larger ones get a 413 in the provider's "
            "shape, refused as the size is announced or, chunked, as it passes the limit. 0: no limit.",
        )

    def configure(self, updated: set[str]) -> None:
        if "tapgate_store_bodies" in updated:
            self.store_bodies = ctx.options.tapgate_store_bodies

    # -- hooks ---------------------------------------------------------------------------------

    def requestheaders(self, flow: http.HTTPFlow) -> None:
        if replayed(flow):
            # Client replay, server replay or a flow file read: no new call was made, so none is
            # recorded or charged (every other addon acts only on flows that carry a Call).
            flow.metadata.pop("tapgate", None)
            return
        req = flow.request
        registry = self.settings.registry
        host = request_host(req)
        if req.method != "POST" or (route := registry.route(host, req.port, req.path)) is None:
            if not registry.is_provider_host(host, req.port):
                req.stream = True  # plain-HTTP traffic that is not ours: never buffer it
                flow.metadata["tapgate_ignored"] = True
            else:  # not a call (a model list, an unknown path): its URL may hold a key, so the console redacts it
                flow.metadata["tapgate_provider"] = host  # before any --map-remote
            return
        trace_id, parent = trace_context(req.headers.get("traceparent"))
        call = flow.metadata["tapgate"] = Call(id=new_trace_id(), trace_id=trace_id, span_id=new_span_id(),
                                               parent_span_id=parent, started=req.timestamp_start, mode="passthrough",
                                               route=route, host=host, path=redact_url(req.path))
        limit, length = ctx.options.tapgate_max_request_bytes, req.headers.get("content-length", "")
        if limit and length.isdigit() and int(length) > limit:  # refused before a byte of it is read
            call.tags.customer_identifier = req.headers.get("x-tapgate-customer-identifier")
            fail(flow, call, BodyTooLarge(f"{TOO_LARGE} tapgate_max_request_bytes: {length} bytes, the limit is "
                                          f"{limit}."))
            self._record(flow, call)  # now: a killed flow is no longer live, and replays are not recorded
            flow.kill()  # ProviderHttpLayer answers in mitmproxy's place; the body is read and dropped

    async def request(self, flow: http.HTTPFlow) -> None:
        """The call through the pipeline: refused, answered from the cache, or forwarded."""
        call: Call | None = flow.metadata.get("tapgate")
        if call is None or flow.response is not None:
            return
        raw = flow.request.get_content(strict=False) or b""
        try:
            answer = await self.pipeline.enter(call, self.ask(flow, call, raw))
        except Refusal as e:
            strip_gateway_headers(flow.request.headers)
            flow.response = error_response(call, e, CHALLENGE if e.status == 407 else None)
            return
        if isinstance(answer, Hit):
            body, content_type = answer.answer
            flow.response = http.Response.make(200, body, {"content-type": content_type, HEADER: "HIT"})
        else:
            self._forward(flow, call, raw, answer)

    def responseheaders(self, flow: http.HTTPFlow) -> None:
        call: Call | None = flow.metadata.get("tapgate")
        if call is None:
            if flow.metadata.get("tapgate_ignored"):
                flow.response.stream = True
            return
        if call.answered_by != "provider":
            return  # the gateway answered in request() (a refusal, a cache hit): sent whole; mitmproxy still asks
        resp = flow.response
        ctype = resp.headers.get("content-type", "")
        streamed = ctype.split(";")[0].strip().lower() in STREAM_TYPES or (
            call.facts.stream or call.route.path_stream
        )
        if resp.status_code >= 400 or not streamed or flow.request.method == "HEAD":
            return  # buffered whole and parsed in response()
        encoding = resp.headers.get("content-encoding")
        call.parser = StreamParser(call.route, ctype, encoding)
        if self.settings.config.evals.record_streams:  # for replay (issue 15): the events and when they came
            call.parser.frames = []
        hide = call.injected_usage and not call.facts.wants_usage
        stream_guard = call.guard.stream() if call.guard is not None else None
        rewrite = FrameFilter(stream_guard, call.route, ctype) if stream_guard is not None else None
        if hide or rewrite:  # events are re-emitted decoded, so the headers must say so
            resp.headers.pop("content-encoding", None)
            resp.headers.pop("content-length", None)
        # Recorded at the final event, before the chunk carrying it goes on: whatever happens to the
        # connection after that, the call is answered (issue 11) and in the journal (issue 10).
        resp.stream = StreamTap(call.parser, hide_usage=hide, on_first_chunk=call.mark_first_chunk,
                                on_final=lambda: self._record(flow, call), rewrite=rewrite)

    def response(self, flow: http.HTTPFlow) -> None:
        if (call := flow.metadata.get("tapgate")) is not None:
            _guard_answer(flow, call)  # the guardrails' restore and response policies, before it is recorded
            self._record(flow, call)

    def error(self, flow: http.HTTPFlow) -> None:
        if (call := flow.metadata.get("tapgate")) is not None:
            if REPLY not in flow.metadata and (refusal := _refusal_for(flow.error.msg, flow.response)) is not None:
                if refusal.refused:
                    call.tags.customer_identifier = flow.request.headers.get("x-tapgate-customer-identifier")
                fail(flow, call, refusal)
            self._record(flow, call)

    # -- the request in the pipeline's terms, and on its way ---------------------------------------

    def ask(self, flow: http.HTTPFlow, call: Call, raw: bytes) -> Ask:
        """The call's Ask: its facts, body and credential read from the request (and `raw`, its body:
        for a call over a WebSocket, addons/sockets.py, the frame that asked)."""
        req = flow.request
        body, too_deep = _json_body(raw)
        call.facts = call.route.provider.request_facts(call.route, body)
        headers = header_dict(req.headers)  # one pass; every lookup below is a plain dict get
        call.body, call.headers = body, headers
        key = key_from(headers, req.path.partition("?")[2])
        if key:
            call.secrets.append(key)
        fingerprint = fingerprint_key(key, self.store.salt) if key else None
        if self.store_bodies:
            call.request_body = stored_text(raw)
        # Unreadable, so neither tagged, capped nor priced: refused once its caller is known, still recorded.
        unreadable = BadRequest(f"The request body is not valid JSON: {too_deep}.", code="invalid_json") \
            if too_deep is not None else None
        cache = CacheAsk(call.provider, call.route.endpoint, body, fingerprint or "-", self.caching.answer) \
            if passthrough_cacheable(call, req.path) else None
        return Ask("passthrough", flow.metadata.get(CREDENTIAL), headers, cache=cache, fingerprint=fingerprint,
                   store_bodies=self.store_bodies, bad_field_code="invalid_tapgate_header", unreadable=unreadable)

    def _forward(self, flow: http.HTTPFlow, call: Call, raw: bytes, forwarded: Forwarded) -> None:
        """The request as the client sent it, less the gateway's own headers; a stream asked for the
        usage its client did not ask for; identity encoding where the gateway must read the bytes."""
        req = flow.request
        if any(name.startswith(HEADER_PREFIX) for name in call.headers):
            strip_gateway_headers(req.headers)
        if call.guard is not None and call.guard.request_changed:  # redacted by a policy: the provider sees placeholders
            req.content = json.dumps({**call.body, **(forwarded.updates or {})}, ensure_ascii=False).encode()
        elif forwarded.updates is not None:
            req.content = _with_fields(raw, call.body, forwarded.updates)
        if forwarded.updates is not None:
            req.headers["accept-encoding"] = "identity"  # so the hidden usage chunk can be cut out in place
        if call.cache.leader:
            req.headers["accept-encoding"] = "identity"  # the cache keeps decoded bytes

    # -- recording -----------------------------------------------------------------------------

    def _record(self, flow: http.HTTPFlow, call: Call) -> None:
        if call.recorded or replayed(flow):  # server replay marks a live call only once it answers it
            return
        try:
            outcome = self._outcome(flow, call)
        except Exception:  # recording must never break the proxy
            log.exception("tapgate: could not read how call %s ended", call.id)
            outcome = Outcome.failed(None, "error", "the gateway could not read the answer")
        self.pipeline.leave(call, outcome)

    def _outcome(self, flow: http.HTTPFlow, call: Call) -> Outcome:
        """How the call ended, from the flow: status, the answer's facts, its stored text."""
        resp = flow.response
        status_code = resp.status_code if resp is not None else None
        if (reply := flow.metadata.get(REPLY)) is not None and resp is None:
            status_code = reply.status_code  # what the client was answered
        ended = (resp.timestamp_end if resp is not None and resp.timestamp_end else None) or time.time()
        store_bodies = self.store_bodies
        output_chars = 0
        finished = True
        if call.parser is not None:
            if flow.error is not None:
                call.parser.close()  # what was buffered still counts
            state = call.parser.state
            facts = ResponseFacts(usage=state.usage, response_model=state.response_model, error=state.error)
            finished, output_chars = state.finished, state.output.chars
            response_body = state.output.as_json() if store_bodies else None
        elif resp is not None:
            content = resp.get_content(strict=False) or b""
            body, too_deep = _json_body(content)
            if body is not None:
                facts = call.route.provider.response_facts(call.route, body)
            elif content:
                facts = ResponseFacts(error=f"response body is not JSON: {too_deep}" if too_deep else
                                      "response body is not JSON")
            else:
                facts = ResponseFacts(error="empty response body")
            output_chars = len(content)
            response_body = stored_text(content) if store_bodies else None
        else:
            facts, response_body = ResponseFacts(), None

        status, error = _status(flow, status_code, finished, facts.error, streamed=call.parser is not None)
        return Outcome(facts, finished, output_chars, response_body, status, error, status_code, ended)


def replayed(flow: http.HTTPFlow) -> bool:
    """A flow read from a file (not live) or replayed by mitmproxy: client replay (live again, but
    marked) or server replay (a live call answered from a file, marked in its request hook)."""
    return not flow.live or flow.is_replay is not None


def _guard_answer(flow: http.HTTPFlow, call: Call) -> None:
    """A whole answer through the call's guardrails: placeholders restored, response policies applied;
    a block replaces it with an error in the provider's shape."""
    resp = flow.response
    if call.guard is None or resp is None or call.parser is not None or call.answered_by != "provider":
        return
    if resp.status_code >= 400 or not (content := resp.get_content(strict=False)):
        return
    body, _ = _json_body(content)
    changed = call.guard.check_answer(body, body is not None)
    if (block := call.guard.block) is not None:
        flow.response = error_response(call, PolicyBlocked(block))
    elif changed:
        resp.content = json.dumps(body, ensure_ascii=False).encode()


def fail(flow: http.HTTPFlow, call: Call, refusal: Refusal) -> None:
    """The answer for a call mitmproxy cannot finish (an upstream it cannot reach, a body over the
    limit, a smuggling attempt), in its provider's error shape; ProviderHttpLayer sends it in place of
    mitmproxy's HTML page. A 4xx is the gateway refusing the request."""
    call.refuse(refusal)
    flow.metadata[REPLY] = error_response(call, refusal)
    flow.metadata[REASON] = refusal.message


def error_response(call: Call, refusal: Refusal, headers: dict[str, str] | None = None) -> http.Response:
    """A refusal in the call's provider's own error shape."""
    reply = call.route.provider.error_reply(refusal.status, refusal.message, refusal.code, refusal.param)
    return http.Response.make(refusal.status, reply.body,
                              {"content-type": reply.content_type, **refusal.headers, **(headers or {})})


def _refusal_for(msg: str, response: http.Response | None) -> Refusal | None:
    """The gateway's answer for a flow mitmproxy ended with error `msg`; None when nobody waits for
    an answer (the client left) or the provider's own answer has begun."""
    if "request smuggling" in msg:  # mitmproxy's header validation: two Content-Lengths, CL and TE
        return Refusal(msg.split(" Disable the ")[0], status=400, code="invalid_http_request")
    if msg.startswith(TOO_LARGE):
        return BodyTooLarge(msg)
    if response is not None or "client" in msg.lower():
        return None
    timeout = "timed out" in msg.lower() or "timeout" in msg.lower()
    return Unreachable(f"The gateway could not reach the provider: {msg}", status=504 if timeout else 502)


def request_host(req: http.Request) -> str:
    """The host the client asked for, before any redirect: the CONNECT or URL host, or the Host
    header when that is only an address (transparent mode)."""
    host = req.host
    return req.pretty_host if not host or host[0].isdigit() or ":" in host else host


def header_dict(headers: http.Headers) -> dict[str, str]:
    """All request headers with lowercased names, read once."""
    return {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in headers.fields}


def _status(flow: http.HTTPFlow, status_code: int | None, finished: bool, body_error: str | None,
            streamed: bool = False):
    """(status, error): what happened to the call, in a word, and why. A stream whose final event
    was seen is answered, whatever happened to the connection after it."""
    if (reply := flow.metadata.get(REPLY)) is not None:  # the gateway answered: refused (4xx) or upstream
        return "upstream_error" if reply.status_code >= 500 else "refused", flow.metadata[REASON]
    if flow.error is not None and not (streamed and finished and status_code and status_code < 400 and not body_error):
        msg = flow.error.msg
        kind = "client_disconnected" if "client" in msg.lower() else "upstream_error"
        return kind, f"{msg} {body_error}".strip() if body_error else msg
    if status_code is not None and status_code >= 400:
        return "error", body_error or f"HTTP {status_code}"
    if body_error:
        return "error", body_error
    if not finished:
        return "incomplete", "the stream ended before its final event"
    return "ok", None


def _json_body(raw: bytes) -> tuple[Any, TooDeep | None]:
    """(the parsed body or None when it is not JSON, the TooDeep error when it is nested too deep).
    A request body that is simply not JSON goes on: the provider answers it in its own words."""
    try:
        return (loads(raw) if raw else None), None
    except TooDeep as e:
        return None, e
    except ValueError:
        return None, None


def _with_fields(raw: bytes, body: dict[str, Any], updates: dict[str, Any]) -> bytes:
    """The body with top-level fields set, changing as few bytes as possible: a new field is
    appended before the final brace; an existing one means re-serialising."""
    if not any(k in body for k in updates):
        end = raw.rstrip().rfind(b"}")
        if end > 0:
            head = raw[:end].rstrip()
            sep = b"" if head.endswith(b"{") else b","
            extra = b",".join(json.dumps(k).encode() + b":" + json.dumps(v, separators=(",", ":")).encode() for k, v in updates.items())
            return head + sep + extra + raw[end:]
    return json.dumps({**body, **updates}).encode()
