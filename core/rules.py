"""Routing rules: what a call shows (its features) against `routing.rules`, in order, the first match
winning; compiled once per config so a call's evaluation is a few comparisons and regex searches."""

from __future__ import annotations

import fnmatch
import json
import re
import string
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from core.config import RoutingRule

CHARS_PER_TOKEN = 4  # the estimate core/call.py uses for a call whose usage never arrived
IMAGE_PARTS = {"image_url", "input_image", "image"}
# Punctuation to spaces in one C pass (bytes.translate), so the words of a prompt are a split away.
PUNCTUATION = bytes.maketrans(string.punctuation.encode(), b" " * len(string.punctuation))
MEMO = 512  # system prompts remembered per regex rule (most calls of an app share a few prompts)


@dataclass(slots=True)
class Features:
    """What rules match on, read once per call from the OpenAI-shaped body and who sent it."""

    model: str = ""
    user_text: str = ""  # the last user message
    system_text: str = ""  # system and developer messages, joined
    input_tokens: int = 0  # estimated: characters / 4
    tools: bool = False
    images: bool = False
    json_schema: bool = False
    metadata: Mapping[str, Any] = field(default_factory=dict)
    customer: str | None = None
    thread: str | None = None
    key_id: str | None = None
    key_name: str | None = None
    headers: Mapping[str, str] = field(default_factory=dict)  # lower-case names
    _words: tuple[frozenset[bytes], bytes] | None = None
    _folded: str | None = None

    @property
    def folded_user(self) -> str:
        """The last user message case-folded as a case-insensitive regex sees it (see required_literal)."""
        if self._folded is None:
            self._folded = fold(self.user_text)
        return self._folded

    @property
    def words(self) -> tuple[frozenset[bytes], bytes]:
        """The lower-case words of the last user message and the system prompt (UTF-8): as a set, and
        joined between spaces (for phrases); read once, when a keyword rule first asks."""
        if self._words is None:
            split = f"{self.user_text}\n{self.system_text}".encode().lower().translate(PUNCTUATION).split()
            self._words = frozenset(split), b" " + b" ".join(split) + b" "
        return self._words


def _text(content: Any) -> tuple[str, bool]:
    """A message content's text, and whether it holds an image."""
    if isinstance(content, str):
        return content, False
    if not isinstance(content, list):
        return "", False
    texts, image = [], False
    for part in content:
        if isinstance(part, dict):
            if part.get("type") in IMAGE_PARTS:
                image = True
            elif isinstance(part.get("text"), str):
                texts.append(part["text"])
    return "\n".join(texts), image


def features_of(body: Mapping[str, Any], *, metadata: Mapping[str, Any] | None = None, customer: str | None = None,
                key_id: str | None = None, key_name: str | None = None,
                headers: Mapping[str, str] | None = None, thread: str | None = None) -> Features:
    """Features of an OpenAI chat request (the router's inner shape) and of the call around it."""
    messages = body.get("messages") if isinstance(body.get("messages"), list) else []
    user, systems, images, chars = "", [], False, 0
    for message in messages:
        if not isinstance(message, dict):
            continue
        text, image = _text(message.get("content"))
        images, chars = images or image, chars + len(text)
        if message.get("role") == "user":
            user = text
        elif message.get("role") in ("system", "developer"):
            systems.append(text)
    tools = bool(body.get("tools") or body.get("functions"))
    if tools:
        chars += len(json.dumps(body.get("tools") or body.get("functions"), default=str))
    response_format = body.get("response_format")
    meta = {**(body.get("metadata") if isinstance(body.get("metadata"), dict) else {}), **(metadata or {})}
    return Features(
        model=str(body.get("model") or ""), user_text=user, system_text="\n".join(systems),
        input_tokens=-(-chars // CHARS_PER_TOKEN), tools=tools, images=images,
        json_schema=isinstance(response_format, dict) and response_format.get("type") == "json_schema",
        metadata=meta, customer=customer, thread=thread, key_id=key_id, key_name=key_name,
        headers={k.lower(): v for k, v in (headers or {}).items()})


@dataclass(frozen=True, slots=True)
class Condition:
    """One condition of a rule: a Python expression over `f` (the Features) whose names are the
    objects in `objects` (compiled patterns, sets, bounds), and what it says when it holds."""

    expr: str
    objects: dict[str, Any]
    say: Callable[[Features], str]


def fold(text: str) -> str:
    """Case-folded so that every character a case-insensitive regex takes for an ASCII letter becomes
    that letter: casefold() does so for all but U+0130 (casefolds to i + U+0307) and U+0131 (to itself),
    found by trying every code point against every printable ASCII character."""
    return text.casefold().replace("\u0307", "").replace("\u0131", "i")


def required_literal(pattern: str) -> str | None:
    """The longest run of ASCII characters every match of `pattern` must contain (top-level literals
    in sequence), case-folded; None when there is none or the pattern cannot be read so. A text whose
    fold() lacks it cannot match, so the regex need not run."""
    try:
        from re import _parser  # the stdlib's own reading of the pattern (sre_parse)

        items = list(_parser.parse(pattern, re.I))
    except Exception:
        return None
    best, run = "", ""
    for op, value in items:
        if op is _parser.LITERAL and value < 128:
            run += chr(value)
        else:
            best, run = max(best, run, key=len), ""
    best = max(best, run, key=len)
    return best.casefold() or None


def _found(pattern: re.Pattern, text: str) -> str:
    found = pattern.search(text)
    return found.group(0)[:40] if found else ""


def _conditions(rule: RoutingRule) -> list[Condition]:
    """The rule's conditions, cheapest first, so most non-matching rules fail on a comparison."""
    m, out = rule.match, []
    if m.model:
        models = re.compile("|".join(fnmatch.translate(g) for g in m.model))
        out.append(Condition("{match}(f.model) is not None", {"match": models.match},
                             lambda f: f"model {f.model!r} matches {' or '.join(m.model)}"))
    for flag, name in ((m.tools, "tools"), (m.images, "images"), (m.json_schema, "json_schema")):
        if flag is not None:
            out.append(Condition(f"f.{name} is {flag}", {},
                                 lambda f, flag=flag, name=name: f"{name} {'present' if flag else 'absent'}"))
    if m.min_input_tokens is not None or m.max_input_tokens is not None:
        low, high = m.min_input_tokens or 0, m.max_input_tokens if m.max_input_tokens is not None else float("inf")
        out.append(Condition("{low} <= f.input_tokens <= {high}", {"low": low, "high": high},
                             lambda f: f"~{f.input_tokens} input tokens in [{low}, {high}]"))
    if m.customer:
        out.append(Condition("f.customer in {customers}", {"customers": frozenset(m.customer)},
                             lambda f: f"customer {f.customer!r}"))
    if m.key:
        out.append(Condition("(f.key_id in {keys} or f.key_name in {keys})", {"keys": frozenset(m.key)},
                             lambda f: f"key {f.key_name or f.key_id!r}"))
    for key, value in m.metadata.items():
        out.append(Condition("str(f.metadata.get({key})) == {value}", {"key": key, "value": value},
                             lambda f, key=key, value=value: f"metadata {key}={value}"))
    for header, pattern in m.headers.items():
        out.append(Condition("({name} in f.headers and {search}(f.headers[{name}]) is not None)",
                             {"name": header.lower(), "search": re.compile(pattern).search},
                             lambda f, n=header, p=pattern: f"header {n.lower()} matches /{p}/"))
    if m.keywords:
        holds, say = _keywords(m.keywords)
        out.append(Condition("{holds}(f)", {"holds": holds}, say))
    if m.system_regex:
        system, seen = re.compile(m.system_regex, re.I), {}

        def system_matches(f: Features) -> bool:  # most calls of an app share a few system prompts
            if (hit := seen.get(f.system_text)) is None:
                if len(seen) >= MEMO:
                    seen.clear()
                hit = seen[f.system_text] = system.search(f.system_text) is not None
            return hit

        out.append(Condition("{holds}(f)", {"holds": system_matches},
                             lambda f: f"system prompt matches /{m.system_regex}/ ({_found(system, f.system_text)!r})"))
    if m.user_regex:
        user, literal = re.compile(m.user_regex, re.I), required_literal(m.user_regex)
        test = "{search}(f.user_text) is not None"
        out.append(Condition(f"({{literal}} in f.folded_user and {test})" if literal else test,
                             {"search": user.search, **({"literal": literal} if literal else {})},
                             lambda f: f"last user message matches /{m.user_regex}/ ({_found(user, f.user_text)!r})"))
    return out


def compile_rules(conditions: list[list[Condition]]) -> Callable[[Features], int]:
    """One function testing every rule in order, returning the first match's index (-1: none): the
    conditions inlined as `if ... and ...:` lines, so a call costs comparisons, not a Python call per
    condition. The source is built from the templates above only; every configured value (pattern,
    set, string) is an object in its namespace, never text in the source."""
    namespace: dict[str, Any] = {}
    lines = ["def decide(f):"]
    for i, rule in enumerate(conditions):
        tests = []
        for j, condition in enumerate(rule):
            names = {name: f"_{i}_{j}_{name}" for name in condition.objects}
            namespace.update({names[name]: obj for name, obj in condition.objects.items()})
            tests.append(condition.expr.format(**names))
        lines.append(f"    if {' and '.join(tests) or 'True'}:\n        return {i}")
    lines.append("    return -1")
    exec(compile("\n".join(lines), "<routing.rules>", "exec"), namespace)  # noqa: S102 (trusted templates)
    return namespace["decide"]


def _keywords(keywords: list[str]) -> tuple[Callable[[Features], bool], Callable[[Features], str]]:
    """Whole words or phrases, any case, in the last user message or the system prompt: a set lookup
    against the call's words (punctuation counts as a space, as a regex's \\b would split there)."""
    normal = [k.encode().lower().translate(PUNCTUATION).split() for k in keywords]
    single = frozenset(w[0] for w in normal if len(w) == 1)
    phrases = [b" " + b" ".join(w) + b" " for w in normal if len(w) > 1]

    def holds(f: Features) -> bool:
        words, joined = f.words
        return not single.isdisjoint(words) or any(p in joined for p in phrases)

    def say(f: Features) -> str:
        words, joined = f.words
        found = sorted(single & words) or [p.strip() for p in phrases if p in joined]
        return f"keyword {found[0].decode()!r}"

    return holds, say


@dataclass(frozen=True, slots=True)
class Decision:
    """The rule that matched (its 1-based place in the list) and why."""

    rule: RoutingRule
    number: int
    reason: str


class RuleSet:
    """`routing.rules`, compiled; `decide` gives the first match."""

    def __init__(self, rules: list[RoutingRule]) -> None:
        self.rules = [(rule, _conditions(rule)) for rule in rules]
        self._first = compile_rules([conditions for _, conditions in self.rules])

    def __len__(self) -> int:
        return len(self.rules)

    def decide(self, features: Features) -> Decision | None:
        """The first rule whose every condition holds, with its reason; None when no rule matches."""
        if (i := self._first(features)) < 0:
            return None
        rule, conditions = self.rules[i]
        reason = "; ".join(c.say(features) for c in conditions) or "matches every call"
        return Decision(rule, i + 1, reason)
