"""Costs from the shipped price table: exact sums per token kind, lookups of snapshot ids, overrides."""

from __future__ import annotations

import json

import pytest
from support import DATA, fixture_json, load_script

from providers.base import Usage
from providers.pricing import PRICES_JSON, Price, PriceTable, normalise_model

PRICE_MAP = DATA / "pricing" / "model_prices_and_context_window.json"


@pytest.fixture(scope="module")
def table() -> PriceTable:
    return PriceTable.load()


def test_gpt_4o_cache_reads(table):
    usage = Usage(input_tokens=1000, output_tokens=200, cache_read_tokens=400)
    # 600 uncached x 2.5 + 400 read x 1.25 + 200 out x 10, per million
    assert table.cost("", "gpt-4o", usage) == 0.004


def test_claude_5_minute_cache_write_and_read_from_fixture(table):
    body = fixture_json("anthropic", "messages_prompt_cache_read_and_write.json")
    u = body["usage"]
    assert (u["input_tokens"], u["cache_creation_input_tokens"], u["cache_read_input_tokens"]) == (3, 418, 1111)
    usage = Usage(
        input_tokens=u["input_tokens"] + u["cache_creation_input_tokens"] + u["cache_read_input_tokens"],
        output_tokens=u["output_tokens"],
        cache_read_tokens=u["cache_read_input_tokens"],
        cache_write_tokens=u["cache_creation_input_tokens"],
        cache_write_1h_tokens=u["cache_creation"]["ephemeral_1h_input_tokens"],
    )
    # 3 x 3 + 418 x 3.75 + 1111 x 0.3 + 33 x 15 = 2404.8 per million
    assert table.cost("", body["model"], usage) == 0.0024048


def test_claude_1_hour_cache_writes(table):
    usage = Usage(input_tokens=1100, output_tokens=50, cache_write_tokens=1000, cache_write_1h_tokens=600)
    # 100 uncached x 3 + 400 five-minute writes x 3.75 + 600 one-hour writes x 6 + 50 out x 15
    assert table.cost("", "claude-sonnet-4-5", usage) == 0.00615


def test_gemini_thoughts_billed_as_output(table):
    body = fixture_json("gemini", "generate_content_text.json")
    meta = body["usageMetadata"]
    usage = Usage(
        input_tokens=meta["promptTokenCount"],
        output_tokens=meta["candidatesTokenCount"] + meta["thoughtsTokenCount"],
        reasoning_tokens=meta["thoughtsTokenCount"],
    )
    # 9 in x 0.3 + (9 + 34) out x 2.5
    assert table.cost("gemini/", body["modelVersion"], usage) == 0.00011020


@pytest.mark.parametrize(
    "prefix, model, key",
    [
        ("", "gpt-4o-2024-08-06", "gpt-4o-2024-08-06"),
        ("", "claude-sonnet-4-5-20250929", "claude-sonnet-4-5-20250929"),
        ("gemini/", "models/gemini-2.5-flash", "gemini/gemini-2.5-flash"),
        # Snapshot ids the table lacks fall back to the model they snapshot.
        ("", "gpt-4o-2030-01-01", "gpt-4o"),
        ("", "claude-sonnet-4-5-20301231", "claude-sonnet-4-5"),
        ("", "claude-sonnet-4-5@20250929", "claude-sonnet-4-5"),
        ("", "GPT-4o", "gpt-4o"),
        ("", "ft:gpt-4o-2024-08-06:acme::abc123", "ft:gpt-4o-2024-08-06"),
        ("vertex_ai/", "claude-sonnet-4-5@20250929", "vertex_ai/claude-sonnet-4-5@20250929"),
        ("mistral/", "mistral-large-latest", "mistral/mistral-large-latest"),
        # Azure: a deployment named after an OpenAI model Azure's rows lack is priced as that model.
        ("azure/", "gpt-4o", "azure/gpt-4o"),
        ("azure/", "o1-pro", "o1-pro"),
    ],
)
def test_model_ids_resolve(table, prefix, model, key):
    assert table.price(prefix, model).key == key


def test_exact_snapshot_beats_its_alias(table):
    # gpt-4o-2024-05-13 kept its launch price; stripping the date would undercharge it.
    assert (table.price("", "gpt-4o-2024-05-13").input, table.price("", "gpt-4o").input) == (5.0, 2.5)


def test_normalise_model_tries_the_exact_id_first():
    assert normalise_model("models/Gemini-2.5-Flash") == ["models/gemini-2.5-flash", "gemini-2.5-flash"]
    assert normalise_model("claude-sonnet-4-5-20250929")[0] == "claude-sonnet-4-5-20250929"
    assert "claude-sonnet-4-5" in normalise_model("claude-sonnet-4-5-20250929")


@pytest.mark.parametrize(
    "prefix, model", [("", "no-such-model"), ("openrouter/", "openai/gpt-4o"), ("azure/", "my-deployment"), ("", None)]
)
def test_unknown_model_costs_none_never_zero(table, prefix, model):
    assert table.price(prefix, model) is None
    assert table.cost(prefix, model, Usage(input_tokens=10, output_tokens=10)) is None


def test_unknown_usage_costs_none(table):
    assert table.cost("", "gpt-4o", Usage()) is None


def test_reported_cost_wins(table):
    usage = Usage(input_tokens=1000, output_tokens=1000, reported_cost_usd=0.00123)
    assert table.cost("openrouter/", "anthropic/claude-sonnet-4.5", usage) == 0.00123
    assert table.cost("", "gpt-4o", usage) == 0.00123


def test_overrides_add_and_replace():
    table = PriceTable.load({"my-local-model": {"input": 1, "output": 2}, "GPT-4o": {"input": 1, "output": 1}})
    assert table.cost("", "my-local-model", Usage(input_tokens=1_000_000, output_tokens=500_000)) == 2.0
    # The override replaces the whole row: its missing cache_read falls back to its own input price.
    assert table.cost("", "gpt-4o", Usage(input_tokens=1000, output_tokens=1000, cache_read_tokens=500)) == 0.002
    assert PriceTable.load().price("", "gpt-4o").input == 2.5  # other tables keep the built-in row


@pytest.mark.parametrize(
    "row, message",
    [({"input": -1, "output": 1}, "input must be"), ({"input": "2.5"}, "input must be"),
     ({"cache_read": 1}, "needs input or output"), ({"input": 1, "inptu": 2}, "unknown field")],
)
def test_bad_override_is_rejected(row, message):
    with pytest.raises(ValueError, match=message):
        PriceTable.load({"x": row})


def test_above_200k_tier_applies_to_the_whole_long_call(table):
    long = Usage(input_tokens=250_000, output_tokens=1000, cache_read_tokens=50_000)
    # 200k uncached x 2.5 + 50k read x 0.25 + 1000 out x 15 (gemini-2.5-pro above 200k)
    assert table.cost("gemini/", "gemini-2.5-pro", long) == 0.5275
    at_limit = Usage(input_tokens=200_000, output_tokens=1000)
    assert table.cost("gemini/", "gemini-2.5-pro", at_limit) == 0.26  # 200k x 1.25 + 1000 x 10


@pytest.mark.parametrize("output_tokens", [0, None])
def test_embedding(table, output_tokens):
    usage = Usage(input_tokens=1000, output_tokens=output_tokens)
    assert table.cost("", "text-embedding-3-small", usage) == 0.00002  # 1000 x 0.02


def test_builtin_rows_are_frozen(table):
    price = table.price("", "gpt-4o")
    assert isinstance(price, Price)
    with pytest.raises(AttributeError):
        price.input = 0.0  # type: ignore[misc]


def test_prices_json_is_up_to_date_with_its_generator():
    make_prices = load_script("make_prices")
    shipped = json.loads(PRICES_JSON.read_text(encoding="utf-8"))
    fresh = make_prices.build_from_file(PRICE_MAP, shipped["generated"])
    assert fresh == shipped, "run: python scripts/make_prices.py"
    assert json.loads(make_prices.dumps(fresh)) == fresh
