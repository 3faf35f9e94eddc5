"""Router: one OpenAI-compatible endpoint (and an Anthropic-shaped one) in front of every provider,
served as plain HTTP inside mitmdump on `tapgate_router`: the pipeline's second door.

The handler turns a request into the pipeline's terms (a Call and an Ask), runs the stages
(core/pipeline.py; its send stage, core/stages/route.py, plans, retries and fails over) and renders
what comes back in the client's dialect: a refusal as an error, a cache hit, or the deployment's
answer relayed as it streams. It is its own aiohttp server, not a mitmproxy mode: mitmproxy streams a
response only from the upstream it first connected to, so a fallback could not stream there.

A client that leaves stops its call: aiohttp cancels the handler when the connection drops, and with
it the attempt in flight (its upstream connection closed) and every retry and fallback after it."""

from __future__ import annotations

import asyncio
import json
import logging
import time

from aiohttp import web
from mitmproxy import ctx, exceptions

from addons.router import feedback
from addons.router import server as router_http
from addons.router.cache import keep_answer, render_cached
from addons.router.explain import EXPLAIN, explain
from addons.router.request import credential, read_json
from addons.settings import Settings
from addons.store import store_location
from core.cache import HEADER, Caching
from core.cachestore import Entry
from core.call import Call
from core.clients import client_of
from core.clock import SYSTEM, Clock
from core.config import RetryPolicy
from core.dispatch import Dispatch, Timeouts
from core.errors import BadRequest, GatewayFailed, PolicyBlocked, Refusal
from core.outcome import Outcome
from core.pipeline import Ask, CacheAsk, Hit, Stages
from core.prompts import PromptBook, PromptError
from core.recorder import BODY_LIMIT
from core.relay import ChatRelay, RawRelay
from core.route_plan import routing_for
from core.routing import Routes, Target, UnknownModel
from core.secrets import scrub
from core.sending import Upstream, WholeAnswer
from core.stages.identify import master_key
from core.stages.route import RouteCall, Routed, Sent, aim
from core.tagging import BadTag, new_span_id, new_trace_id, pop_router_fields, trace_context
from core.upstream import HttpUpstream
from providers import FRONTS, INNER_CHAT, replay_for
from providers.base import Route
from providers.chat import InvalidRequest, UnsupportedParam, UpstreamRequest

log = logging.getLogger(__name__)

# At shutdown, how long calls in flight may still finish before they are cancelled (and recorded as
# stopped by the gateway), unless tapgate_router_drain_seconds says otherwise. aiohttp's own default
# waits 60 s for them, then up to 60 s more: a gateway with a slow or streaming call open would
# outlive its Ctrl-C by a minute or two.
STOP_GRACE_SECONDS = 1


class Router:
    """`upstream` and `clock` are what routed calls are sent through and timed by: the real ones unless
    given (tests give a fake upstream on a virtual clock)."""

    def __init__(self, settings: Settings, stages: Stages, caching: Caching, upstream: Upstream | None = None,
                 clock: Clock = SYSTEM) -> None:
        self.settings = settings
        self.stages = stages
        self.caching = caching
        self.routes: Routes | None = None
        self.routing = None  # core/route_plan.py: routes, rules and experiments, from the config
        self.clock = clock
        self.upstream = upstream or HttpUpstream(clock)
        self.pipeline = None
        self.store_bodies = True
        self.runner: web.AppRunner | None = None
        self.address = ""
        self.prompts = PromptBook()  # stored prompt templates, for requests with Respan's `prompt` field
        # A guardrail's judge asks its LLM through this router's routing (core/policies/gate.py).
        if (gate := getattr(stages.input_policies, "gate", None)) is not None:
            gate.ask = self.ask
        self.mounts: list = []  # more endpoints on this port: each called with (app, router) at start
        self.stopping = False  # done() has begun: a call cancelled now was stopped by the gateway

    def load(self, loader) -> None:
        loader.add_option(
            "tapgate_router", str, "127.0.0.1:4000",
            "Address of the OpenAI-compatible router (plain HTTP: POST /v1/chat/completions, /v1/messages, "
            "/v1/embeddings, GET /v1/models). Empty turns it off.",
        )
        loader.add_option(
            "tapgate_router_drain_seconds", int, STOP_GRACE_SECONDS,
            "At a stop, how long routed calls in flight may still finish before they are cancelled (and "
            "recorded as stopped by the gateway). The router stops taking connections at once: with several "
            "processes on one port (tapgate_reuse_port), new calls go to the others, so a restart that should "
            "cut nothing sets this to the longest call.",
        )

    def configure(self, updated: set[str]) -> None:
        if "tapgate_config" in updated or self.routes is None:
            try:
                self.routing = routing_for(self.settings.config, self.settings.prices)
                self.routes = self.routing.routes
            except ValueError as e:
                raise exceptions.OptionsError(f"{ctx.options.tapgate_config}: router: {e}") from None
            for name, variable in self.routes.missing_keys():
                log.warning("tapgate: router deployment %s has no key: %s is not set; its calls fail with a 500 "
                            "until it is (or api_key_env names another variable)", name, variable)
            self.send = RouteCall(self.settings, self.routes, self.upstream, self.clock, self.routing)
            self.pipeline = self.stages.pipeline(send=self.send)
        if "tapgate_store_bodies" in updated:
            self.store_bodies = ctx.options.tapgate_store_bodies
        if "tapgate_router" in updated and ctx.options.tapgate_router:
            host, _, port = ctx.options.tapgate_router.rpartition(":")
            if not port.isdigit():
                raise exceptions.OptionsError(f"tapgate_router must be host:port, got {ctx.options.tapgate_router!r}")

    async def running(self) -> None:
        if not ctx.options.tapgate_router:
            return
        await self.upstream.start()
        self.prompts.open(store_location())
        app = web.Application(client_max_size=self.settings.config.router.max_body_bytes,
                              middlewares=[router_http.middleware(self._unrouted)])
        app.router.add_post("/v1/chat/completions", self.chat)
        app.router.add_post("/v1/messages", self.chat)
        app.router.add_post("/chat/completions", self.chat)
        app.router.add_post("/v1/embeddings", self.embeddings)
        app.router.add_post("/v1/responses", self.responses)
        app.router.add_get("/v1/models", self.models)
        app.router.add_post("/v1/feedback", feedback.handler(self.stages.identify, self.stages.record.recorder.store))
        for mount in self.mounts:
            mount(app, self)
        self.runner = router_http.Runner(app, self._unrouted, access_log=None, handle_signals=False,
                                         handler_cancellation=True,
                                         shutdown_timeout=max(0, ctx.options.tapgate_router_drain_seconds))
        await self.runner.setup()
        host, _, port = ctx.options.tapgate_router.rpartition(":")
        # tapgate_reuse_port (addons/shared.py): N processes listen on one router port, the kernel spreads calls.
        site = web.TCPSite(self.runner, host.strip("[]") or "127.0.0.1", int(port),
                           reuse_port=getattr(ctx.options, "tapgate_reuse_port", False) or None)
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

    async def drain(self) -> None:
        """Stop taking calls, let those in flight finish (tapgate_router_drain_seconds), cancel the rest.
        Called first by what the calls settle into (addons/shared.py), so they settle before it stops."""
        self.stopping = True
        if self.runner is not None:
            runner, self.runner = self.runner, None
            await runner.cleanup()

    async def done(self) -> None:
        await self.drain()
        self.prompts.close()
        await self.upstream.close()

    # -- endpoints ---------------------------------------------------------------------------------

    async def models(self, request: web.Request) -> web.Response:
        front = FRONTS["/v1/chat/completions"]
        try:
            self.stages.identify.router(credential(request, front))
        except Refusal as e:
            return _error(e, front)
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
        """One routed call through the pipeline. `as_is` names an OpenAI endpoint relayed without
        translation (embeddings, responses), which only OpenAI-compatible deployments serve."""
        if request.headers.get(EXPLAIN):  # the plan, not the call: nothing is sent or recorded (docs/routing.md)
            return await explain(self, request, front, as_is)
        call = self._new_call(request, front, as_is)
        try:
            ask = await self._ask(request, call, front, as_is)
            answer = await self.pipeline.enter(call, ask)
            if isinstance(answer, Hit):
                return self._serve_cached(call, *answer.answer)
            return await self._respond(request, call, ask, answer)
        except asyncio.CancelledError:  # the client left (or the gateway is stopping): record, then stop
            self._record_cancelled(call, request)
            raise
        except Refusal as e:
            return self._refused(call, e, front)
        except Exception:  # a bug of ours: the client gets a clean 500, the call is still recorded
            log.exception("tapgate: routed call %s failed", call.id)
            return self._refused(call, GatewayFailed("The gateway failed to route this call; its log has the "
                                                     "details."), front)
        finally:
            if call.cache.leader:
                self.caching.release(call)

    def _unrouted(self, request: web.BaseRequest, error: Refusal) -> bytes:
        """A request the router could not route (unknown path or method, malformed HTTP): recorded as
        refused, answered in the dialect its path implies."""
        front = FRONTS["/v1/messages" if request.path.startswith("/v1/messages") else "/v1/chat/completions"]
        call = self._new_call(request, front, None)
        call.tags.customer_identifier = request.headers.get("x-tapgate-customer-identifier")
        call.refuse(error)
        self._record_error(call, error)
        return front.error(error.status, error.body())

    # -- the request in the pipeline's terms ------------------------------------------------------

    async def _ask(self, request: web.Request, call: Call, front, as_is: str | None) -> Ask:
        """Read the body and take the gateway's fields out of it: the OpenAI chat body the router works
        in, and what the call asked for. A body that cannot be read (413 past the limit, 400 when it
        is not a JSON object or a field is malformed) is refused once the caller is identified."""
        config = self.settings.config.router
        body: dict = {}
        fields: dict = {}
        chat_body: dict = {}
        notes: list[str] = []
        unreadable = None
        try:
            body = await read_json(request, config.max_body_bytes)
            if not as_is and "prompt" in body:  # a stored prompt (Respan's field); /v1/responses has OpenAI's own
                try:
                    body, template = self.prompts.render(body)
                except PromptError as e:
                    raise BadRequest(str(e), param=e.param) from None
                call.prompt_id, call.prompt_version = template.name, template.version
            try:
                fields = pop_router_fields(body)
                chat_body, notes = (body, []) if as_is else front.to_chat(body, config.unsupported_params)
            except (BadTag, InvalidRequest, UnsupportedParam) as e:
                raise BadRequest(str(e), param=e.param) from None
        except Refusal as e:
            unreadable, fields, chat_body = e, {}, {}
        inner = INNER_CHAT.route_for(as_is)  # read as OpenAI chat, or as the OpenAI endpoint relayed
        chat_body, unknown = INNER_CHAT.documented_only(inner.endpoint, chat_body, config.extra_params)
        if unknown:
            call.notes.append(f"not forwarded (not an OpenAI parameter; router.extra_params passes it): "
                              f"{', '.join(unknown)}")
        call.facts = INNER_CHAT.wire.request_facts(inner, chat_body)
        call.body = chat_body
        if self.store_bodies and body:
            call.request_body = json.dumps(body, ensure_ascii=False)[:BODY_LIMIT]
        wants_usage = front.wants_usage(body)
        cache = None if as_is == "responses" else CacheAsk(
            "router", as_is or "chat", chat_body, "master",
            lambda call, entry: self._render_hit(call, front, entry, wants_usage, as_is))
        routed = Routed(front, chat_body, body, front.native_headers(request.headers), notes, as_is, wants_usage)
        return Ask("router", credential(request, front), _lower(request.headers), fields, cache,
                   deployment=self.send.resolve, store_bodies=self.store_bodies, unreadable=unreadable,
                   routed=routed)

    def _new_call(self, request: web.BaseRequest, front, as_is: str | None) -> Call:
        trace_id, parent = trace_context(request.headers.get("traceparent"))
        return Call(id=new_trace_id(), trace_id=trace_id, span_id=new_span_id(), parent_span_id=parent,
                    started=time.time(), mode="router", route=Route(front.provider, as_is or front.endpoint),
                    host=request.host, path=request.path, client=client_of(request.headers.get("user-agent")))

    # -- what comes back, in the client's dialect ------------------------------------------------

    async def _respond(self, request: web.Request, call: Call, ask: Ask, sent: Sent) -> web.StreamResponse:
        """The deployment's answer relayed to the client: whole, or as it streams, the call recorded at
        its final event (before those bytes go out) and its answer kept in the cache if it leads."""
        routed, answer = ask.routed, sent.answer
        front, as_is = routed.front, routed.as_is
        cache_header = {HEADER: "MISS" if call.cache.leader else "BYPASS"} if call.cache.key else {}
        provider = answer.target.endpoint.provider
        # How to read what is relayed untranslated: the provider's own shape, or OpenAI's for as-is endpoints.
        read_as = Route(provider, front.endpoint) if sent.same_dialect else call_route(call)
        untranslated = bool(as_is) or sent.same_dialect
        if isinstance(answer, WholeAnswer):
            call.mark_first_chunk()
            facts = (provider if sent.same_dialect else INNER_CHAT.wire).response_facts(read_as, answer.body)
            if call.guard is not None and call.guard.check_answer(answer.body):  # restored, or redacted
                answer.raw = json.dumps(answer.body, ensure_ascii=False).encode()
            if call.guard is not None and (block := call.guard.block) is not None:
                self.pipeline.leave(call, Outcome(facts, True, len(answer.raw), None, status_code=block.status))
                return _error(PolicyBlocked(block), front)
            payload = answer.raw if untranslated else front.whole(answer.body, call.facts.model)
            kept = (answer.raw.decode("utf-8", "replace") if untranslated else json.dumps(answer.body))
            self.pipeline.leave(call, Outcome(facts, True, len(answer.raw), kept if call.keep_bodies else None,
                                              status_code=200))
            if call.cache.leader and call.status == "ok":
                keep_answer(self.caching, self.settings, call, answer.target.endpoint.adapter.chat_response(
                    answer.body, answer.target.model) if sent.same_dialect else answer.body)
            return web.Response(body=payload, content_type="application/json", headers=cache_header)
        chunks: list | None = [] if call.cache.leader else None
        out, stall = front.stream(call.facts.model, routed.wants_usage), sent.limits.stall
        guard = call.guard.stream() if call.guard is not None else None  # restore, response policies
        relay = RawRelay(answer, read_as, sent.deadline, chunks, self.clock, stall, out.error, guard) if untranslated \
            else ChatRelay(answer, out, sent.deadline, cache_header, chunks, self.clock, stall, sent.resume, guard)

        def record(outcome: Outcome) -> None:  # at the final event, before its bytes go out; else at the end
            outcome.status_code = 200
            if not call.keep_bodies:
                outcome.body = None
            self.pipeline.leave(call, outcome)

        sink = ResponseSink(request, relay.headers)
        record(await relay.run(sink, call.mark_first_chunk, record))
        if relay.cancelled:
            raise asyncio.CancelledError  # recorded; aiohttp drops what is left of the connection
        if chunks and call.status == "ok":
            if sent.same_dialect:  # the cache keeps every answer as OpenAI chat, served in any client's shape
                whole = replay_for(provider, front.endpoint).as_whole(b"".join(chunks))
                completion = answer.target.endpoint.adapter.chat_response(whole, answer.target.model) if whole else None
            else:
                completion = None if as_is else INNER_CHAT.assemble(chunks)
            if completion is not None:
                keep_answer(self.caching, self.settings, call, completion)
        return sink.response

    async def ask(self, model: str, messages: list[dict[str, str]]) -> str:
        """One short chat completion through the routing, for a guardrail's judge: one attempt, no recording."""
        if self.runner is None or self.routes is None:
            raise RuntimeError("the router is not running")
        plan = self.routes.plan([model], now=self.clock.now())
        config = self.settings.config.router
        body = {"model": model, "messages": messages, "max_tokens": 5, "temperature": 0}

        def prepare(target: Target) -> tuple[UpstreamRequest, bool]:
            return target.endpoint.adapter.chat_request(body, target.model, stream=False), False

        answer = await Dispatch(self.upstream, self.routes.cooling, self.clock).send(
            plan, prepare, stream=False, policy=RetryPolicy(retry_enabled=False, num_retries=0),
            deadline=self.clock.now() + config.timeout, timeouts=Timeouts(config.connect_timeout, config.first_byte_timeout),
            on_attempt=lambda attempt: None)
        content = answer.body["choices"][0]["message"]["content"] if isinstance(answer, WholeAnswer) else None
        return content if isinstance(content, str) else ""

    def _render_hit(self, call: Call, front, entry: Entry, wants_usage: bool, as_is: str | None):
        return (entry, *render_cached(front, entry, call.facts.stream, wants_usage, as_is, call.facts.model))

    def _serve_cached(self, call: Call, entry: Entry, answer: dict, payload: bytes, content_type: str) -> web.Response:
        try:
            aim(call, self.routes.resolve(entry.meta["routed_to"])[0])  # priced as the model that answered
        except (KeyError, UnknownModel):
            pass
        call.routing.deployment, call.routing.attempts, call.upstream_started = entry.meta.get("routed_to"), 0, None
        call.mark_first_chunk()
        facts = INNER_CHAT.wire.response_facts(call_route(call), answer)
        body = entry.body.decode("utf-8", "replace") if call.keep_bodies else None
        self.pipeline.leave(call, Outcome(facts, True, len(entry.body), body, status_code=200))
        return web.Response(body=payload, content_type=content_type, headers={HEADER: "HIT"})

    def _refused(self, call: Call, e: Refusal, front) -> web.Response:
        e.message = scrub(e.message, call.secrets)  # a provider's message may echo the key it was sent
        if call.refusal is None:
            call.refuse(e)
        self._record_error(call, e)
        return _error(e, front)

    def _record_cancelled(self, call: Call, request: web.Request) -> None:
        """A call stopped before its answer began: its client left, or the gateway is shutting down."""
        # At shutdown aiohttp closes the connection as it cancels the handler: not the client leaving.
        left = not self.stopping and (request.transport is None or request.transport.is_closing())
        why = f"the {'client left' if left else 'gateway stopped'} before the answer's first byte"
        self.pipeline.leave(call, Outcome.failed(None, "client_disconnected" if left else "error", why))

    def _record_error(self, call: Call, e: Refusal) -> None:
        self.pipeline.leave(call, Outcome.failed(e.status, "error", e.message))


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


def _error(e: Refusal, front) -> web.Response:
    return web.Response(status=e.status, body=front.error(e.status, e.body()), content_type="application/json",
                        headers=e.headers)


def call_route(call: Call) -> Route:
    """How the router reads what it relays: OpenAI's shapes for the call's endpoint."""
    return INNER_CHAT.route_for(call.route.endpoint)


def _lower(headers) -> dict[str, str]:
    return {k.lower(): v for k, v in headers.items()}
