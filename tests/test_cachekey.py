"""The cache key and the per-call cache controls."""

from __future__ import annotations

import json

import pytest

from core.cachekey import BadCacheControl, CacheControls, cache_key, controls
from core.config import CacheConfig
from providers.canonical import sampled

ON = CacheControls(ttl=60, by_customer=False, by_model=True)


def key(body, **kw):
    args = dict(dialect="openai", endpoint="chat.completions", body=body, tenant="key_1", customer=None,
                controls=ON, model="gpt-4o")
    return cache_key(**{**args, **kw})


BODY = {"model": "gpt-4o", "messages": [{"role": "user", "content": "hi"}], "temperature": 0}


def test_key_order_whitespace_and_delivery_do_not_matter():
    reordered = json.loads(json.dumps({"temperature": 0, "messages": BODY["messages"], "model": "gpt-4o"}, indent=4))
    assert key(BODY) == key(reordered)
    assert key(BODY) == key({**BODY, "stream": True, "stream_options": {"include_usage": True}})
    assert key(BODY, endpoint="streamGenerateContent") == key(BODY, endpoint="generateContent")


def test_what_changes_the_answer_changes_the_key():
    assert key(BODY) != key({**BODY, "messages": [{"role": "user", "content": "hello"}]})
    assert key(BODY) != key({**BODY, "tools": [{"type": "function", "function": {"name": "f"}}]})
    assert key(BODY) != key(BODY, endpoint="messages")
    assert key(BODY) != key(BODY, dialect="anthropic")


def test_tenant_always_customer_and_model_as_asked():
    assert key(BODY, tenant="key_1") != key(BODY, tenant="key_2")
    assert key(BODY, customer="a") == key(BODY, customer="b")  # not by customer
    by_customer = CacheControls(60, by_customer=True, by_model=True)
    assert key(BODY, customer="a", controls=by_customer) != key(BODY, customer="b", controls=by_customer)
    assert key(BODY, model="gpt-4o") != key(BODY, model="gpt-4o-mini")
    any_model = CacheControls(60, by_customer=False, by_model=False)
    assert key(BODY, model="gpt-4o", controls=any_model) == key(BODY, model="gpt-4o-mini", controls=any_model)


def test_controls_layer_request_over_key_over_model_over_global():
    config = CacheConfig.model_validate({"ttl": 10, "models": {"smart": {"enabled": True, "ttl": 20}},
                                         "keys": {"key_1": {"ttl": 30}}})
    assert controls(config, {}, {}, None, "gpt-4o") is None  # off unless enabled somewhere
    assert controls(config, {}, {}, None, "smart").ttl == 20
    assert controls(config, {}, {}, "key_1", "smart").ttl == 30
    assert controls(config, {"cache_ttl": 40}, {}, "key_1", "smart").ttl == 40
    assert controls(config, {"cache_ttl": 40}, {"x-tapgate-cache-ttl": "50"}, "key_1", "smart").ttl == 50
    assert controls(config, {"cache_enabled": False}, {}, None, "smart") is None
    found = controls(config, {"cache_enabled": True, "cache_options": {"cache_by_customer": True,
                                                                       "is_cached_by_model": False}}, {}, None, "m")
    assert (found.by_customer, found.by_model, found.mode) == (True, False, "use")
    headers = {"x-tapgate-cache-enabled": "true", "x-tapgate-cache-options": '{"cache_by_customer": true}',
               "x-tapgate-cache": "Refresh"}
    found = controls(config, {}, headers, None, "m")
    assert (found.by_customer, found.mode) == (True, "refresh")


@pytest.mark.parametrize("fields, headers, param", [
    ({"cache_ttl": "soon"}, {}, "cache_ttl"),
    ({"cache_ttl": 0}, {}, "cache_ttl"),
    ({"cache_enabled": "maybe"}, {}, "cache_enabled"),
    ({"cache_options": [1]}, {}, "cache_options"),
    ({}, {"x-tapgate-cache-options": "{nope"}, "cache_options"),
    ({}, {"x-tapgate-cache-options": "[" * 20_000 + "]" * 20_000}, "cache_options"),
    ({}, {"x-tapgate-cache": "sometimes"}, "X-Tapgate-Cache"),
])
def test_bad_controls_name_their_param(fields, headers, param):
    with pytest.raises(BadCacheControl) as e:
        controls(CacheConfig(enabled=True), fields, headers, None, "m")
    assert e.value.param == param


def test_sampled_answers():
    assert not sampled(BODY) and not sampled({"messages": []})
    assert sampled({**BODY, "temperature": 0.7}) and sampled({**BODY, "n": 2})
    assert sampled({"contents": [], "generationConfig": {"temperature": 1}})
    assert sampled({"contents": [], "generationConfig": {"candidateCount": 2}})
