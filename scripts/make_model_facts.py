"""Build providers/model_facts.json (context window, tools, vision, JSON schema, assistant prefill) from
the same LiteLLM map as the price table, keyed as providers/prices.json, for the router's capability filters.

Usage: python scripts/make_model_facts.py [path/to/model_prices_and_context_window.json] [-o providers/model_facts.json]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from make_prices import DEFAULT_INPUT, LITELLM_VERSION, MODES, PREFIXES, ROOT, price_key  # noqa: E402

DEFAULT_OUTPUT = ROOT / "providers" / "model_facts.json"
# Our fact -> LiteLLM's field.
FACTS = {"context": "max_input_tokens", "tools": "supports_function_calling", "vision": "supports_vision",
         "json_schema": "supports_response_schema", "prefill": "supports_assistant_prefill"}


def facts_of(entry: dict[str, Any]) -> dict[str, Any]:
    found = {ours: entry.get(theirs) for ours, theirs in FACTS.items()}
    found = {k: v for k, v in found.items() if isinstance(v, (bool, int)) and v is not None}
    for flag in ("tools", "vision", "json_schema", "prefill"):  # LiteLLM omits a false capability
        found.setdefault(flag, False)
    return found


def build_facts(data: dict[str, Any]) -> dict[str, dict[str, Any]]:
    facts: dict[str, dict[str, Any]] = {}
    for key in sorted(data):
        entry = data[key]
        prefix = PREFIXES.get(entry.get("litellm_provider")) if isinstance(entry, dict) else None
        if prefix is None or entry.get("mode") != "chat" or entry.get("mode") not in MODES:
            continue
        ours = price_key(key, prefix)
        if ours not in facts or ours == key:
            facts[ours] = facts_of(entry)
    return dict(sorted(facts.items()))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("input", nargs="?", type=Path, default=DEFAULT_INPUT)
    parser.add_argument("-o", "--output", type=Path, default=DEFAULT_OUTPUT)
    args = parser.parse_args(argv)
    models = build_facts(json.loads(args.input.read_bytes()))
    head = {"source": f"LiteLLM {LITELLM_VERSION} model map, as providers/prices.json", "generator":
            "scripts/make_model_facts.py", "facts": FACTS}
    rows = [f" {json.dumps(k)}: {json.dumps(v, sort_keys=True)}" for k, v in models.items()]
    text = json.dumps(head, indent=1, sort_keys=True)[:-2] + ',\n "models": {\n' + ",\n".join(rows) + "\n }\n}\n"
    json.loads(text)
    args.output.write_text(text, encoding="utf-8")
    print(f"{args.output}: {len(models)} models, {len(text.encode())} bytes")


if __name__ == "__main__":
    main()
