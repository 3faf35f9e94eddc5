"""X-Tapgate-Explain: a router request asking which routing rule it would match, why, and the plan of
deployments, answered as JSON instead of being sent. The caller is identified as for any call; nothing
is reserved, sent upstream or recorded (`tapgate route --explain` answers the same from a file)."""

from __future__ import annotations

from aiohttp import web

from addons.router.request import credential, read_json
from core.errors import BadRequest, Refusal, RefusedByRule
from core.routing import UnknownModel
from core.rules import features_of
from core.tagging import BadTag, pop_router_fields, tags_for
from providers import INNER_CHAT
from providers.chat import InvalidRequest, UnsupportedParam

EXPLAIN = "x-tapgate-explain"


async def explain(router, request: web.Request, front, as_is: str | None) -> web.Response:
    config = router.settings.config.router
    headers = {k.lower(): v for k, v in request.headers.items()}
    try:
        caller = router.stages.identify.router(credential(request, front))
        body = await read_json(request, config.max_body_bytes)
        try:
            fields = pop_router_fields(body)
            chat, _ = (body, []) if as_is else front.to_chat(body, config.unsupported_params)
            facts = INNER_CHAT.wire.request_facts(INNER_CHAT.route_for(as_is), chat)
            tags = tags_for(headers, facts.user, facts.metadata, fields)
        except (BadTag, InvalidRequest, UnsupportedParam) as e:
            raise BadRequest(str(e), param=e.param) from None
        if not facts.model:
            raise BadRequest("model is required", param="model")
        key = caller.key
        features = features_of(chat, metadata=tags.metadata, customer=tags.customer_identifier,
                                key_id=key.id if key else None, key_name=key.name if key else None, headers=headers,
                                thread=tags.thread_identifier)
        try:
            planned = router.routing.route(features, facts.model, fields.get("fallback_models"), stream=facts.stream,
                                           max_tokens=facts.max_tokens, now=router.clock.now())
        except RefusedByRule as e:
            return web.json_response({"model": facts.model, "rule": e.rule, "reason": "refused", "refused": e.message,
                                      "plan": []})
        except UnknownModel as e:
            raise BadRequest(f"The model {e.args[0]!r} is not an alias, a provider/model name or a known model.",
                             param="model") from None
    except Refusal as e:
        return web.Response(status=e.status, body=front.error(e.status, e.body()), content_type="application/json")
    return web.json_response(planned.explain())
