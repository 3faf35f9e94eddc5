"""The one registry: which provider owns a (host, path) for passthrough, which router row a provider
name is, which replay renders a wire's answers and which front a router path speaks. Every provider
package is listed here and nowhere else; each exports one ProviderPackage (providers/package.py)."""

from __future__ import annotations

import fnmatch
from collections.abc import Iterable, Mapping
from types import MappingProxyType

from cachetools import LRUCache

from providers.anthropic import ANTHROPIC
from providers.base import Provider, Route, host_matches
from providers.gemini import GEMINI
from providers.openai import OPENAI
from providers.openai.chat import INNER_CHAT
from providers.package import Endpoint, Front, ProviderPackage
from providers.pricing import PriceTable
from providers.replay import Replay

PACKAGES: tuple[ProviderPackage, ...] = (OPENAI, ANTHROPIC, GEMINI)
# Every built-in wire parser, in the order they are tried for a host.
BUILTIN: tuple[Provider, ...] = tuple(wire for package in PACKAGES for wire in package.wires)
# Router rows by provider name.
ENDPOINTS: Mapping[str, Endpoint] = MappingProxyType({e.name: e for p in PACKAGES for e in p.endpoints})
# The dialects router clients speak, by the router path they post to.
FRONTS: Mapping[str, Front] = MappingProxyType({p.front.path: p.front for p in PACKAGES if p.front is not None})


class Registry:
    """Looks up the provider route for a request. Custom hosts (a local Ollama or vLLM) are keyed by
    "host:port" so that they never claim other services on the same machine."""

    def __init__(self, providers: Iterable[Provider] = BUILTIN, custom: dict[str, Provider] | None = None):
        self.providers = tuple(providers)
        self.custom = dict(custom or {})
        self.by_name = {p.name: p for p in self.providers}
        self.by_name.update({p.name: p for p in self.custom.values()})
        self._for_host: LRUCache[str, tuple[Provider, ...]] = LRUCache(4096)

    def route(self, host: str, port: int, path: str) -> Route | None:
        """The route for a request, or None when it is not an LLM call we know. `path` may carry a query."""
        host = host.lower().rstrip(".")
        path = path.split("?", 1)[0]
        if (custom := self.custom.get(f"{host}:{port}")) is not None:
            return custom.route(host, path)
        for provider in self._providers_of(host):
            if (route := provider.route(host, path)) is not None:
                return route
        return None

    def _providers_of(self, host: str) -> tuple[Provider, ...]:
        """The providers that answer on a host: matched once per host, not on every call."""
        if (found := self._for_host.get(host)) is None:
            found = self._for_host[host] = tuple(p for p in self.providers if host_matches(host, p.hosts))
        return found

    def is_provider_host(self, host: str, port: int) -> bool:
        """True when connections to this host should be decrypted and inspected."""
        host = host.lower().rstrip(".")
        if f"{host}:{port}" in self.custom:
            return True
        return bool(self._providers_of(host))


def custom_provider(name: str, host: str, price_prefix: str = "", dialect: str = "openai") -> Provider:
    """A provider for a host given in config; `dialect` says which wire format it speaks."""
    for package in PACKAGES:
        if (make := package.dialects.get(dialect)) is not None:
            return make(name, host, price_prefix)
    known = " or ".join(repr(d) for p in PACKAGES for d in p.dialects)
    raise ValueError(f"unknown dialect {dialect!r}; expected {known}")


def replay_for(wire: object, endpoint: str | None = None) -> Replay | None:
    """The replay that serves this wire's answers, or None. Given an endpoint (Route.endpoint), also
    None when that endpoint is not one the replay handles (OpenAI responses, embeddings)."""
    for package in PACKAGES:
        if isinstance(wire, package.wire_type):
            return package.replay_for(wire, endpoint)
    return None


def endpoint(name: str, base_url: str | None = None) -> Endpoint | None:
    """The router row for a provider name; any other name with a base URL is an OpenAI-compatible
    server (vLLM, Ollama's /v1, a private deployment)."""
    found = ENDPOINTS.get(name)
    if found is None and base_url:
        return next((p.any_name(name, base_url) for p in PACKAGES if p.any_name is not None), None)
    return found


def provider_of(model: str, prices: PriceTable) -> str | None:
    """The provider of a bare model name, from the price table: a row under a provider's prefix
    ("gemini/gemini-2.5-flash"), else an unprefixed row one provider's bare_models claims."""
    rows = list(ENDPOINTS.values())
    for row in rows:
        if row.provider.price_prefix and prices.has(row.provider.price_prefix + model):
            return row.name
    if prices.has(model):
        for row in sorted((r for r in rows if r.bare_models), key=lambda r: r.bare_models == "*"):
            if fnmatch.fnmatchcase(model, row.bare_models):
                return row.name
    return None


def provider_names() -> list[str]:
    """The names the router reaches without a base_url."""
    return list(ENDPOINTS)


__all__ = [
    "BUILTIN", "ENDPOINTS", "FRONTS", "INNER_CHAT", "PACKAGES", "Endpoint", "Front", "Provider", "ProviderPackage",
    "Registry", "Replay", "Route", "custom_provider", "endpoint", "provider_names", "provider_of", "replay_for",
]
