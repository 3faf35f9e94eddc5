"""Where the router reaches each provider by name: its chat adapter, public base URL and the
environment variable that holds its key. Rows are data; config may override URL and variable."""

from __future__ import annotations

import fnmatch
import functools
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType

from providers.anthropic.wire import anthropic
from providers.base import Provider
from providers.chat import ChatAdapter
from providers.openai.compatible import COMPATIBLE
from providers.gemini.wire import gemini
from providers.openai.wire import OpenAIDialect, openai
from providers.openai.chat import OpenAIChat
from providers.pricing import PriceTable


@dataclass(frozen=True, slots=True)
class Endpoint:
    """A provider as the router calls it. `provider` is the capture-side object (prices, usage)."""

    name: str
    adapter: ChatAdapter
    provider: Provider
    base_url: str
    key_env: str | None
    # Which unprefixed price-table rows name this provider's models (bare names like "gpt-4.1-mini"):
    # a glob, tried from the most specific; the prefixed rows ("gemini/...") need no glob.
    bare_models: str | None = None


def _compatible(name: str, base_url: str, key_env: str) -> Endpoint:
    dialect = next(d for d in COMPATIBLE if d.name == name)
    return Endpoint(name, OpenAIChat(dialect), dialect, base_url, key_env)


@functools.cache
def _endpoints() -> Mapping[str, Endpoint]:
    from providers.anthropic.chat import anthropic_chat
    from providers.gemini.chat import gemini_chat

    rows = [
        Endpoint("openai", OpenAIChat(openai, (("max_tokens", "max_completion_tokens"),)), openai,
                 "https://api.openai.com/v1", "OPENAI_API_KEY", bare_models="*"),
        Endpoint("anthropic", anthropic_chat, anthropic, "https://api.anthropic.com", "ANTHROPIC_API_KEY",
                 bare_models="claude*"),
        Endpoint("gemini", gemini_chat, gemini, "https://generativelanguage.googleapis.com", "GEMINI_API_KEY"),
        _compatible("groq", "https://api.groq.com/openai/v1", "GROQ_API_KEY"),
        _compatible("mistral", "https://api.mistral.ai/v1", "MISTRAL_API_KEY"),
        _compatible("deepseek", "https://api.deepseek.com", "DEEPSEEK_API_KEY"),
        _compatible("openrouter", "https://openrouter.ai/api/v1", "OPENROUTER_API_KEY"),
        _compatible("together", "https://api.together.xyz/v1", "TOGETHER_API_KEY"),
        _compatible("xai", "https://api.x.ai/v1", "XAI_API_KEY"),
        _compatible("fireworks", "https://api.fireworks.ai/inference/v1", "FIREWORKS_API_KEY"),
    ]
    return MappingProxyType({e.name: e for e in rows})


def endpoint(name: str, base_url: str | None = None) -> Endpoint | None:
    """The endpoint for a provider name; any other name with a base URL is an OpenAI-compatible
    server (vLLM, Ollama's /v1, a private deployment)."""
    found = _endpoints().get(name)
    if found is None and base_url:
        dialect = OpenAIDialect(name=name, hosts=(), price_prefix=f"{name}/")
        return Endpoint(name, OpenAIChat(dialect), dialect, base_url, None)
    return found


def provider_of(model: str, prices: PriceTable) -> str | None:
    """The provider of a bare model name, from the price table: a row under a provider's prefix
    ("gemini/gemini-2.5-flash"), else an unprefixed row one provider's bare_models claims."""
    rows = list(_endpoints().values())
    for row in rows:
        if row.provider.price_prefix and prices.has(row.provider.price_prefix + model):
            return row.name
    if prices.has(model):
        for row in sorted((r for r in rows if r.bare_models), key=lambda r: r.bare_models == "*"):
            if fnmatch.fnmatchcase(model, row.bare_models):
                return row.name
    return None


def provider_names() -> list[str]:
    return list(_endpoints())
