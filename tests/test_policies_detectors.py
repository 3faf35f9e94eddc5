"""The detectors: rules as data, library checks, and the labelled corpus's precision and recall."""

import json
from pathlib import Path

import pytest

from core.policies.custom import CallableDetector, RegexDetector
from core.policies.detectors import detector
from core.policies.findings import Match, without_overlaps
from core.policies.injection import InjectionDetector
from core.policies.rules import secret_rules, shannon_entropy

CORPUS = Path(__file__).parent / "data" / "policies_corpus.jsonl"
TYPES = {"SECRET": "secrets", "EMAIL": "email", "PHONE": "phone", "CARD": "card", "IBAN": "iban", "SSN": "ssn",
         "IP": "ip", "INJECTION": "injection"}
# Floors under the figures measured when the corpus was written (printed by the test with -s).
FLOORS = {"secrets": (0.95, 0.95), "email": (0.95, 0.95), "phone": (0.95, 0.85), "card": (0.95, 0.95),
          "iban": (0.95, 0.95), "ssn": (0.95, 0.95), "ip": (0.85, 0.95), "injection": (0.95, 0.95)}


def test_every_gitleaks_rule_for_text_compiles():
    rules = secret_rules()
    assert len([r for r in rules if r.source == "gitleaks.toml"]) >= 215  # all but the few that need a file path
    assert {"openai-api-key", "anthropic-api-key", "aws-access-token", "github-pat", "slack-bot-token",
            "stripe-access-token", "gcp-api-key", "private-key", "jwt", "dotenv-assignment",
            "connection-string-password"} <= {r.id for r in rules}


def test_entropy():
    assert shannon_entropy("aaaa") == 0
    assert shannon_entropy("abcd") == 2


def test_a_secret_match_is_the_secret_and_carries_no_text():
    text = "key = 'sk_live_" + "Zq8xW2vB7nM4kL9pR3tY6uJ1" + "' ok"
    found = list(detector("secrets").find(text))
    [m] = [m for m in found if m.rule == "stripe-access-token"]
    assert {m.type for m in found} == {"SECRET"}
    assert text[m.start:m.end] == "sk_live_Zq8xW2vB7nM4kL9pR3tY6uJ1"
    assert not any(isinstance(v, str) and "Zq8x" in v for v in (m.type, m.rule, m.detector))


def test_placeholders_in_connection_strings_are_not_secrets():
    assert not list(detector("secrets").find("postgres://app:${DB_PASSWORD}@db:5432/app"))
    assert list(detector("secrets").find("postgres://app:Xk29fjq8Lm2@db:5432/app"))


@pytest.mark.parametrize("text, kind", [
    ("mailto:bob@example.com", "EMAIL"), ("0049 89 1234567", "PHONE"), ("4111-1111-1111-1111", "CARD"),
    ("GB82 WEST 1234 5698 7654 32", "IBAN"), ("078-05-1121", "SSN"), ("2001:db8::1", "IP"), ("10.0.0.1.", "IP"),
])
def test_pii_found(text, kind):
    assert [m.type for m in detector(kind.lower()).find(text)] == [kind]


@pytest.mark.parametrize("name, text", [
    ("card", "4111 1111 1111 1112"), ("iban", "GB82 WEST 1234 5698 7654 33"), ("ssn", "666-12-3456"),
    ("ip", "999.1.1.1"), ("phone", "2024-05-06"), ("email", "postgres://u:pw@db.example.com"),
])
def test_pii_checksums_and_ranges_reject(name, text):
    assert list(detector(name).find(text)) == []


def test_hidden_text_is_injection_but_emoji_joiners_are_not():
    d = InjectionDetector()
    assert [m.rule for m in d.find("a\U000e0041\U000e0042b")] == ["hidden-text"]
    assert [m.rule for m in d.find("a\u200bb")] == ["hidden-text"]
    assert list(d.find("\U0001F468\u200d\U0001F469\u200d\U0001F467")) == []


def test_custom_regex_and_callable():
    assert [(m.type, m.start) for m in RegexDetector([("EMPLOYEE_ID", r"EMP-\d{5}")]).find("id EMP-12345")] == [
        ("EMPLOYEE_ID", 3)]
    found = list(CallableDetector("policy_callables:find_codes").find("code ZZ-99 here"))
    assert [(m.type, m.start, m.end) for m in found] == [("CODE", 5, 10)]
    with pytest.raises(ValueError, match="cannot load"):
        CallableDetector("policy_callables:missing")


def test_overlaps_keep_the_earlier_longer_match():
    ms = [Match("A", 0, 5, "x"), Match("B", 2, 4, "x"), Match("C", 5, 9, "x"), Match("D", 0, 2, "x")]
    assert [m.type for m in without_overlaps(ms)] == ["A", "C"]


def test_corpus_precision_and_recall_per_detector():
    rows = [json.loads(line) for line in CORPUS.read_text(encoding="utf-8").splitlines()]
    positives = sum(1 for r in rows if r["labels"])
    assert len(rows) >= 200 and positives >= len(rows) / 2 - 5 and all(r["source"] for r in rows)
    failures = []
    for kind, name in TYPES.items():
        d = detector(name)
        tp = fp = fn = 0
        for row in rows:
            hit, want = any(True for _ in d.find(row["text"])), kind in row["labels"]
            tp, fp, fn = tp + (hit and want), fp + (hit and not want), fn + (want and not hit)
        precision, recall = tp / max(tp + fp, 1), tp / max(tp + fn, 1)
        print(f"{name:10} precision {precision:.2f} recall {recall:.2f} (tp {tp}, fp {fp}, fn {fn})")
        if precision < FLOORS[name][0] or recall < FLOORS[name][1]:
            failures.append((name, precision, recall))
    assert failures == []
