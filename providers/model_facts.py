"""What a model can take (context window, tools, images, JSON schema, assistant prefill), read from
providers/model_facts.json (scripts/make_model_facts.py), looked up like a price, for capability filters."""

from __future__ import annotations

import functools
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType

from providers.pricing import FALLBACK_PREFIXES, normalise_model
from providers.safe_json import loads

FACTS_JSON = Path(__file__).with_name("model_facts.json")


@dataclass(frozen=True, slots=True)
class ModelFacts:
    """One model's limits; `context` None where the table gives no window."""

    context: int | None = None
    tools: bool = False
    vision: bool = False
    json_schema: bool = False
    prefill: bool = False


@functools.cache
def builtin_facts() -> Mapping[str, ModelFacts]:
    models = loads(FACTS_JSON.read_text(encoding="utf-8"))["models"]
    return MappingProxyType({key.lower(): ModelFacts(**row) for key, row in models.items()})


@functools.lru_cache(maxsize=4096)
def facts_for(price_prefix: str, model: str) -> ModelFacts | None:
    """The facts of a provider's model (found as its price would be), or None when the table lacks it."""
    table = builtin_facts()
    for prefix in (price_prefix, *FALLBACK_PREFIXES.get(price_prefix, ())):
        for candidate in normalise_model(model):
            if found := table.get(prefix.lower() + candidate):
                return found
    return None
