"""What a router client sent: who it is (the master key, a gateway key, or nobody) and its JSON body,
each refused with the router's named errors; and what a refused caller asked for, for its row."""

from __future__ import annotations

import hmac
import json
import os

from aiohttp import web
from mitmproxy import ctx

from addons.capture import BODY_LIMIT
from core.call import Call
from core.config import RouterConfig, TapgateConfig
from core.errors import BadRequest, BodyTooLarge, RouterError, Unauthorized
from core.keys import GatewayKey, KeyRing, hash_secret
from core.tagging import BadTag, pop_router_fields
from providers import INNER_CHAT
from providers.chat import InvalidRequest, UnsupportedParam
from providers.safe_json import loads


def master_key(config: RouterConfig) -> str | None:
    return config.master_key or os.environ.get(config.master_key_env) or None


def authenticate(request: web.Request, config: TapgateConfig, ring: KeyRing,
                 expected: str = "authorization") -> GatewayKey | None:
    """The caller's gateway key: None for the master key, or for anyone when the router has no master
    key and keys are not required. X-Tapgate-Key as in passthrough, else the Bearer token, or x-api-key
    for Anthropic-shaped clients; an error names the header the caller sent, else the one its dialect
    (`expected`) uses. Raises Unauthorized, carrying the key when it is known but may not be used."""
    header = request.headers.get("authorization", "")
    bearer = header[:7].lower() == "bearer "
    tapgate_key = request.headers.get("x-tapgate-key", "").strip()
    token = tapgate_key or (header[7:].strip() if bearer else request.headers.get("x-api-key", ""))
    master = master_key(config.router)
    if master and token and hmac.compare_digest(token.encode(), master.encode()):
        return None
    if token and (key := ring.by_hash(hash_secret(token))) is not None:
        if problem := key.problem():
            raise Unauthorized(problem[0].upper() + problem[1:] + ".", key)
        return key
    if not master and not config.require_key:
        return None
    where = "in the X-Tapgate-Key header" if tapgate_key else "as the Bearer token" \
        if bearer or (not token and expected == "authorization") else "in the x-api-key header"
    raise Unauthorized(f"Incorrect API key: send the gateway master key or a gateway key {where}."
                       if token else f"Missing API key: send a gateway key {where}.")


async def read_json(request: web.Request, limit: int) -> dict:
    """The body as a JSON object; 413 past `limit` bytes, 400 when it is not a JSON object (or is
    nested too deep)."""
    if request.content_length is not None and request.content_length > limit:
        raise BodyTooLarge(f"The request body is {request.content_length} bytes; the limit is {limit}.")
    try:
        raw = await request.read()
    except web.HTTPRequestEntityTooLarge:
        raise BodyTooLarge(f"The request body is over the limit of {limit} bytes.") from None
    try:
        body = loads(raw)
    except ValueError as e:
        raise BadRequest(f"The request body is not valid JSON: {e}") from None
    if not isinstance(body, dict):
        raise BadRequest("The request body must be a JSON object.")
    return body


async def note_refused(request: web.Request, call: Call, front, limit: int) -> None:
    """What a refused caller asked for, for its row: the model and, when bodies are kept, the body
    (as passthrough records a refused call). Best effort: a body that cannot be read is left out."""
    try:
        body = await read_json(request, limit)
        pop_router_fields(body)
        chat_body, _ = front.to_chat(body, "drop")
        call.facts = INNER_CHAT.wire.request_facts(INNER_CHAT.route, chat_body)
    except (RouterError, BadTag, InvalidRequest, UnsupportedParam, ValueError, TypeError):
        return
    if ctx.options.tapgate_store_bodies:
        call.request_body = json.dumps(body, ensure_ascii=False)[:BODY_LIMIT]
