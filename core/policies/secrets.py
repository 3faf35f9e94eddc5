"""The secrets detector: API keys, tokens, private keys, JWTs, connection strings and .env blocks,
found with the rule data in rules.py (gitleaks' rules plus tapgate's)."""

from __future__ import annotations

from collections.abc import Iterator

from core.policies.findings import Match
from core.policies.rules import rule_set, secret_rules


class SecretsDetector:
    name = "secrets"

    def __init__(self) -> None:
        self.rules = secret_rules()
        self.set = rule_set()

    def find(self, text: str) -> Iterator[Match]:
        hits = self.set.Match(text)  # one linear pass over the text for all 220 rules
        if not hits:
            return
        lowered = text.lower()
        for i in sorted(hits):
            rule = self.rules[i]
            # gitleaks' keyword check: a rule fires only on text holding one of its keywords.
            if rule.keywords and not any(k in lowered for k in rule.keywords):
                continue
            for m in rule.pattern.finditer(text):
                start, end = rule.secret_span(m)
                if end > start and rule.accepts(m.group(), text[start:end]):
                    yield Match("SECRET", start, end, self.name, rule.id)
