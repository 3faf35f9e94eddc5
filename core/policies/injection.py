"""The prompt-injection detector: the rules in rules/injection.toml (instruction override, role play
as system, jailbreak personas, exfiltration requests) and hidden text (zero-width, bidirectional
override and Unicode tag characters, which a reader cannot see but a model reads)."""

from __future__ import annotations

import functools
import re
import tomllib
from collections.abc import Iterator
from typing import Any

import re2

from core.policies.findings import Match
from core.policies.rules import OPTIONS, RULES_DIR

# Unicode tag characters (U+E0000-E007F) spell ASCII no one sees; bidi overrides reorder what is shown;
# zero-width spaces and invisible operators hide text between visible letters. ZWJ and ZWNJ have honest
# uses (emoji sequences, Persian), so only a run of three or more of them counts.
HIDDEN = re.compile("[\U000e0000-\U000e007f]+|[\u200b\u200e\u200f\u2060-\u2064\u202a-\u202e\u2066-\u2069\ufeff\u180e]+"
                    "|[\u200c\u200d]{3,}")


@functools.cache
def injection_rules() -> tuple[tuple[str, Any], ...]:
    """(id, compiled RE2 pattern) per rule, case-insensitive."""
    data = tomllib.loads((RULES_DIR / "injection.toml").read_text(encoding="utf-8"))
    return tuple((r["id"], re2.compile("(?i)" + r["regex"], OPTIONS)) for r in data["rules"])


@functools.cache
def injection_set() -> Any:
    """Every rule in one RE2 set: one pass says which rules match at all."""
    rules = re2.Set.SearchSet(OPTIONS)
    for _, pattern in injection_rules():
        rules.Add(pattern.pattern)
    rules.Compile()
    return rules


class InjectionDetector:
    name = "injection"

    def __init__(self) -> None:
        self.rules = injection_rules()
        self.set = injection_set()

    def find(self, text: str) -> Iterator[Match]:
        for i in sorted(self.set.Match(text) or ()):
            rule_id, pattern = self.rules[i]
            for m in pattern.finditer(text):
                yield Match("INJECTION", m.start(), m.end(), self.name, rule_id)
        if not text.isascii():
            for m in HIDDEN.finditer(text):
                if m.group() != "\ufeff" or m.start() > 0:  # a byte-order mark at the very start is honest
                    yield Match("INJECTION", m.start(), m.end(), self.name, "hidden-text")
