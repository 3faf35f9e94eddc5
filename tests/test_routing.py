"""Model names to deployments: aliases, provider/model, bare names, weights and cooldown."""

from __future__ import annotations

import random
from collections import Counter

import pytest

from core.config import RouterConfig
from core.routing import Routes, UnknownModel
from providers.pricing import PriceTable

PRICES = PriceTable.load()


def routes(**config) -> Routes:
    return Routes(RouterConfig.model_validate(config), PRICES, env={"OPENAI_API_KEY": "sk-o", "KEY_B": "sk-b"})


def test_provider_slash_model_and_bare_names():
    r = routes()
    (t,) = r.resolve("anthropic/claude-sonnet-4-5")
    assert (t.provider, t.model, t.base_url) == ("anthropic", "claude-sonnet-4-5", "https://api.anthropic.com")
    assert [t.provider for t in r.resolve("gemini-2.5-flash")] == ["gemini"]
    assert [t.provider for t in r.resolve("claude-sonnet-4-5")] == ["anthropic"]
    (t,) = r.resolve("gpt-4.1-mini")
    assert (t.provider, t.key) == ("openai", "sk-o")  # the key from OPENAI_API_KEY, in the gateway only
    with pytest.raises(UnknownModel):
        r.resolve("no-such-model")
    with pytest.raises(UnknownModel):
        r.resolve("nosuchprovider/x")  # an unknown provider without a base_url


def test_aliases_with_deployments_keys_and_base_urls():
    r = routes(models={"smart": [
        {"provider": "openai", "model": "gpt-4.1", "base_url": "http://127.0.0.1:1/v1/", "api_key_env": "KEY_B"},
        {"provider": "vllm", "model": "llama", "base_url": "http://127.0.0.1:2/v1", "weight": 3},
    ]})
    a, b = r.resolve("smart")
    assert (a.base_url, a.key) == ("http://127.0.0.1:1/v1", "sk-b")
    assert (b.provider, b.endpoint.adapter.dialect.name) == ("vllm", "vllm")  # any OpenAI-compatible server


def test_weights_split_traffic():
    r = routes(models={"m": [{"provider": "openai", "model": "a", "weight": 3},
                             {"provider": "openai", "model": "b", "weight": 1}]})
    rng = random.Random(3)
    first = Counter(r.plan(["m"], rng)[0].model for _ in range(4000))
    assert 0.70 < first["a"] / 4000 < 0.80  # 3:1


def test_fallbacks_request_alias_then_config():
    r = routes(models={"m": {"deployments": [{"provider": "openai", "model": "a"}], "fallback_models": ["x"]}},
               fallback_models={"gpt-4o": ["claude-sonnet-4-5"]})
    assert r.fallbacks("m", ["y", "m"]) == ["y"]
    assert r.fallbacks("m", None) == ["x"]
    assert r.fallbacks("gpt-4o", None) == ["claude-sonnet-4-5"]


def test_a_failing_deployment_cools_down_and_one_probe_brings_it_back(monkeypatch):
    r = routes(models={"m": [{"provider": "openai", "model": "a"}, {"provider": "openai", "model": "b"}]},
               cooldown={"failures": 2, "seconds": 30})
    now = [1000.0]
    monkeypatch.setattr("core.routing.time.monotonic", lambda: now[0])
    r.cooling.failed("openai/a", now[0])
    assert {t.model for t in r.plan(["m"])} == {"a", "b"}  # one failure: still tried
    r.cooling.failed("openai/a", now[0])
    assert [t.model for t in r.plan(["m"])] == ["b"]  # cooling: skipped
    now[0] += 31
    assert "a" in [t.model for t in r.plan(["m"])]  # planned, but a plan that never reaches it holds nothing
    assert "a" in [t.model for t in r.plan(["m"])]
    r.cooling.attempting("openai/a")  # this call probes it
    assert [t.model for t in r.plan(["m"])] == ["b"]  # others skip it while the probe is out
    r.cooling.succeeded("openai/a")
    assert {t.model for t in r.plan(["m"])} == {"a", "b"}


def test_only_failures_and_recoveries_are_relayed_to_other_processes():
    r = routes(models={"m": [{"provider": "openai", "model": "a"}]}, cooldown={"failures": 2, "seconds": 30})
    relayed = []
    r.cooling.relay = lambda event, name: relayed.append((event, name))
    r.cooling.succeeded("openai/a")  # healthy all along: nothing to tell
    r.cooling.failed("openai/a", 10.0)
    r.cooling.succeeded("openai/a")  # a recovery
    r.cooling.succeeded("openai/a")
    r.cooling.failed("openai/a", 20.0, relayed=True)  # another process's failure, counted here
    r.cooling.succeeded("openai/a")  # this process's recovery of it: the others counted it too
    assert relayed == [("failed", "openai/a"), ("succeeded", "openai/a"), ("succeeded", "openai/a")]


def test_when_everything_cools_the_plan_still_tries():
    r = routes(models={"m": [{"provider": "openai", "model": "a"}]}, cooldown={"failures": 1, "seconds": 30})
    r.cooling.failed("openai/a", 10**9)
    assert [t.model for t in r.plan(["m"])] == ["a"]


def test_unknown_provider_in_an_alias_is_a_config_error():
    with pytest.raises(ValueError, match="unknown provider 'nope'"):
        routes(models={"m": [{"provider": "nope", "model": "a"}]})
