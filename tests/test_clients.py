"""core/clients.py: User-Agents of the clients people run, as those clients send them."""

import pytest

from core.clients import client_of


@pytest.mark.parametrize("agent, name", [
    ("claude-cli/2.0.14 (external, cli)", "Claude Code"),
    ("codex_cli_rs/0.46.0 (Debian 12.0.0; x86_64) xterm-256color", "Codex CLI"),
    ("codex_exec/0.46.0 (Ubuntu 24.4.0; x86_64) dumb", "Codex CLI"),
    ("GeminiCLI/0.9.0 (linux; x64)", "Gemini CLI"),
    ("OpenAI/Python 1.109.1", "OpenAI Python SDK"),
    ("OpenAI/JS 6.3.0", "OpenAI Node SDK"),
    ("Anthropic/Python 0.69.0", "Anthropic Python SDK"),
    ("Anthropic/JS 0.65.0", "Anthropic Node SDK"),
    ("google-genai-sdk/1.41.0 gl-python/3.13.0", "Google GenAI Python SDK"),
    ("curl/7.88.1", "curl"),
    ("python-requests/2.32.3", "Python requests"),
    ("Java/17.0.15", "Java"),
    ("Go-http-client/1.1", "Go"),
    ("node", "Node fetch"),
    ("Mozilla/5.0", None),
    ("", None),
    (None, None),
])
def test_known_clients(agent, name):
    assert client_of(agent) == name


def test_subscription_login_is_the_providers_to_name():
    from core.clients import subscription_login
    from providers.anthropic.wire import AnthropicMessages

    anthropic = AnthropicMessages()
    assert subscription_login(anthropic, "sk-ant-oat01-abc")
    assert not subscription_login(anthropic, "sk-ant-api03-abc") and not subscription_login(anthropic, None)
    assert not subscription_login(object(), "sk-ant-oat01-abc")  # a provider that names none


def test_codex_on_a_chatgpt_login_is_a_subscription_login():
    """chatgpt.com's Codex backend: its bearer is the ChatGPT login's access token, a JWT; OpenAI's
    API keys are not logins, and api.openai.com names no login."""
    from core.clients import subscription_login
    from providers import Registry

    chatgpt = Registry().route("chatgpt.com", 443, "/backend-api/codex/responses").provider
    assert subscription_login(chatgpt, "eyJhbGciOiJSUzI1NiJ9.eyJleHAiOjF9.sig")
    assert not subscription_login(chatgpt, "sk-proj-abc")
    openai = Registry().route("api.openai.com", 443, "/v1/responses").provider
    assert not subscription_login(openai, "eyJhbGciOiJSUzI1NiJ9.eyJleHAiOjF9.sig")
