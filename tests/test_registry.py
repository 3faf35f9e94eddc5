"""The one registry: every provider package is found by host and path, by name, by wire (replay) and
by router path (front), and the addons reach providers only through it and the shared modules."""

from __future__ import annotations

import ast
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from providers import (
    BUILTIN,
    ENDPOINTS,
    FRONTS,
    PACKAGES,
    Registry,
    custom_provider,
    endpoint,
    provider_names,
    replay_for,
)
from providers.base import host_matches

ROOT = Path(__file__).resolve().parent.parent
DOORS_AND_CORE = sorted([*(ROOT / "addons").rglob("*.py"), *(ROOT / "core").glob("*.py")])


def test_each_package_exports_one_object_the_registry_lists():
    assert [p.name for p in PACKAGES] == ["openai", "anthropic", "gemini"]
    assert BUILTIN == tuple(w for p in PACKAGES for w in p.wires)
    assert {p.name for p in PACKAGES} <= set(provider_names())


@pytest.mark.parametrize("name", sorted(ENDPOINTS))
def test_a_router_row_reaches_a_host_its_wire_describes(name):
    """A host is described once: the row's base URL is on a host of its own wire parser, and
    passthrough routes that URL's chat path back to the same wire."""
    row = ENDPOINTS[name]
    url = urlsplit(row.base_url)
    assert host_matches(url.hostname, row.provider.hosts)
    path = url.path + ("/v1/messages" if name == "anthropic" else "/chat/completions")
    if name == "gemini":
        path = "/v1beta/models/gemini-2.5-flash:generateContent"
    route = Registry().route(url.hostname, 443, path)
    assert route is not None and route.provider is row.provider


def test_by_name_and_base_url():
    assert endpoint("nope") is None
    vllm = endpoint("vllm", "http://127.0.0.1:8000/v1")
    assert (vllm.base_url, vllm.key_env, vllm.provider.price_prefix) == ("http://127.0.0.1:8000/v1", None, "vllm/")
    assert "embeddings" in vllm.relays and "embeddings" in endpoint("groq").relays
    assert endpoint("anthropic").relays == () and endpoint("gemini").relays == ()


def test_fronts_by_router_path():
    assert sorted(FRONTS) == ["/v1/chat/completions", "/v1/messages"]
    assert all(front.path == path for path, front in FRONTS.items())


def test_replay_by_wire_and_custom_dialects():
    assert all(replay_for(w) is not None for w in BUILTIN)  # Gemini's /v1beta/openai gets OpenAI's
    with pytest.raises(ValueError, match="unknown dialect 'grpc'; expected 'openai' or 'ollama'"):
        custom_provider("x", "localhost", dialect="grpc")


def _provider_imports(path: Path) -> list[str]:
    tree = ast.parse(path.read_text())
    names = [n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module]
    names += [a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names]
    return [n for n in names if n == "providers" or n.startswith("providers.")]


@pytest.mark.parametrize("path", DOORS_AND_CORE, ids=lambda p: str(p.relative_to(ROOT)))
def test_addons_reach_providers_through_the_registry(path):
    """No addon imports a provider package's insides; the registry and shared modules only."""
    packages = tuple(f"providers.{p.name}" for p in PACKAGES)
    assert [m for m in _provider_imports(path) if m.startswith(packages)] == []


def test_codex_on_a_chatgpt_login_is_routed_as_the_responses_api():
    """Codex CLI signed in with ChatGPT samples at chatgpt.com/backend-api/codex/responses: OpenAI's
    Responses dialect, priced from OpenAI's rows; the backend's other paths are not calls, and the
    router has no row for it (it is reached only with a login, never with a key the gateway holds)."""
    registry = Registry()
    route = registry.route("chatgpt.com", 443, "/backend-api/codex/responses")
    assert route is not None and route.provider.name == "chatgpt" and route.endpoint == "responses"
    assert route.prices_under == ""
    for path in ("/backend-api/codex/models", "/backend-api/wham/accounts/check", "/v1/responses"):
        assert registry.route("chatgpt.com", 443, path) is None, path
    assert registry.is_provider_host("chatgpt.com", 443) and "chatgpt" not in ENDPOINTS
