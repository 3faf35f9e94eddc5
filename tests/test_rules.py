"""Routing rules as a table: request -> rule -> plan; config errors naming file, line and field; the
`tapgate route --explain` command."""

from __future__ import annotations

import json
import random
import re

import pytest

from cli.main import main
from core.config import ConfigError, TapgateConfig, load_config
from core.errors import RefusedByRule
from core.route_plan import route, routes_for
from core.rules import RuleSet, features_of, required_literal
from providers.pricing import PriceTable

PRICES = PriceTable.load()
CONFIG = {
    "router": {"models": {
        "coder": {"deployments": [{"provider": "anthropic", "model": "claude-sonnet-4-5"}],
                  "fallback_models": ["openai/gpt-4o-mini"]},
        "cheap": [{"provider": "openai", "model": "gpt-4o-mini"}],
    }},
    "routing": {"rules": [
        {"name": "no-secrets", "match": {"user_regex": r"password\s*[:=]"}, "refuse": "No credentials, please."},
        {"name": "vip", "match": {"customer": ["acme"], "model": "gpt-4o*"}, "to": "anthropic/claude-sonnet-4-5"},
        {"name": "code", "match": {"keywords": ["refactor", "python"], "tools": True}, "to": "coder"},
        {"name": "by-key", "match": {"key": ["batch-jobs"]}, "to": "cheap"},
        {"name": "beta-header", "match": {"headers": {"X-Channel": "^beta$"}}, "to": "gemini/gemini-2.5-flash"},
        {"name": "tagged", "match": {"metadata": {"tier": "free"}}, "to": "cheap"},
        {"name": "pictures", "match": {"images": True}, "deployments": [
            {"provider": "gemini", "model": "gemini-2.5-flash"}, {"provider": "openai", "model": "gpt-4o"}]},
        {"name": "schema", "match": {"json_schema": True, "max_input_tokens": 100}, "to": "cheap"},
        {"name": "long", "match": {"min_input_tokens": 1000}, "to": "gemini/gemini-2.5-flash"},
        {"name": "support-bot", "match": {"system_regex": "support agent"}, "to": "cheap"},
        {"name": "phrase", "match": {"keywords": ["Re-Factor"], "customer": ["phr"]}, "to": "cheap"},
    ]},
}
TOOLS = [{"type": "function", "function": {"name": "run", "parameters": {"type": "object"}}}]
IMAGE = [{"type": "text", "text": "what is this"}, {"type": "image_url", "image_url": {"url": "data:image/png;base64,AA"}}]


def chat(text="hello", model="gpt-4o", system=None, **extra) -> dict:
    messages = ([{"role": "system", "content": system}] if system else []) + [{"role": "user", "content": text}]
    return {"model": model, "messages": messages, **extra}


# name -> (body, who: customer/key/headers/metadata, rule, reason contains, plan)
TABLE = {
    "no rule: the model as asked": (chat(), {}, None, None, ["openai/gpt-4o"]),
    "customer and model glob": (chat(model="gpt-4o-mini"), {"customer": "acme"}, "vip", "customer 'acme'",
                                ["anthropic/claude-sonnet-4-5"]),
    "customer but another model": (chat(model="gemini-2.5-flash"), {"customer": "acme"}, None, None,
                                   ["gemini/gemini-2.5-flash"]),
    "keyword in the user message and tools": (chat("Please REFACTOR this", tools=TOOLS), {}, "code",
                                              "keyword 'refactor'",
                                              ["anthropic/claude-sonnet-4-5", "openai/gpt-4o-mini"]),
    "keyword in the system prompt": (chat("hi", system="You write Python.", tools=TOOLS), {}, "code",
                                     "keyword 'python'", ["anthropic/claude-sonnet-4-5", "openai/gpt-4o-mini"]),
    "keyword without tools": (chat("refactor this"), {}, None, None, ["openai/gpt-4o"]),
    "keywords are whole words": (chat("pythonic", tools=TOOLS), {}, None, None, ["openai/gpt-4o"]),
    "a keyword phrase, punctuation between words": (chat("Please: re-factor this", tools=TOOLS, model="gpt-4.1"),
                                                    {"customer": "phr"}, "phrase", "keyword 're factor'",
                                                    ["openai/gpt-4o-mini"]),
    "gateway key by name": (chat(), {"key_name": "batch-jobs", "key_id": "key_1"}, "by-key", "key 'batch-jobs'",
                            ["openai/gpt-4o-mini"]),
    "header value": (chat(), {"headers": {"X-Channel": "beta"}}, "beta-header", "header x-channel",
                     ["gemini/gemini-2.5-flash"]),
    "header value not matching": (chat(), {"headers": {"x-channel": "beta2"}}, None, None, ["openai/gpt-4o"]),
    "metadata tag": (chat(), {"metadata": {"tier": "free"}}, "tagged", "metadata tier=free", ["openai/gpt-4o-mini"]),
    "metadata in the body": (chat(metadata={"tier": "free"}), {}, "tagged", "tier=free", ["openai/gpt-4o-mini"]),
    "an image: the rule's own deployments": (chat(IMAGE), {}, "pictures", "images present",
                                             sorted(["gemini/gemini-2.5-flash", "openai/gpt-4o"])),
    "json schema, short": (chat(response_format={"type": "json_schema", "json_schema": {"name": "x"}}), {}, "schema",
                           "json_schema present", ["openai/gpt-4o-mini"]),
    "json schema, too long for its rule, long enough for the next": (
        chat("x" * 4400, response_format={"type": "json_schema", "json_schema": {"name": "x"}}), {}, "long",
        "~1100 input tokens", ["gemini/gemini-2.5-flash"]),
    "json object is not a schema": (chat(response_format={"type": "json_object"}), {}, None, None, ["openai/gpt-4o"]),
    "system prompt regex": (chat(system="You are a Support Agent."), {}, "support-bot", "system prompt matches",
                            ["openai/gpt-4o-mini"]),
    "first match wins": (chat("refactor", tools=TOOLS, model="gpt-4o"), {"customer": "acme"}, "vip", "customer",
                         ["anthropic/claude-sonnet-4-5"]),
    "only the last user message counts": (
        {"model": "gpt-4o", "messages": [{"role": "user", "content": "password: hunter2"},
                                         {"role": "assistant", "content": "no"}, {"role": "user", "content": "ok"}]},
        {}, None, None, ["openai/gpt-4o"]),
}


@pytest.fixture(scope="module")
def routing():
    return routes_for(TapgateConfig.model_validate(CONFIG), PRICES, env={})


@pytest.mark.parametrize("case", list(TABLE))
def test_rule_table(routing, case):
    body, who, rule, reason, plan = TABLE[case]
    routes, rules = routing
    routed = route(routes, rules, features_of(body, **who), body["model"], None, rng=random.Random(1), now=0)
    assert routed.rule == rule
    assert (reason is None and routed.reason is None) or reason in routed.reason
    names = [t.name for t in routed.plan]
    assert (sorted(names) if rule == "pictures" else names) == plan  # a rule's own list is split by weight
    attributes = routed.attributes()
    assert attributes["rule"] == rule and attributes["plan"] == names


def test_a_refusing_rule(routing):
    routes, rules = routing
    with pytest.raises(RefusedByRule) as e:
        route(routes, rules, features_of(chat("my password: hunter2")), "gpt-4o", None)
    assert (e.value.status, e.value.code, e.value.rule) == (403, "refused_by_rule", "no-secrets")
    assert e.value.message == "No credentials, please."


@pytest.mark.parametrize("rule, error", [
    ({"name": "a", "to": "x", "refuse": "no"}, r"routing\.rules\.0: Value error, a rule needs exactly one of to, "
                                               r"deployments or refuse, not to and refuse"),
    ({"name": "a"}, r"routing\.rules\.0: .*needs exactly one"),
    ({"name": "a", "match": {"user_regex": "("}, "to": "x"}, r"routing\.rules\.0\.match: .*user_regex: not a valid regular"),
    ({"name": "a", "match": {"tools": "maybe"}, "to": "x"}, r"routing\.rules\.0\.match\.tools"),
    ({"name": "a", "match": {"colour": "red"}, "to": "x"}, r"routing\.rules\.0\.match\.colour: Extra inputs"),
])
def test_config_errors_name_file_line_and_field(tmp_path, rule, error):
    path = tmp_path / "tapgate.yaml"
    lines = "\n".join(f"      {k}: {json.dumps(v)}" for k, v in rule.items())
    path.write_text(f"routing:\n  rules:\n    -\n{lines}\n")
    with pytest.raises(ConfigError, match=rf"{path}:\d+: {error}"):
        load_config(path)


def test_a_line_number_points_at_the_bad_rule(tmp_path):
    path = tmp_path / "tapgate.yaml"
    path.write_text("routing:\n  rules:\n    - name: fine\n      to: gpt-4o\n    - name: bad\n"
                    "      match: {min_input_tokens: -1}\n      to: gpt-4o\n")
    with pytest.raises(ConfigError, match=rf"{path}:6: routing\.rules\.1\.match\.min_input_tokens"):
        load_config(path)


def test_a_rule_to_an_unknown_model_is_a_config_error():
    config = TapgateConfig.model_validate({"routing": {"rules": [{"name": "x", "to": "no-such-model"}]}})
    with pytest.raises(ValueError, match=r"routing\.rules\.0 \(x\): to: 'no-such-model' is not"):
        routes_for(config, PRICES, env={})


def test_duplicate_rule_names_are_refused():
    with pytest.raises(ValueError, match="rule names must be unique: a"):
        TapgateConfig.model_validate({"routing": {"rules": [{"name": "a", "to": "x"}, {"name": "a", "to": "y"}]}})


def test_route_explain_prints_rule_reason_and_plan(tmp_path, capsys):
    config, request = tmp_path / "tapgate.yaml", tmp_path / "request.json"
    config.write_text(json.dumps(CONFIG))  # JSON is YAML
    request.write_text(json.dumps(chat("refactor", tools=TOOLS)))
    assert main(["route", "--explain", str(request), "--config", str(config)]) == 0
    out = capsys.readouterr().out
    assert "rule:         code" in out and "keyword 'refactor'" in out
    assert "tried in order: anthropic/claude-sonnet-4-5, openai/gpt-4o-mini" in out
    assert main(["route", "--explain", str(request), "--config", str(config), "--json", "--customer", "acme"]) == 0
    explained = json.loads(capsys.readouterr().out)
    assert (explained["rule"], explained["plan"]) == ("vip", ["anthropic/claude-sonnet-4-5"])
    request.write_text(json.dumps({"model": "claude-sonnet-4-5", "max_tokens": 10, "system": "You are a support agent",
                                   "messages": [{"role": "user", "content": "hi"}]}))
    assert main(["route", "--explain", str(request), "--config", str(config), "--anthropic", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["rule"] == "support-bot"
    request.write_text(json.dumps(chat("password = x")))
    assert main(["route", "--explain", str(request), "--config", str(config)]) == 0
    assert "refused:      No credentials, please." in capsys.readouterr().out


def test_route_explain_errors(tmp_path, capsys):
    request = tmp_path / "request.json"
    request.write_text("{not json")
    assert main(["route", "--explain", str(request)]) == 1
    assert "not JSON" in capsys.readouterr().err
    request.write_text(json.dumps(chat(model="no-such-model")))
    assert main(["route", "--explain", str(request)]) == 1
    assert "'no-such-model' is not an alias" in capsys.readouterr().err


@pytest.mark.parametrize("pattern, literal", [
    (r"\b(order|invoice)-3\d+\b", "-3"), ("you are agent 3\\b", "you are agent 3"), (r"Password\s*[:=]", "password"),
    ("a|b", None), (r"\d+", None), ("(?x) hello  world", "helloworld"), ("ab?c", "a"), ("((", None),
])
def test_required_literal(pattern, literal):
    assert required_literal(pattern) == literal


@pytest.mark.parametrize("text", ["the TITLE", "the TİTLE", "the tıtle", "the title", "no"])
def test_the_literal_prefilter_never_hides_a_match(text):
    """U+0130 and U+0131 match i under re.I but casefold elsewhere: fold() maps them."""
    rules = RuleSet(TapgateConfig.model_validate({"routing": {"rules": [
        {"name": "t", "match": {"user_regex": "title"}, "to": "x"}]}}).routing.rules)
    matched = rules.decide(features_of(chat(text))) is not None
    assert matched == (re.search("title", text, re.I) is not None) == (text != "no")
