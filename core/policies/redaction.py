"""Redaction with typed placeholders (`<EMAIL_1>`, `<SECRET_1>`) and their restore, for whole answers
and for streams, where a placeholder may arrive split across chunks. The mapping lives in memory
for one call and is never stored."""

from __future__ import annotations

import re
from collections.abc import Iterable

from core.policies.findings import Match, without_overlaps

PLACEHOLDER = re.compile(r"<([A-Z][A-Z0-9_]{0,31})_(\d{1,6})>")
# What a chunk may end with that could still become a placeholder: "<", "<EMA", "<EMAIL_1".
PARTIAL = re.compile(r"<[A-Z0-9_]{0,40}\Z")


class Redactor:
    """One call's placeholders: numbered per type, the same value always getting the same one."""

    def __init__(self) -> None:
        self._by_value: dict[tuple[str, str], str] = {}
        self._values: dict[str, str] = {}
        self._next: dict[str, int] = {}

    def __bool__(self) -> bool:
        return bool(self._values)

    def placeholder(self, type_: str, value: str) -> str:
        if (known := self._by_value.get((type_, value))) is not None:
            return known
        n = self._next[type_] = self._next.get(type_, 0) + 1
        name = f"<{type_}_{n}>"
        self._by_value[(type_, value)], self._values[name] = name, value
        return name

    def redact(self, text: str, matches: Iterable[Match]) -> str:
        """The text with each match (overlaps resolved) replaced by its placeholder."""
        parts, at = [], 0
        for m in without_overlaps(matches):
            parts += [text[at:m.start], self.placeholder(m.type, text[m.start:m.end])]
            at = m.end
        parts.append(text[at:])
        return "".join(parts)

    def pairs(self) -> list[tuple[str, str]]:
        """(value, placeholder), longest values first, so that one value inside another is replaced last."""
        return sorted(((v, p) for (_, v), p in self._by_value.items()), key=lambda pair: -len(pair[0]))

    def restore(self, text: str) -> str:
        """Placeholders of this call put back; any other `<WORD_n>` left as it is."""
        if not self._values or "<" not in text:
            return text
        return PLACEHOLDER.sub(lambda m: self._values.get(m.group(), m.group()), text)


class StreamRestorer:
    """Restores one stream of text chunks: a chunk's tail that may be the start of a placeholder is held
    until the next chunk says whether it is one."""

    def __init__(self, redactor: Redactor) -> None:
        self.redactor = redactor
        self.pending = ""

    def feed(self, text: str) -> str:
        text, self.pending = self.pending + text, ""
        if (tail := PARTIAL.search(text)) is not None:
            text, self.pending = text[:tail.start()], text[tail.start():]
        return self.redactor.restore(text)

    def flush(self) -> str:
        """What is held when the stream ends (a `<` that never became a placeholder)."""
        text, self.pending = self.pending, ""
        return self.redactor.restore(text)
