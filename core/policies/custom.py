"""Custom detectors from config: a list of regexes, each with its placeholder type, and a Python
callable named by dotted path (`package.module:function` or `package.module.function`)."""

from __future__ import annotations

import importlib
import re
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from core.policies.findings import Match


class RegexDetector:
    name = "custom"

    def __init__(self, patterns: Iterable[tuple[str, str]]) -> None:
        self.patterns = [(type_, re.compile(regex)) for type_, regex in patterns]

    def find(self, text: str) -> Iterator[Match]:
        for type_, pattern in self.patterns:
            for m in pattern.finditer(text):
                if m.end() > m.start():
                    yield Match(type_, m.start(), m.end(), self.name, pattern.pattern[:40])


def load_callable(path: str) -> Callable[[str], Iterable[Any]]:
    """The object `path` names; raises ValueError saying why it cannot be used."""
    module, sep, attr = path.partition(":")
    if not sep:
        module, _, attr = path.rpartition(".")
    if not module or not attr:
        raise ValueError(f"{path!r} is not a dotted path such as mypkg.checks:find_codes")
    try:
        target = getattr(importlib.import_module(module), attr)
    except (ImportError, AttributeError) as e:
        raise ValueError(f"cannot load {path!r}: {e}") from None
    if not callable(target):
        raise ValueError(f"{path!r} is not callable")
    return target


class CallableDetector:
    """Calls `function(text)`, which returns (type, start, end) tuples or Match objects."""

    name = "callable"

    def __init__(self, path: str) -> None:
        self.path = path
        self.function = load_callable(path)

    def find(self, text: str) -> Iterator[Match]:
        for found in self.function(text) or ():
            if isinstance(found, Match):
                yield found
            else:
                type_, start, end = found
                if 0 <= start < end <= len(text):
                    yield Match(str(type_).upper(), int(start), int(end), self.name, self.path)
