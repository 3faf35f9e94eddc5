"""Which client made a call, from its User-Agent (Claude Code, Codex CLI, Gemini CLI, the SDKs by
language), so spend can be grouped by the tool that spent it (`tapgate spend --by client`); and whether
it was paid by a subscription login rather than per token."""

from __future__ import annotations

import re

# (pattern, name): the first match names the client. Coding agents first: they embed SDK names too.
KNOWN = [(re.compile(p, re.IGNORECASE), name) for p, name in (
    (r"^claude-cli/|claude-code", "Claude Code"),
    (r"^codex_|codex[-_ ]cli", "Codex CLI"),
    (r"GeminiCLI|gemini-cli", "Gemini CLI"),
    (r"^OpenAI/Python", "OpenAI Python SDK"),
    (r"^OpenAI/JS", "OpenAI Node SDK"),
    (r"^OpenAI/Java", "OpenAI Java SDK"),
    (r"^OpenAI/Go", "OpenAI Go SDK"),
    (r"^Anthropic/Python", "Anthropic Python SDK"),
    (r"^Anthropic/JS", "Anthropic Node SDK"),
    (r"^Anthropic/Java", "Anthropic Java SDK"),
    (r"^Anthropic/Go", "Anthropic Go SDK"),
    (r"google-genai-sdk/.*gl-python", "Google GenAI Python SDK"),
    (r"google-genai-sdk/.*gl-node", "Google GenAI Node SDK"),
    (r"google-genai-sdk/", "Google GenAI SDK"),
    (r"langchain", "LangChain"),
    (r"litellm", "LiteLLM"),
    (r"^curl/", "curl"),
    (r"^python-requests/", "Python requests"),
    (r"^python-httpx/", "Python httpx"),
    (r"aiohttp", "Python aiohttp"),
    (r"^Python-urllib/", "Python urllib"),
    (r"^okhttp/", "Java OkHttp"),
    (r"^Java(-http-client)?/", "Java"),
    (r"^Go-http-client/", "Go"),
    (r"^node(-fetch)?(/|$)|^undici", "Node fetch"),
)]


def client_of(user_agent: str | None) -> str | None:
    """The known client a User-Agent names, else None (the raw string is not kept: it can be anything)."""
    if not user_agent:
        return None
    for pattern, name in KNOWN:
        if pattern.search(user_agent):
            return name
    return None


def subscription_login(provider, credential: str | None) -> bool:
    """Whether the call's credential is a subscription login (its provider names their prefixes)."""
    prefixes = getattr(provider, "subscription_prefixes", ())
    return bool(credential and prefixes and credential.startswith(prefixes))
