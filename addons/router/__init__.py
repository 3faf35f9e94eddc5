"""Router: one OpenAI-compatible endpoint (and an Anthropic-shaped one) in front of every provider,
served as plain HTTP inside mitmdump on `tapgate_router`, with fallbacks, retries and timeouts.

It is its own aiohttp server, not a mitmproxy mode: mitmproxy streams a response only from the
upstream it first connected to, and sends a response set in a hook whole, so a fallback could not
stream. Here the router holds each attempt until its first chunk and only then answers the client.

A client that leaves stops its call: aiohttp cancels the handler when the connection drops, and with
it the attempt in flight (its upstream connection closed) and every retry and fallback after it."""

from __future__ import annotations

import asyncio
import json
import logging
import time
from dataclasses import dataclass
from urllib.parse import urlsplit

from aiohttp import web
from mitmproxy import ctx, exceptions
from pydantic import ValidationError

from addons.auth import Auth
from addons.capture import BODY_LIMIT
from addons.router import server as router_http
from addons.router.cache import RouterCache, render_cached
from addons.router.request import authenticate, master_key, note_refused, read_json
from addons.settings import Settings
from core.admission import Admission
from core.cache import HEADER, Caching
from core.cachestore import Entry
from core.call import Call, iso, ms
from core.clock import SYSTEM, Clock
from core.config import RetryPolicy
from core.dispatch import Attempt, Dispatch, Timeouts
from core.errors import (
    BadRequest,
    BodyTooLarge,
    Forbidden,
    ModelNotFound,
    Refused,
    RouterError,
    Unauthorized,
)
from core.recorder import Recorder
from core.relay import ChatRelay, Outcome, RawRelay
from core.routing import Routes, Target, UnknownModel
from core.secrets import scrub
from core.sending import Upstream, WholeAnswer
from core.tagging import BadTag, new_span_id, new_trace_id, pop_router_fields, router_tags, trace_context
from core.upstream import HttpUpstream
from providers import FRONTS, INNER_CHAT, replay_for
from providers.base import ResponseFacts, Route
from providers.chat import InvalidRequest, UnsupportedParam, UpstreamRequest

log = logging.getLogger(__name__)



class Router:
    """`upstream` and `clock` are what routed calls are sent through and timed by: the real ones unless
    given (tests give a fake upstream on a virtual clock)."""

    def __init__(self, settings: Settings, recorder: Recorder, auth: Auth, spend: Admission, cache: Caching,
                 upstream: Upstream | None = None, clock: Clock = SYSTEM) -> None:
        self.settings = settings
        self.cache = cache
        self.router_cache = RouterCache(settings, cache)
        self.recorder = recorder
        self.auth = auth
        self.spend = spend
        self.routes: Routes | None = None
        self.clock = clock
        self.upstream = upstream or HttpUpstream(clock)
        self.runner: web.AppRunner | None = None
        self.address = ""

    def load(self, loader) -> None:
        loader.add_option(
            "tapgate_router", str, "127.0.0.1:4000",
            "Address of the OpenAI-compatible router (plain HTTP: POST /v1/chat/completions, /v1/messages, "
            "/v1/embeddings, GET /v1/models). Empty turns it off.",
        )

    def configure(self, updated: set[str]) -> None:
        if "tapgate_config" in updated or self.routes is None:
            try:
                self.routes = Routes(self.settings.config.router, self.settings.prices)
            except ValueError as e:
                raise exceptions.OptionsError(f"{ctx.options.tapgate_config}: router: {e}") from None
            for name, variable in self.routes.missing_keys():
                log.warning("tapgate: router deployment %s has no key: %s is not set; its calls fail with a 500 "
                            "until it is (or api_key_env names another variable)", name, variable)
        if "tapgate_router" in updated and ctx.options.tapgate_router:
            host, _, port = ctx.options.tapgate_router.rpartition(":")
            if not port.isdigit():
                raise exceptions.OptionsError(f"tapgate_router must be host:port, got {ctx.options.tapgate_router!r}")

    async def running(self) -> None:
        if not ctx.options.tapgate_router:
            return
        await self.upstream.start()
        app = web.Application(client_max_size=self.settings.config.router.max_body_bytes,
                              middlewares=[router_http.middleware(self._unrouted)])
        app.router.add_post("/v1/chat/completions", self.chat)
        app.router.add_post("/v1/messages", self.chat)
        app.router.add_post("/chat/completions", self.chat)
        app.router.add_post("/v1/embeddings", self.embeddings)
        app.router.add_post("/v1/responses", self.responses)
        app.router.add_get("/v1/models", self.models)
        self.runner = router_http.Runner(app, self._unrouted, access_log=None, handle_signals=False,
                                         handler_cancellation=True)
        await self.runner.setup()
        host, _, port = ctx.options.tapgate_router.rpartition(":")
        site = web.TCPSite(self.runner, host.strip("[]") or "127.0.0.1", int(port))
        try:
            await site.start()
        except OSError as e:  # the proxy still runs (an error logged at start-up would stop mitmdump)
            log.warning("tapgate: the router cannot listen on %s (%s); set tapgate_router to a free address, "
                      "or to empty to turn it off", ctx.options.tapgate_router, e.strerror or e)
            await self.runner.cleanup()
            self.runner = None
            return
        bound = self.runner.addresses[0]  # the port, when 0 asked for any free one
        self.address = f"http://{bound[0]}:{bound[1]}"
        if not master_key(self.settings.config.router):
            log.warning("tapgate: router has no master key (set TAPGATE_MASTER_KEY): gateway keys only, "
                        "or any caller when no key is required")
        log.info("tapgate router listening at %s", self.address)

    async def done(self) -> None:
        if self.runner is not None:
            await self.runner.cleanup()
            self.runner = None
        await self.upstream.close()

    # -- endpoints ---------------------------------------------------------------------------------

    async def models(self, request: web.Request) -> web.Response:
        try:
            authenticate(request, self.settings.config, self.auth.ring)
        except RouterError as e:
            return _error(e, FRONTS["/v1/chat/completions"])
        names = list(self.routes.aliases) + [t.name for ts in self.routes.aliases.values() for t in ts]
        data = [{"id": n, "object": "model", "created": 0, "owned_by": n.split("/")[0] if "/" in n else "tapgate"}
                for n in dict.fromkeys(names)]
        return web.json_response({"object": "list", "data": data})

    async def chat(self, request: web.Request) -> web.StreamResponse:
        front = FRONTS["/v1/messages" if request.path.endswith("/messages") else "/v1/chat/completions"]
        return await self._handle(request, front, None)

    async def embeddings(self, request: web.Request) -> web.StreamResponse:
        return await self._handle(request, FRONTS["/v1/chat/completions"], "embeddings")

    async def responses(self, request: web.Request) -> web.StreamResponse:
        return await self._handle(request, FRONTS["/v1/chat/completions"], "responses")

    async def _handle(self, request: web.Request, front, as_is: str | None) -> web.StreamResponse:
        """One routed call. `as_is` names an OpenAI endpoint relayed without translation (embeddings,
        responses), which only OpenAI-compatible deployments serve."""
        config = self.settings.config.router
        call = self._new_call(request, front, as_is)
        headers = _lower(request.headers)
        try:
            try:
                key = authenticate(request, self.settings.config, self.auth.ring, front.key_header)
            except Unauthorized as e:
                if e.key is not None:  # a known key that may not be used now: the row names it, as passthrough's
                    call.key_id = e.key.id
                    await note_refused(request, call, front, config.max_body_bytes)
                raise
            body = await read_json(request, config.max_body_bytes)
            if key is not None:
                call.key_id = key.id
            try:
                fields = pop_router_fields(body)
                chat_body, translation_notes = (body, []) if as_is else front.to_chat(body, config.unsupported_params)
            except (BadTag, InvalidRequest, UnsupportedParam) as e:
                raise BadRequest(str(e), param=e.param) from None
            inner = INNER_CHAT.route_for(as_is)  # read as OpenAI chat, or as the OpenAI endpoint relayed
            chat_body, unknown = INNER_CHAT.documented_only(inner.endpoint, chat_body, config.extra_params)
            if unknown:
                call.notes.append(f"not forwarded (not an OpenAI parameter; router.extra_params passes it): "
                                  f"{', '.join(unknown)}")
            call.facts = INNER_CHAT.wire.request_facts(inner, chat_body)
            self._tag(call, headers, body, fields)
            if not (model := call.facts.model):
                raise BadRequest("model is required", param="model")
            if key is not None and not key.allows(model):
                raise Forbidden(f"Gateway key {key.name or key.id} may not call model {model!r}.", param="model")
            if (cheaper := self.spend.downgrade(call, key, model)) is not None:
                model, note = cheaper
                call.notes.append(note)
            try:
                plan = self.routes.plan([model, *self.routes.fallbacks(model, fields.get("fallback_models"))],
                                        now=self.clock.now())
            except UnknownModel as e:
                raise ModelNotFound(f"The model {e.args[0]!r} does not exist on this gateway: not an alias in "
                                    "the config, a provider/model name, or a known model.", param="model") from None
            if as_is:
                plan = [t for t in plan if as_is in t.endpoint.relays]
                if not plan:
                    raise BadRequest(f"/v1/{as_is} is served by OpenAI-compatible deployments only; no deployment "
                                     f"of {model!r} is one.", param="model")
            self._aim(call, plan[0])
            if as_is != "responses" and (entry := await self.router_cache.lookup(
                    call, headers, chat_body, fields, key, model, as_is)) is not None:
                return self._serve_cached(call, front, entry, front.wants_usage(body), as_is)
            try:
                if refusal := self.spend.admit(call, key):
                    message, code, headers = refusal
                    raise Refused(message, code=code, headers=headers)
                return await self._answer(request, front, call, chat_body, plan, fields, front.wants_usage(body),
                                          as_is, Native(body, front.native_headers(request.headers),
                                                        translation_notes))
            finally:
                if call.cache_leader:
                    self.cache.cache.release(call.cache_key)
        except asyncio.CancelledError:  # the client left (or the gateway is stopping): record, then stop
            self._record_cancelled(call, request)
            raise
        except RouterError as e:
            e.message = scrub(e.message, call.secrets)  # a provider's message may echo the key it was sent
            if isinstance(e, (Refused, Unauthorized, Forbidden, BadRequest, ModelNotFound, BodyTooLarge)):
                call.refused = e.code
            self._record_error(call, e)
            return _error(e, front)
        except Exception:  # a bug of ours: the client gets a clean 500, the call is still recorded
            log.exception("tapgate: routed call %s failed", call.id)
            error = RouterError("The gateway failed to route this call; its log has the details.",
                                code="gateway_error")
            self._record_error(call, error)
            return _error(error, front)

    def _unrouted(self, request: web.BaseRequest, error: RouterError) -> bytes:
        """A request the router could not route (unknown path or method, malformed HTTP): recorded as
        refused, answered in the dialect its path implies."""
        front = FRONTS["/v1/messages" if request.path.startswith("/v1/messages") else "/v1/chat/completions"]
        call = self._new_call(request, front, None)
        call.customer_identifier = request.headers.get("x-tapgate-customer-identifier")
        call.refused = error.code
        self._record_error(call, error)
        return front.error(error.status, error.body())

    def _tag(self, call: Call, headers: dict[str, str], body: dict, fields: dict) -> None:
        """Tag the call from the gateway's body fields and X-Tapgate-* headers, over the body's own
        end-user field. Raises BadRequest."""
        try:
            tags = router_tags(headers, call.facts.user, fields)
        except BadTag as e:
            # Still say who it was for, as far as the well-formed parts tell (as passthrough does).
            call.customer_identifier = headers.get("x-tapgate-customer-identifier") or fields.get("customer_identifier")
            raise BadRequest(str(e), param=e.param) from None
        call.customer_identifier, call.thread_identifier = tags.customer_identifier, tags.thread_identifier
        call.metadata, call.customer_params = tags.metadata, tags.customer_params
        # Respan's disable_log: metrics only, neither prompt nor answer kept.
        call.keep_bodies = ctx.options.tapgate_store_bodies and fields.get("disable_log") is not True
        if call.keep_bodies:
            call.request_body = json.dumps(body, ensure_ascii=False)[:BODY_LIMIT]

    # -- one routed call ---------------------------------------------------------------------------

    async def _answer(self, request, front, call: Call, body: dict, plan: list[Target], fields: dict,
                      wants_usage: bool, as_is: str | None, native: Native) -> web.StreamResponse:
        config = self.settings.config.router
        stream = call.facts.stream
        policy = _retry_policy(config.retry, fields.get("retry_params"))
        deadline = self.clock.now() + config.timeout
        translated: dict[str, UpstreamRequest] = {}

        def prepare(target: Target) -> tuple[UpstreamRequest, bool]:
            same_dialect = target.endpoint.provider is front.native
            try:
                if same_dialect:  # the client's own request, only the model changed
                    upstream_request = UpstreamRequest(f"/v1/{front.endpoint}", {**native.body, "model": target.model},
                                                       native.headers)
                elif as_is:
                    upstream_request = UpstreamRequest(f"/{as_is}", {**body, "model": target.model})
                else:
                    upstream_request = target.endpoint.adapter.chat_request(
                        body, target.model, stream=stream, unsupported=config.unsupported_params)
                    upstream_request.notes = native.notes + upstream_request.notes
            except (InvalidRequest, UnsupportedParam) as e:
                raise BadRequest(f"{target.name}: {e}", param=e.param) from None
            translated[target.name] = upstream_request
            call.prompt_sent = True
            if target.key:
                call.secrets.append(target.key)  # its error may echo the key: scrubbed before anyone sees it
            return upstream_request, bool(as_is) or same_dialect

        dispatch = Dispatch(self.upstream, self.routes.cooling, self.clock)
        answer = await dispatch.send(plan, prepare, stream=stream, policy=policy, deadline=deadline,
                                     timeouts=Timeouts(config.connect_timeout, config.first_byte_timeout),
                                     on_attempt=lambda a: self._attempted(call, a))
        self._aim(call, answer.target)
        call.notes += translated[answer.target.name].notes
        store_bodies = call.keep_bodies
        cache_header = {HEADER: "MISS" if call.cache_leader else "BYPASS"} if call.cache_key else {}
        provider = answer.target.endpoint.provider
        same_dialect = provider is front.native
        # How to read what is relayed untranslated: the provider's own shape, or OpenAI's for as-is endpoints.
        read_as = Route(provider, front.endpoint) if same_dialect else call_route(call)
        untranslated = bool(as_is) or same_dialect
        if isinstance(answer, WholeAnswer):
            call.mark_first_chunk()
            facts = (provider if same_dialect else INNER_CHAT.wire).response_facts(read_as, answer.body)
            payload = answer.raw if untranslated else front.whole(answer.body, call.facts.model)
            self._record(call, 200, facts, True, len(answer.raw),
                         (answer.raw.decode("utf-8", "replace") if untranslated else json.dumps(answer.body))
                         if store_bodies else None)
            if call.cache_leader and call.status == "ok":
                self.router_cache.keep(call, answer.target.endpoint.adapter.chat_response(answer.body, answer.target.model)
                           if same_dialect else answer.body)
            return web.Response(body=payload, content_type="application/json", headers=cache_header)
        kept: list | None = [] if call.cache_leader else None
        relay = RawRelay(answer, read_as, deadline, kept, self.clock) if untranslated else ChatRelay(
            answer, front.stream(call.facts.model, wants_usage), deadline, cache_header, kept, self.clock)

        def record(outcome: Outcome) -> None:  # at the final event, before its bytes go out; else at the end
            self._record(call, 200, outcome.facts, outcome.finished, outcome.chars,
                         outcome.body if store_bodies else None, outcome.status, outcome.error)

        sink = ResponseSink(request, relay.headers)
        record(await relay.run(sink, call.mark_first_chunk, record))
        if relay.cancelled:
            raise asyncio.CancelledError  # recorded; aiohttp drops what is left of the connection
        if kept and call.status == "ok":
            if same_dialect:  # the cache keeps every answer as OpenAI chat, served in any client's shape
                whole = replay_for(provider, front.endpoint).as_whole(b"".join(kept))
                completion = answer.target.endpoint.adapter.chat_response(whole, answer.target.model) if whole else None
            else:
                completion = None if as_is else INNER_CHAT.assemble(kept)
            if completion is not None:
                self.router_cache.keep(call, completion)
        return sink.response

    # -- the response cache ----------------------------------------------------------------------

    def _serve_cached(self, call: Call, front, entry: Entry, wants_usage: bool, as_is: str | None) -> web.Response:
        try:
            self._aim(call, self.routes.resolve(entry.meta["routed_to"])[0])  # priced as the model that answered
        except (KeyError, UnknownModel):
            pass
        call.routed_to, call.attempts, call.upstream_started = entry.meta.get("routed_to"), 0, None
        call.mark_first_chunk()
        answer, payload, content_type = render_cached(front, entry, call.facts.stream, wants_usage,
                                                      as_is, call.facts.model)
        self._record(call, 200, INNER_CHAT.wire.response_facts(call_route(call), answer), True, len(entry.body),
                     entry.body.decode("utf-8", "replace") if call.keep_bodies else None)
        return web.Response(body=payload, content_type=content_type, headers={HEADER: "HIT"})

    # -- pieces ------------------------------------------------------------------------------------

    def _new_call(self, request: web.Request, front, as_is: str | None) -> Call:
        trace_id, parent = trace_context(request.headers.get("traceparent"))
        return Call(id=new_trace_id(), trace_id=trace_id, span_id=new_span_id(), parent_span_id=parent,
                    started=time.time(), mode="router", route=Route(front.provider, as_is or front.endpoint),
                    host=request.host, path=request.path)

    def _aim(self, call: Call, target: Target) -> None:
        """Point the call at a deployment: prices, provider and host in the row are that deployment's."""
        call.route = Route(target.endpoint.provider, call.route.endpoint)
        call.priced_as = target.model
        call.routed_to = target.name
        call.host = urlsplit(target.base_url).netloc

    def _attempted(self, call: Call, attempt: Attempt) -> None:
        """Each attempt becomes a span."""
        target, result, failure = attempt.target, attempt.result, attempt.failure
        self._aim(call, target)  # the row names the last deployment tried, the one that answered if any did
        call.attempts = (call.attempts or 0) + 1
        call.attempt_spans.append({
            "span_id": new_span_id(), "trace_id": call.trace_id, "parent_span_id": call.span_id,
            "request_id": call.id, "name": f"attempt {target.name}",  # the dashboard counts retries and fallbacks by name
            "started_at": iso(attempt.at), "duration_ms": ms(attempt.started, attempt.ended),
            "status": "error" if failure else "ok",
            "attributes": json.dumps({
                "attempt": call.attempts, "deployment": target.name, "base_url": target.base_url,
                "http.status_code": result.status,
                "error": failure.describe(target.name) if failure else None,
                "failure": failure.kind if failure else None,
            }),
        })

    def _record(self, call: Call, status_code: int | None, facts: ResponseFacts, finished: bool, chars: int,
                body: str | None, status: str = "ok", error: str | None = None) -> None:
        if call.recorded:
            return
        call.recorded = True
        try:
            self.recorder.record(call, ended=time.time(), status_code=status_code, status=status, error=error,
                                 facts=facts, finished=finished, output_chars=chars, response_body=body)
        except Exception:  # recording must never break the router
            log.exception("tapgate: could not record routed call %s", call.id)

    def _record_cancelled(self, call: Call, request: web.Request) -> None:
        """A call stopped before its answer began: its client left, or the gateway is shutting down."""
        left = request.transport is None or request.transport.is_closing()
        why = f"the {'client left' if left else 'gateway stopped'} before the answer's first byte"
        status = "client_disconnected" if left else "error"
        self._record(call, None, ResponseFacts(error=why), True, 0, None, status, why)

    def _record_error(self, call: Call, e: RouterError) -> None:
        self._record(call, e.status, ResponseFacts(error=e.message), True, 0, None, "error", e.message)


class ResponseSink:
    """A relayed stream's way to its client: an aiohttp streamed response."""

    def __init__(self, request: web.Request, headers: dict[str, str]) -> None:
        self.request = request
        self.response = web.StreamResponse(headers=headers)

    async def prepare(self) -> None:
        await self.response.prepare(self.request)

    async def write(self, data: bytes) -> None:
        await self.response.write(data)

    async def write_eof(self) -> None:
        await self.response.write_eof()


def _error(e: RouterError, front) -> web.Response:
    return web.Response(status=e.status, body=front.error(e.status, e.body()), content_type="application/json",
                        headers=e.headers)


@dataclass(frozen=True, slots=True)
class Native:
    """The client's own request, for deployments that speak its dialect: body, API headers, and the
    notes translating it for the others made."""

    body: dict
    headers: dict[str, str]
    notes: list[str]


def call_route(call: Call) -> Route:
    """How the router reads what it relays: OpenAI's shapes for the call's endpoint."""
    return INNER_CHAT.route_for(call.route.endpoint)


def _retry_policy(config: RetryPolicy, params: dict | None) -> RetryPolicy:
    """Respan's retry_params from the request, over config's."""
    if not params:
        return config
    try:
        return RetryPolicy.model_validate({**config.model_dump(), **params})
    except ValidationError as e:
        err = e.errors()[0]
        where = ".".join(str(p) for p in err["loc"])
        raise BadRequest(f"retry_params.{where}: {err['msg']}", param=f"retry_params.{where}") from None


def _lower(headers) -> dict[str, str]:
    return {k.lower(): v for k, v in headers.items()}
