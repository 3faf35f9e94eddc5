"""Cut OpenAI's OpenAPI spec down to the component schemas the tests check requests and replies against.

The full spec (openai/openai-openapi, `openapi.yaml`, MIT) is 3 MB of YAML; tests/specs.py needs only the
components below and whatever they reference. This keeps those, unchanged, with the spec's `openapi`
and `info` (its licence included), as JSON: testdata/specs/openai-openapi.json. Run it again on a newer
spec and update the commit in testdata/SOURCES.md.

Usage: python scripts/trim_openai_spec.py path/to/openapi.yaml [-o testdata/specs/openai-openapi.json]
"""

from __future__ import annotations

import argparse
import datetime
import json
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_OUTPUT = ROOT / "testdata" / "specs" / "openai-openapi.json"
PREFIX = "#/components/schemas/"
# The components tests/specs.py names (OPENAI_*): what the router's OpenAI-shaped requests and replies must be.
ROOTS = (
    "CreateChatCompletionRequest",
    "CreateChatCompletionResponse",
    "CreateChatCompletionStreamResponse",
    "CreateEmbeddingRequest",
    "CreateEmbeddingResponse",
    "ListModelsResponse",
    "ErrorResponse",
)


def refs(node) -> set[str]:
    """The component names that node's `$ref`s point at, at any depth."""
    if isinstance(node, list):
        return set().union(*map(refs, node)) if node else set()
    if not isinstance(node, dict):
        return set()
    found = {node["$ref"].removeprefix(PREFIX)} if isinstance(node.get("$ref"), str) else set()
    return found.union(*map(refs, node.values()))


def trim(spec: dict, roots=ROOTS) -> dict:
    """spec with only the components reachable from roots (paths and everything else dropped)."""
    schemas = spec["components"]["schemas"]
    keep, todo = set(), list(roots)
    while todo:
        name = todo.pop()
        if name in keep:
            continue
        if name not in schemas:
            raise KeyError(f"the spec has no component schema {name!r}")
        keep.add(name)
        todo += refs(schemas[name]) - keep
    return {
        "openapi": spec["openapi"],
        "info": spec["info"],
        "components": {"schemas": {name: schemas[name] for name in schemas if name in keep}},
    }


def load_yaml(path: Path) -> dict:
    from ruamel.yaml import YAML  # a mitmproxy dependency

    return YAML(typ="safe").load(path.read_bytes())


def _plain(value):
    # One `example` in the spec is an unquoted date (ChatSessionResource.workflow.version).
    return value.isoformat() if isinstance(value, datetime.date) else str(value)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("spec", type=Path, help="openapi.yaml (or .json) from openai/openai-openapi")
    parser.add_argument("-o", "--output", type=Path, default=DEFAULT_OUTPUT)
    args = parser.parse_args(argv)
    spec = json.loads(args.spec.read_bytes()) if args.spec.suffix == ".json" else load_yaml(args.spec)
    trimmed = trim(spec)
    args.output.write_text(json.dumps(trimmed, indent=1, ensure_ascii=False, default=_plain) + "\n", encoding="utf-8")
    print(f"{args.output}: {len(trimmed['components']['schemas'])} of {len(spec['components']['schemas'])} schemas")


if __name__ == "__main__":
    main()
