"""Shared test helpers: where the test data is, fixture loading, streams fed in random splits, and
waiting on what another thread or process makes true."""

from __future__ import annotations

import importlib.util
import json
import random
import sys
import time
from pathlib import Path

from providers.base import Route, StreamState
from providers.stream import StreamParser

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "testdata"  # captured payloads, spec and price source; testdata/SOURCES.md says whence
FIXTURES = DATA / "fixtures"


def load_script(name: str):
    """scripts/<name>.py imported as module <name> (scripts/ is not a package the tests can import)."""
    spec = importlib.util.spec_from_file_location(name, ROOT / "scripts" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while the class is built
    spec.loader.exec_module(module)
    return module


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

    def add_all(self, records):
        for table, row in records:
            self.add(table, row)


def until(predicate, timeout: float = 10.0, what: str = "the condition"):
    """The predicate's first truthy value, polled: for a state another thread or process makes true
    (a writer thread, a mock's log, a key ring's re-read) where there is no event to await.
    Fails the test after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while not (value := predicate()):
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.02)
    return value


def passthrough_door(settings, rows, ring=None):
    """(Capture, Auth): passthrough's door over `rows` with the standard stages, wired as
    addons/gateway.py wires them (a key ring of its own unless given)."""
    from addons.auth import Auth
    from addons.cache import Cache
    from addons.capture import Capture
    from addons.spend import Spend
    from core.keys import KeyRing
    from core.recorder import Recorder
    from core.stages import standard

    ring = ring if ring is not None else KeyRing()
    spend = Spend(settings, rows, ring)
    stages = standard(settings, ring, spend, Cache(settings, rows), Recorder(settings, rows, [spend.settle]))
    return Capture(settings, rows, stages), Auth(settings, ring, stages.identify)


def hook(addon, name: str, flow) -> None:
    """Call one of an addon's hooks on a flow, running it to its end when it is a coroutine."""
    import asyncio
    import inspect

    if (method := getattr(addon, name, None)) is not None and inspect.isawaitable(result := method(flow)):
        asyncio.run(result)
