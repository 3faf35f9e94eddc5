"""What makes two requests the same for the cache: a hash of the canonical request, always with the
caller's tenant, so one key's or customer's answers are never served to another."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any

from core.config import CacheConfig, CacheSettings
from providers.canonical import canonical
from providers.safe_json import loads

TRUE = ("1", "true", "yes", "on")
# The request fields and headers that control the cache (the router body, X-Tapgate-Params, headers).
FIELDS = ("cache_enabled", "cache_ttl", "cache_options")
HEADERS = ("x-tapgate-cache", *("x-tapgate-" + f.replace("_", "-") for f in FIELDS))
NO_SETTINGS = CacheSettings()


class BadCacheControl(ValueError):
    def __init__(self, param: str, message: str) -> None:
        super().__init__(message)
        self.param = param


@dataclass(frozen=True, slots=True)
class CacheControls:
    ttl: float
    by_customer: bool
    by_model: bool
    mode: str = "use"  # use | bypass (neither read nor write) | refresh (skip the read, write the answer)


def controls(config: CacheConfig, fields: dict[str, Any], headers: dict[str, str], key_id: str | None,
             model: str | None) -> CacheControls | None:
    """The cache settings for one call, or None when the cache is off for it. Request fields (router
    body, X-Tapgate-Params) and X-Tapgate-Cache-* headers win over the key's defaults, which win over
    the model's, which win over the global ones. Raises BadCacheControl."""
    if not (config.enabled or config.models or config.keys or any(f in fields for f in FIELDS)
            or any(h in headers for h in HEADERS)):
        return None  # every call asks this: when nothing anywhere turns the cache on, say so at once
    layers: list[CacheSettings | dict[str, Any]] = [config.models.get(model or "", NO_SETTINGS),
                                                     config.keys.get(key_id or "", NO_SETTINGS)]
    request: dict[str, Any] = {}
    if (v := _pick(fields, headers, "cache_enabled")) is not None:
        request["enabled"] = _bool("cache_enabled", v)
    if (v := _pick(fields, headers, "cache_ttl")) is not None:
        request["ttl"] = _seconds(v)
    options = _pick(fields, headers, "cache_options")
    if isinstance(options, str):
        try:
            options = loads(options)
        except ValueError:
            raise BadCacheControl("cache_options", "cache_options must be a JSON object") from None
    if options is not None:
        if not isinstance(options, dict):
            raise BadCacheControl("cache_options", "cache_options must be a JSON object")
        if "cache_by_customer" in options:
            request["by_customer"] = _bool("cache_options.cache_by_customer", options["cache_by_customer"])
        if "is_cached_by_model" in options:
            request["by_model"] = _bool("cache_options.is_cached_by_model", options["is_cached_by_model"])
    merged = {"enabled": config.enabled, "ttl": config.ttl, "by_customer": config.by_customer,
              "by_model": config.by_model}
    for layer in [*layers, request]:
        values = layer if isinstance(layer, dict) else layer.model_dump(exclude_none=True)
        merged.update(values)
    mode = (headers.get("x-tapgate-cache") or "use").strip().lower()
    if mode not in ("use", "bypass", "refresh"):
        raise BadCacheControl("X-Tapgate-Cache", "X-Tapgate-Cache must be bypass or refresh")
    if not merged["enabled"]:
        return None
    return CacheControls(merged["ttl"], merged["by_customer"], merged["by_model"], mode)


def cache_key(*, dialect: str, endpoint: str, body: Any, tenant: str, customer: str | None,
              controls: CacheControls, model: str | None) -> str:
    """sha256 over the canonical request (JSON with sorted keys, no whitespace), the endpoint and
    dialect, the tenant always, the customer when by_customer, the model unless by_model is off."""
    endpoint, canonical_body = canonical(endpoint, body)
    parts = {"dialect": dialect, "endpoint": endpoint, "tenant": tenant, "body": canonical_body,
             "model": model if controls.by_model else None,
             "customer": customer if controls.by_customer else None}
    text = json.dumps(parts, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)
    return hashlib.sha256(text.encode()).hexdigest()


def _pick(fields: dict[str, Any], headers: dict[str, str], name: str) -> Any:
    header = "x-tapgate-" + name.replace("_", "-")
    return headers[header] if header in headers else fields.get(name)


def _bool(param: str, value: Any) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in (*TRUE, "0", "false", "no", "off"):
        return value.strip().lower() in TRUE
    raise BadCacheControl(param, f"{param} must be true or false")


def _seconds(value: Any) -> float:
    try:
        ttl = float(value)
    except (TypeError, ValueError):
        raise BadCacheControl("cache_ttl", "cache_ttl must be a number of seconds") from None
    if not ttl > 0:
        raise BadCacheControl("cache_ttl", "cache_ttl must be above 0")
    return ttl
