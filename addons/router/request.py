"""What a router client sent, in the pipeline's terms: the credential it presented and its JSON body,
refused with the router's named errors when it cannot be read."""

from __future__ import annotations

from aiohttp import web

from core.errors import BadRequest, BodyTooLarge
from core.keys import hash_secret
from core.pipeline import Credential
from providers.safe_json import loads


def credential(request: web.BaseRequest, front) -> Credential:
    """X-Tapgate-Key as in passthrough, else the Bearer token, or x-api-key for Anthropic-shaped
    clients; with none, an empty one named for the header the client's dialect (`front`) uses."""
    if tapgate_key := request.headers.get("x-tapgate-key", "").strip():
        return Credential(hash_secret(tapgate_key), "X-Tapgate-Key", tapgate_key)
    header = request.headers.get("authorization", "")
    if header[:7].lower() == "bearer ":
        token = header[7:].strip()
        return Credential(hash_secret(token) if token else "", "bearer", token)
    if token := request.headers.get("x-api-key", ""):
        return Credential(hash_secret(token), "x-api-key", token)
    return Credential("", "bearer" if front.key_header == "authorization" else "x-api-key", "")


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
