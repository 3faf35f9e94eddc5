"""OpenAI and the hosts that speak its API: the compatible rows (compatible.py) and Ollama's native
API for custom hosts (ollama.py). Exports OPENAI; the registry (providers/__init__.py) reads it."""

from __future__ import annotations

from types import MappingProxyType

from providers.openai.chat import RELAYED, OpenAIChat
from providers.openai.compatible import COMPATIBLE
from providers.openai.front import front
from providers.openai.ollama import OllamaNative
from providers.openai.replay import openai_replay
from providers.openai.wire import OpenAIDialect, openai
from providers.package import Endpoint, ProviderPackage


def _row(dialect: OpenAIDialect, renames: tuple[tuple[str, str], ...] = (), bare_models: str | None = None) -> Endpoint:
    return Endpoint(dialect.name, OpenAIChat(dialect, renames), dialect, dialect.base_url, dialect.key_env,
                    bare_models, RELAYED)


def _any_name(name: str, base_url: str) -> Endpoint:
    """A name no row has, with a base URL: an OpenAI-compatible server (vLLM, Ollama's /v1, a private
    deployment), priced under "<name>/"."""
    dialect = OpenAIDialect(name=name, hosts=(), price_prefix=f"{name}/")
    return Endpoint(name, OpenAIChat(dialect), dialect, base_url, None, relays=RELAYED)


OPENAI = ProviderPackage(
    name="openai",
    wires=(openai, *COMPATIBLE),
    wire_type=OpenAIDialect,
    replay=openai_replay,
    endpoints=(
        # OpenAI's reasoning models refuse max_tokens; every unprefixed price row not claimed otherwise is OpenAI's.
        _row(openai, (("max_tokens", "max_completion_tokens"),), bare_models="*"),
        *(_row(d) for d in COMPATIBLE if d.key_env),
    ),
    any_name=_any_name,
    front=front,
    dialects=MappingProxyType({
        "openai": lambda name, host, prefix: OpenAIDialect(name=name, hosts=(host,), price_prefix=prefix),
        "ollama": lambda name, host, prefix: OllamaNative(name=name, hosts=(host,), price_prefix=prefix),
    }),
)

__all__ = ["OPENAI"]
