"""Build providers/prices.json from LiteLLM's price map, so the gateway ships a small, reviewed table.

Usage: python scripts/make_prices.py [path/to/model_prices_and_context_window.json] [-o providers/prices.json]
The input and its provenance are described in testdata/SOURCES.md; bump LITELLM_VERSION with the file.
"""

from __future__ import annotations

import argparse
import datetime
import hashlib
import json
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_INPUT = ROOT / "testdata" / "pricing" / "model_prices_and_context_window.json"
DEFAULT_OUTPUT = ROOT / "providers" / "prices.json"
LITELLM_VERSION = "1.109.1"

MODES = {"chat", "completion", "embedding", "responses"}
# LiteLLM's litellm_provider -> our price key prefix (Provider.price_prefix).
PREFIXES = {
    "openai": "",
    "text-completion-openai": "",  # gpt-3.5-turbo-instruct, davinci-002: OpenAI's /v1/completions models
    "anthropic": "",
    "gemini": "gemini/",
    "azure": "azure/",
    "groq": "groq/",
    "mistral": "mistral/",
    "deepseek": "deepseek/",
    "together_ai": "together_ai/",
    "xai": "xai/",
    "fireworks_ai": "fireworks_ai/",
    "vertex_ai-language-models": "vertex_ai/",
    "vertex_ai-anthropic_models": "vertex_ai/",
}
# Our field -> LiteLLM's per-token field.
FIELDS = {
    "input": "input_cost_per_token",
    "output": "output_cost_per_token",
    "cache_read": "cache_read_input_token_cost",
    "cache_write": "cache_creation_input_token_cost",
    "cache_write_1h": "cache_creation_input_token_cost_above_1hr",
}
ABOVE_200K = "_above_200k_tokens"


def per_million(value: Any) -> float | None:
    """USD per token -> USD per million tokens, rounded to 10 significant digits to drop float noise."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(f"{value * 1e6:.10g}")


def prices_of(entry: dict[str, Any], suffix: str = "") -> dict[str, float]:
    found = {ours: per_million(entry.get(theirs + suffix)) for ours, theirs in FIELDS.items()}
    return {k: v for k, v in found.items() if v is not None}


def price_key(key: str, prefix: str) -> str:
    """LiteLLM keys some of a provider's models without its prefix (Vertex Gemini, a few DeepSeek ids)."""
    if not prefix:
        return key.removeprefix("openai/")
    return key if key.startswith(prefix) else prefix + key


def build_models(data: dict[str, Any]) -> dict[str, dict[str, Any]]:
    models: dict[str, dict[str, Any]] = {}
    exact: set[str] = set()
    for key in sorted(data):
        entry = data[key]
        prefix = PREFIXES.get(entry.get("litellm_provider")) if isinstance(entry, dict) else None
        if prefix is None or entry.get("mode") not in MODES:
            continue
        row: dict[str, Any] = prices_of(entry)
        if "input" not in row and "output" not in row:
            continue  # a row without prices would price calls at 0
        if above := prices_of(entry, ABOVE_200K):
            row["above_200k"] = above
        if isinstance(entry.get("source"), str):
            row["source"] = entry["source"]
        ours = price_key(key, prefix)
        # When LiteLLM has both "deepseek-chat" and "deepseek/deepseek-chat", the key spelled as ours wins.
        if ours in exact:
            continue
        if ours == key:
            exact.add(ours)
        models[ours] = row
    return dict(sorted(models.items()))


def build(data: dict[str, Any], sha256: str, generated: str) -> dict[str, Any]:
    return {
        "source": {
            "file": "model_prices_and_context_window.json",
            "from": f"PyPI wheel litellm {LITELLM_VERSION}, member litellm/model_prices_and_context_window_backup.json"
            " (BerriAI/litellm's repo-root model_prices_and_context_window.json)",
            "litellm_version": LITELLM_VERSION,
            "sha256": sha256,
            "generator": "scripts/make_prices.py",
        },
        "license": "MIT, Copyright (c) 2023 Berri AI (LiteLLM); see https://github.com/BerriAI/litellm/blob/main/LICENSE"
        " (the wheel's LICENSE: everything outside enterprise/ is MIT)",
        "generated": generated,
        "unit": "USD per million tokens",
        "models": build_models(data),
    }


def build_from_file(path: Path, generated: str) -> dict[str, Any]:
    raw = path.read_bytes()
    return build(json.loads(raw), hashlib.sha256(raw).hexdigest(), generated)


def dumps(doc: dict[str, Any]) -> str:
    """Valid JSON with one model per line, so a price change is a one-line diff."""
    head = {k: v for k, v in doc.items() if k != "models"}
    lines = [json.dumps(head, indent=1, sort_keys=True, ensure_ascii=False)[:-2] + ","]
    rows = [f" {json.dumps(k)}: {json.dumps(v, sort_keys=True)}" for k, v in doc["models"].items()]
    lines.append(' "models": {\n' + ",\n".join(rows) + "\n }\n}\n")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("input", nargs="?", type=Path, default=DEFAULT_INPUT)
    parser.add_argument("-o", "--output", type=Path, default=DEFAULT_OUTPUT)
    args = parser.parse_args(argv)
    today = datetime.datetime.now(datetime.UTC).date().isoformat()
    doc = build_from_file(args.input, today)
    text = dumps(doc)
    json.loads(text)  # the hand-joined layout must stay valid JSON
    args.output.write_text(text, encoding="utf-8")
    print(f"{args.output}: {len(doc['models'])} models, {len(text.encode())} bytes")


if __name__ == "__main__":
    main()
