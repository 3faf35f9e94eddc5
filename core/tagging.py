"""Who a call is for: X-Tapgate-* headers, the body's own user fields, and the W3C traceparent."""

from __future__ import annotations

import base64
import binascii
import os
import re
from dataclasses import dataclass, field
from typing import Any

from providers.safe_json import TooDeep, loads

HEADER_PREFIX = "x-tapgate-"
_TRACEPARENT = re.compile(r"^([0-9a-f]{2})-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})$")


class BadTag(ValueError):
    """A malformed X-Tapgate-* header; `param` names it for the error the client gets."""

    def __init__(self, param: str, message: str) -> None:
        super().__init__(message)
        self.param = param


@dataclass(slots=True)
class Tags:
    customer_identifier: str | None = None
    thread_identifier: str | None = None
    metadata: dict[str, Any] = field(default_factory=dict)
    # Respan's per-customer budget, sent with the call: budget_duration, period_budget, total_budget.
    customer_params: dict[str, Any] = field(default_factory=dict)
    # The whole X-Tapgate-Params object, for the fields other addons read (the cache's).
    params: dict[str, Any] = field(default_factory=dict)


def _json_object(param: str, text: str, allow_base64: bool = False) -> dict[str, Any]:
    try:
        value = loads(text)
    except TooDeep as e:
        raise BadTag(param, f"{param} must be a JSON object: {e}") from None
    except ValueError:
        value = None
        if allow_base64:
            try:
                value = loads(base64.b64decode(text + "=" * (-len(text) % 4), validate=False))
            except TooDeep as e:
                raise BadTag(param, f"{param} must be a JSON object: {e}") from None
            except (ValueError, binascii.Error):
                value = None
        if value is None:
            raise BadTag(
                param, f"{param} must be a JSON object{' (optionally base64)' if allow_base64 else ''}"
            ) from None
    if not isinstance(value, dict):
        raise BadTag(param, f"{param} must be a JSON object, not {type(value).__name__}")
    return value


def _identifier(param: str, value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, (str, int)) and not isinstance(value, bool):
        return str(value)
    raise BadTag(param, f"{param} must be a string")


def tags_from(headers, body_user: str | None, body_metadata: dict[str, Any]) -> Tags:
    """Headers win over X-Tapgate-Params, which wins over the body's own fields; raises BadTag."""
    tags = Tags(customer_identifier=body_user, metadata=dict(body_metadata))
    if raw := headers.get("x-tapgate-params"):
        params = tags.params = _json_object("X-Tapgate-Params", raw, allow_base64=True)
        if (c := _identifier("X-Tapgate-Params.customer_identifier", params.get("customer_identifier"))) is not None:
            tags.customer_identifier = c
        tags.thread_identifier = _identifier("X-Tapgate-Params.thread_identifier", params.get("thread_identifier"))
        meta = params.get("metadata")
        if meta is not None:
            if not isinstance(meta, dict):
                raise BadTag("X-Tapgate-Params.metadata", "X-Tapgate-Params.metadata must be a JSON object")
            tags.metadata.update(meta)
        cparams = params.get("customer_params")
        if cparams is not None:
            if not isinstance(cparams, dict):
                raise BadTag("X-Tapgate-Params.customer_params", "X-Tapgate-Params.customer_params must be a JSON object")
            tags.customer_params = cparams
            if tags.customer_identifier is None and cparams.get("customer_identifier") is not None:
                tags.customer_identifier = _identifier(
                    "X-Tapgate-Params.customer_params.customer_identifier", cparams["customer_identifier"]
                )
    if raw := headers.get("x-tapgate-customer-identifier"):
        tags.customer_identifier = raw
    if raw := headers.get("x-tapgate-thread-identifier"):
        tags.thread_identifier = raw
    if raw := headers.get("x-tapgate-metadata"):
        tags.metadata.update(_json_object("X-Tapgate-Metadata", raw))
    return tags


def strip_gateway_headers(headers) -> None:
    """Remove every X-Tapgate-* header: they are for the gateway, never the provider."""
    for name in [n for n in headers.keys() if n.lower().startswith(HEADER_PREFIX)]:
        del headers[name]


def trace_context(traceparent: str | None) -> tuple[str, str | None]:
    """(trace_id, parent_span_id) from a W3C traceparent, or a new trace when it is absent or invalid."""
    if traceparent and (m := _TRACEPARENT.match(traceparent.strip().lower())):
        version, trace_id, parent, _ = m.groups()
        if version != "ff" and trace_id != "0" * 32 and parent != "0" * 16:
            return trace_id, parent
    return new_trace_id(), None


def new_trace_id() -> str:
    return os.urandom(16).hex()


def new_span_id() -> str:
    return os.urandom(8).hex()


# Respan's request fields, sent at the top level of a router body (the OpenAI SDK's extra_body):
# for the gateway, never the provider.
ROUTER_FIELDS = ("customer_identifier", "thread_identifier", "metadata", "customer_params", "disable_log",
                 "fallback_models", "retry_params", "cache_enabled", "cache_ttl", "cache_options")


def pop_router_fields(body: dict[str, Any]) -> dict[str, Any]:
    """Take the gateway's fields out of a router request body (in place) and return them; raises BadTag."""
    fields = {name: body.pop(name) for name in ROUTER_FIELDS if name in body}
    for name in ("customer_identifier", "thread_identifier"):
        fields[name] = _identifier(name, fields.get(name))
    for name in ("metadata", "customer_params", "retry_params", "cache_options"):
        if fields.get(name) is not None and not isinstance(fields[name], dict):
            raise BadTag(name, f"{name} must be a JSON object")
    fallbacks = fields.get("fallback_models")
    if fallbacks is not None and not (isinstance(fallbacks, list) and all(isinstance(m, str) for m in fallbacks)):
        raise BadTag("fallback_models", "fallback_models must be a list of model names")
    return fields


def tags_for(headers, body_user: str | None, body_metadata: dict[str, Any], fields: dict[str, Any]) -> Tags:
    """Tags of any call: X-Tapgate-* headers win over the gateway's body fields (the router's Respan
    fields), which win over the body's own end-user and metadata fields."""
    tags = tags_from(headers, fields.get("customer_identifier") or body_user, fields.get("metadata") or body_metadata)
    tags.thread_identifier = tags.thread_identifier or fields.get("thread_identifier")
    if not tags.customer_params and fields.get("customer_params"):
        tags.customer_params = fields["customer_params"]
        if tags.customer_identifier is None:
            tags.customer_identifier = _identifier("customer_params.customer_identifier",
                                                   tags.customer_params.get("customer_identifier"))
    return tags
