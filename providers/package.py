"""What a provider package exports: one object that carries everything tapgate knows of that
provider, so the registry (providers/__init__.py) and the doors never need its name."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Protocol

from providers.base import Provider
from providers.chat import ChatAdapter, Unsupported
from providers.replay import Replay


@dataclass(frozen=True, slots=True)
class Endpoint:
    """A provider as the router calls it by name (a row: name, base URL, key variable, bare model
    names). `provider` is the wire parser (prices, usage); config may override URL and variable."""

    name: str
    adapter: ChatAdapter
    provider: Provider
    base_url: str
    key_env: str | None
    # Which unprefixed price-table rows name this provider's models (bare names like "gpt-4.1-mini"):
    # a glob, tried from the most specific; the prefixed rows ("gemini/...") need no glob.
    bare_models: str | None = None
    # OpenAI endpoints besides chat that it serves untranslated (the router's /v1/embeddings, /v1/responses).
    relays: tuple[str, ...] = ()


class Front(Protocol):
    """A dialect router clients speak (its path on the router); the router works in OpenAI chat
    inside and a front converts at the edges."""

    path: str
    endpoint: str
    provider: Provider  # whose error shape the client expects
    key_header: str  # where its SDK sends the API key
    # The wire whose deployments get the client's own body untranslated, or None.
    native: Provider | None

    def native_headers(self, headers: Any) -> dict[str, str]: ...

    def to_chat(self, body: dict[str, Any], unsupported: Unsupported) -> tuple[dict[str, Any], list[str]]: ...

    def wants_usage(self, body: dict[str, Any]) -> bool: ...

    def whole(self, completion: dict[str, Any], model: str) -> bytes: ...

    def stream(self, model: str, wants_usage: bool) -> Any: ...

    def error(self, status: int, body: dict[str, Any]) -> bytes: ...


# Builds a wire parser for a custom host from config: (name, host, price_prefix) -> Provider.
Dialect = Callable[[str, str, str], Provider]


@dataclass(frozen=True)
class ProviderPackage:
    """One provider: its wire parsers (passthrough, tried in order for a host and path), its router
    rows and chat translation (on each Endpoint), its replay renderers, its front, and the dialects a
    custom host in config may speak."""

    name: str
    wires: tuple[Provider, ...]
    # The class of the wires whose answers `replay` renders (custom hosts of the dialect included).
    wire_type: type
    replay: Replay | None = None
    endpoints: tuple[Endpoint, ...] = ()
    # A row for a name no package has, given a base URL (an OpenAI-compatible server), or None.
    any_name: Callable[[str, str], Endpoint] | None = None
    front: Front | None = None
    dialects: Mapping[str, Dialect] = field(default_factory=lambda: MappingProxyType({}))

    def replay_for(self, wire: object, endpoint: str | None = None) -> Replay | None:
        """The replay of this wire's answers when it is one of ours; with an endpoint, None too when
        the replay does not handle that endpoint (OpenAI responses, embeddings)."""
        if self.replay is None or not isinstance(wire, self.wire_type):
            return None
        return self.replay if endpoint is None or endpoint in self.replay.endpoints else None
