"""Which provider owns a (host, path): the one place that knows every provider."""

from __future__ import annotations

from collections.abc import Iterable

from cachetools import LRUCache

from providers.anthropic.wire import anthropic
from providers.base import Provider, Route, host_matches
from providers.openai.compatible import COMPATIBLE
from providers.gemini.wire import gemini
from providers.openai.wire import OpenAIDialect, openai

BUILTIN: tuple[Provider, ...] = (openai, anthropic, gemini, *COMPATIBLE)


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
    if dialect == "openai":
        return OpenAIDialect(name=name, hosts=(host,), price_prefix=price_prefix)
    if dialect == "ollama":
        from providers.openai.ollama import OllamaNative

        return OllamaNative(name=name, hosts=(host,), price_prefix=price_prefix)
    raise ValueError(f"unknown dialect {dialect!r}; expected 'openai' or 'ollama'")


__all__ = ["BUILTIN", "Provider", "Registry", "Route", "custom_provider"]
