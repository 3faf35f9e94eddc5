"""What a detector reports: the type, span and detector of a match, never the matched text, so a
finding can be logged, stored and alerted on without leaking what it found."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Protocol


@dataclass(frozen=True, slots=True)
class Match:
    """One match in one text: `type` names the placeholder (EMAIL, SECRET), `rule` the rule that
    fired (a gitleaks rule id, an injection rule), `start:end` the span in the text scanned."""

    type: str
    start: int
    end: int
    detector: str
    rule: str = ""


class Detector(Protocol):
    """Finds matches in a text; `name` is how config names it."""

    name: str

    def find(self, text: str) -> Iterable[Match]: ...


def without_overlaps(matches: Iterable[Match]) -> list[Match]:
    """Matches sorted by start, an overlapping one dropped in favour of the earlier (then longer) one,
    so a redaction replaces each character at most once."""
    kept: list[Match] = []
    for m in sorted(matches, key=lambda m: (m.start, -(m.end - m.start))):
        if not kept or m.start >= kept[-1].end:
            kept.append(m)
    return kept


def counts(matches: Iterable[Match]) -> dict[str, int]:
    """Matches per type, for spans and rows."""
    out: dict[str, int] = {}
    for m in matches:
        out[m.type] = out.get(m.type, 0) + 1
    return out


def spans_of(pattern, text: str, group: int = 0) -> Iterator[tuple[int, int]]:
    """(start, end) of each match of a compiled pattern, or of one of its groups when it took part."""
    for m in pattern.finditer(text):
        if group and m.group(group) is not None:
            yield m.start(group), m.end(group)
        else:
            yield m.start(), m.end()
