"""Secret rules as data: gitleaks' rule file (MIT, copied unchanged into rules/gitleaks.toml) and
tapgate's own additions in the same format, read once and compiled with RE2, the engine and syntax
gitleaks itself uses, so the rules mean here what they mean there."""

from __future__ import annotations

import functools
import math
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import re2

RULES_DIR = Path(__file__).parent / "rules"
# Where each rule file comes from; docs/policies.md and testdata/SOURCES.md say the same.
SOURCES = {
    "gitleaks.toml": "gitleaks/gitleaks config/gitleaks.toml at b58d3f1 (2026-07-22), MIT licence",
    "tapgate.toml": "tapgate's own rules: .env blocks, connection strings with passwords, OpenAI keys",
}
# RE2 bounds its memory per pattern set; the DFA over every rule at once needs more than the default 8 MiB.
OPTIONS = re2.Options()
OPTIONS.max_mem = 256 << 20


@dataclass(frozen=True, slots=True)
class SecretRule:
    id: str
    pattern: Any  # a compiled re2 pattern
    keywords: tuple[str, ...]
    entropy: float | None
    group: int
    allow: tuple[Any, ...]  # an allowlisted secret is not one
    allow_match: tuple[Any, ...]  # ... nor is one whose whole match is allowlisted
    stopwords: tuple[str, ...]
    source: str

    def secret_span(self, m) -> tuple[int, int]:
        """The span of the secret itself: gitleaks' secretGroup, else the first group that matched."""
        if self.group and m.group(self.group) is not None:
            return m.span(self.group)
        for i in range(1, self.pattern.groups + 1):
            if m.group(i):
                return m.span(i)
        return m.span()

    def accepts(self, match_text: str, secret: str) -> bool:
        """gitleaks' checks after the regex: entropy, stopwords and allowlists."""
        if self.entropy is not None and shannon_entropy(secret) < self.entropy:
            return False
        lowered = secret.lower()
        if any(w in lowered for w in self.stopwords):
            return False
        if any(p.search(secret) for p in self.allow):
            return False
        return not any(p.search(match_text) for p in self.allow_match)


def shannon_entropy(text: str) -> float:
    """Bits per character, as gitleaks computes it."""
    if not text:
        return 0.0
    n = len(text)
    return -sum(c / n * math.log2(c / n) for c in (text.count(ch) for ch in set(text)))


def _compile(regex: str):
    return re2.compile(regex, OPTIONS)


def _rules_from(path: Path) -> list[SecretRule]:
    data = tomllib.loads(path.read_text(encoding="utf-8"))
    global_allow = tuple(_compile(r) for r in data.get("allowlist", {}).get("regexes", []))
    global_stop = tuple(w.lower() for w in data.get("allowlist", {}).get("stopwords", []))
    rules = []
    for raw in data.get("rules", []):
        if "regex" not in raw or "path" in raw:
            continue  # a rule that also needs a file path (.tf, .nuget, .p12): a prompt has none
        allow, allow_match, stop = list(global_allow), [], list(global_stop)
        for a in raw.get("allowlists", []):
            if a.get("paths") and a.get("condition") == "AND":
                continue  # only with a path, which a prompt has not
            target = allow_match if a.get("regexTarget") in ("match", "line") else allow
            target += [_compile(r) for r in a.get("regexes", [])]
            stop += [w.lower() for w in a.get("stopwords", [])]
        rules.append(SecretRule(
            id=raw["id"], pattern=_compile(raw["regex"]), keywords=tuple(k.lower() for k in raw.get("keywords", [])),
            entropy=raw.get("entropy"), group=raw.get("secretGroup", 0), allow=tuple(allow),
            allow_match=tuple(allow_match), stopwords=tuple(stop), source=path.name,
        ))
    return rules


@functools.cache
def secret_rules() -> tuple[SecretRule, ...]:
    """Every secret rule, gitleaks' first; read and compiled once per process."""
    return tuple(r for name in SOURCES for r in _rules_from(RULES_DIR / name))


@functools.cache
def rule_set() -> Any:
    """Every rule's regex in one RE2 set: one pass over a text says which rules can match at all."""
    rules = re2.Set.SearchSet(OPTIONS)
    for rule in secret_rules():
        rules.Add(rule.pattern.pattern)
    rules.Compile()
    return rules
