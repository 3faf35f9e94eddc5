"""Prices per model and the cost of one call, so every recorded row carries what it cost in USD."""

from __future__ import annotations

import dataclasses
import functools
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Any

from cachetools import LRUCache

from providers.base import Usage
from providers.safe_json import loads

PRICES_JSON = Path(__file__).with_name("prices.json")
LONG_CONTEXT = 200_000  # input tokens above which a model's "above_200k" prices apply to the whole call
# Prefixes whose misses fall back to others: Azure deployments usually serve OpenAI models at
# OpenAI's list price (deployment names often are the model names); Vertex serves Gemini and Claude.
FALLBACK_PREFIXES: Mapping[str, tuple[str, ...]] = MappingProxyType({"azure/": ("",), "vertex_ai/": ("gemini/", "")})
# Version tails that name a snapshot of a model priced like the model itself, tried only after the
# exact id misses: -2024-08-06, -20250929, @20250929, -0613, -001, -latest.
VERSION_TAILS = (r"-\d{4}-\d{2}-\d{2}$", r"[-@]\d{8}$", r"-\d{4}$", r"-\d{3}$", r"-latest$")
PRICE_FIELDS = ("input", "output", "cache_read", "cache_write", "cache_write_1h")


@dataclass(frozen=True, slots=True)
class Price:
    """USD per million tokens for one model; None where the table says nothing."""

    key: str
    input: float | None = None
    output: float | None = None
    cache_read: float | None = None
    cache_write: float | None = None
    cache_write_1h: float | None = None
    above_200k: Price | None = None
    source: str | None = None

    @classmethod
    def from_dict(cls, key: str, row: Mapping[str, Any], tier: bool = False) -> Price:
        """A row of prices.json or of the user's overrides; raises ValueError naming the bad field."""
        unknown = set(row) - {*PRICE_FIELDS, "above_200k", "source"}
        if unknown:
            raise ValueError(f"price for {key!r}: unknown field(s) {', '.join(sorted(unknown))}")
        values: dict[str, float] = {}
        for name in PRICE_FIELDS:
            value = row.get(name)
            if value is None:
                continue
            if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
                raise ValueError(f"price for {key!r}: {name} must be a number >= 0 (USD per million tokens)")
            values[name] = float(value)
        if not tier and "input" not in values and "output" not in values:
            raise ValueError(f"price for {key!r}: needs input or output (USD per million tokens)")
        above = cls.from_dict(key, row["above_200k"], tier=True) if row.get("above_200k") else None
        source = row.get("source") if isinstance(row.get("source"), str) else None
        return cls(key, **values, above_200k=above, source=source)

    def for_input(self, input_tokens: int) -> Price:
        """The prices for a call this long: long-context tiers bill every token of the call higher."""
        if self.above_200k is None or input_tokens <= LONG_CONTEXT:
            return self
        tier = {name: getattr(self.above_200k, name) for name in PRICE_FIELDS}
        return dataclasses.replace(self, **{k: v for k, v in tier.items() if v is not None}, above_200k=None)


@functools.cache
def builtin_prices() -> Mapping[str, Price]:
    """The shipped table, read once; read-only so no caller can change another's prices."""
    models = loads(PRICES_JSON.read_text(encoding="utf-8"))["models"]
    return MappingProxyType({key.lower(): Price.from_dict(key, row) for key, row in models.items()})


def normalise_model(model: str) -> list[str]:
    """Candidate keys for a model id (lowercased, the exact id first): clients and responses send snapshot
    ids (gpt-4o-2024-08-06, claude-sonnet-4-5@20250929, models/gemini-2.5-flash) the table may lack."""
    exact = model.strip().lower()
    base = exact.removeprefix("models/")
    if base.startswith("ft:"):  # ft:gpt-4o-2024-08-06:org::id -> ft:gpt-4o-2024-08-06
        base = ":".join(base.split(":")[:2])
    candidates = [exact, base]
    for tail in VERSION_TAILS:
        stripped = re.sub(tail, "", base)
        candidates += [stripped, stripped.removesuffix("-latest")]
    return [c for c in dict.fromkeys(candidates) if c]


class PriceTable:
    """The built-in prices with the user's overrides on top."""

    def __init__(self, prices: Mapping[str, Price]):
        self._prices = prices  # keyed by lowercased price key
        self._found: LRUCache[tuple[str, str], Price | None] = LRUCache(4096)  # lookups run on every call

    @classmethod
    def load(cls, overrides: Mapping[str, Mapping[str, Any]] | None = None) -> PriceTable:
        """Overrides ({"<price key>": {"input": .., "output": .., ...}} per million tokens) replace whole
        rows or add new ones, so a negotiated price never inherits a stale field from the built-in row."""
        prices = dict(builtin_prices())
        for key, row in (overrides or {}).items():
            prices[key.lower()] = Price.from_dict(key, row)
        return cls(MappingProxyType(prices))

    def has(self, key: str) -> bool:
        """Whether the table has a row under exactly this key ("gemini/gemini-2.5-flash")."""
        return key.lower() in self._prices

    def price(self, price_prefix: str, model: str | None) -> Price | None:
        """The row for a provider's model, or None: OpenRouter has no rows (it reports cost itself)."""
        if not model:
            return None
        if (price_prefix, model) in self._found:
            return self._found[price_prefix, model]
        self._found[price_prefix, model] = found = self._lookup(price_prefix, model)
        return found

    def _lookup(self, price_prefix: str, model: str) -> Price | None:
        candidates = normalise_model(model)
        for prefix in (price_prefix, *FALLBACK_PREFIXES.get(price_prefix, ())):
            for candidate in candidates:
                if found := self._prices.get(prefix.lower() + candidate):
                    return found
        return None

    def cost(self, price_prefix: str, model: str | None, usage: Usage) -> float | None:
        """USD for one call; None when it cannot be known (never 0 for unknown)."""
        if usage.reported_cost_usd is not None:
            return usage.reported_cost_usd  # the provider's own bill is exact
        if not usage.known:
            return None
        price = self.price(price_prefix, model)
        if price is None:
            return None
        return cost_of(price, usage)


def cost_of(price: Price, usage: Usage) -> float:
    """Uncached input, cache reads, 5-minute and 1-hour cache writes and output (reasoning included),
    each at its own rate; a missing cache rate falls back to the next plainer one (WIRE-FORMATS rule 4)."""
    input_tokens = usage.input_tokens or 0
    p = price.for_input(input_tokens)
    write_1h = usage.cache_write_1h_tokens or 0
    write = max(usage.cache_write_tokens or 0, write_1h)
    read = usage.cache_read_tokens or 0
    uncached = max(input_tokens - read - write, 0)
    in_price = p.input or 0.0
    write_price = p.cache_write if p.cache_write is not None else in_price
    total = (
        uncached * in_price
        + read * (p.cache_read if p.cache_read is not None else in_price)
        + (write - write_1h) * write_price
        + write_1h * (p.cache_write_1h if p.cache_write_1h is not None else write_price)
        + (usage.output_tokens or 0) * (p.output or 0.0)
    )
    return round(total / 1e6, 12)
