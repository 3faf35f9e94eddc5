"""Shared test helpers: where ../shared is, fixture loading, and streams fed in random splits."""

from __future__ import annotations

import json
import os
import random
from pathlib import Path

from providers.base import Route, StreamState
from providers.stream import StreamParser

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("TAPGATE_SHARED", ROOT.parent / "shared"))
FIXTURES = SHARED / "fixtures"


def fixture_bytes(provider: str, name: str) -> bytes:
    return (FIXTURES / provider / name).read_bytes()


def fixture_json(provider: str, name: str):
    return json.loads(fixture_bytes(provider, name))


def fixture_names(provider: str, suffix: str) -> list[str]:
    """Fixture file names of one provider ending in suffix, skipping .request/.headers companions."""
    return sorted(
        p.name
        for p in (FIXTURES / provider).iterdir()
        if p.name.endswith(suffix) and not p.name.endswith((".request.json", ".headers.json"))
    )


def random_splits(data: bytes, rng: random.Random, max_piece: int = 7) -> list[bytes]:
    """data cut at random places, pieces of 1..max_piece bytes (so cuts land inside UTF-8 and CRLF)."""
    pieces, i = [], 0
    while i < len(data):
        n = rng.randint(1, max_piece)
        pieces.append(data[i : i + n])
        i += n
    return pieces


def parse_stream(route: Route, pieces: list[bytes], content_type: str = "text/event-stream",
                 content_encoding: str | None = None) -> StreamState:
    """Feed pieces through the real StreamParser, as the stream tap does, and return its state."""
    parser = StreamParser(route, content_type, content_encoding)
    for piece in pieces:
        parser.feed(piece)
    parser.close()
    return parser.state


class Rows:
    """Stands in for the Store in addon tests: keeps what would be written."""

    salt = "test-salt"

    def __init__(self):
        self.tables = {"requests": [], "spans": []}

    def add(self, table, row):
        self.tables.setdefault(table, []).append(row)
