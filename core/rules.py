"""Routing rules: what a call shows (its features) against `routing.rules`, in order, the first match
winning; compiled once per config so a call's evaluation is a few comparisons and regex searches."""

from __future__ import annotations

import fnmatch
import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from core.config import RoutingRule

CHARS_PER_TOKEN = 4  # the estimate core/call.py uses for a call whose usage never arrived
IMAGE_PARTS = {"image_url", "input_image", "image"}


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


# One condition: a test on the features, and what it says when it holds.
type Check = tuple[Callable[[Features], bool], Callable[[Features], str]]


def _found(pattern: re.Pattern, text: str) -> str:
    found = pattern.search(text)
    return found.group(0)[:40] if found else ""


def _checks(rule: RoutingRule) -> list[Check]:
    """The rule's conditions, cheapest first, so most non-matching rules fail on a comparison."""
    m, checks = rule.match, []
    if m.model:
        models = re.compile("|".join(fnmatch.translate(g) for g in m.model))
        checks.append((lambda f: models.match(f.model) is not None,
                       lambda f: f"model {f.model!r} matches {' or '.join(m.model)}"))
    for flag, name in ((m.tools, "tools"), (m.images, "images"), (m.json_schema, "json_schema")):
        if flag is not None:
            checks.append((lambda f, flag=flag, name=name: getattr(f, name) is flag,
                           lambda f, flag=flag, name=name: f"{name} {'present' if flag else 'absent'}"))
    if m.min_input_tokens is not None or m.max_input_tokens is not None:
        low, high = m.min_input_tokens or 0, m.max_input_tokens if m.max_input_tokens is not None else float("inf")
        checks.append((lambda f: low <= f.input_tokens <= high,
                       lambda f: f"~{f.input_tokens} input tokens in [{low}, {high}]"))
    if m.customer:
        customers = frozenset(m.customer)
        checks.append((lambda f: f.customer in customers, lambda f: f"customer {f.customer!r}"))
    if m.key:
        keys = frozenset(m.key)
        checks.append((lambda f: f.key_id in keys or f.key_name in keys, lambda f: f"key {f.key_name or f.key_id!r}"))
    for key, value in m.metadata.items():
        checks.append((lambda f, key=key, value=value: str(f.metadata.get(key)) == value,
                       lambda f, key=key, value=value: f"metadata {key}={value}"))
    for header, pattern in m.headers.items():
        compiled, name = re.compile(pattern), header.lower()
        checks.append((lambda f, c=compiled, n=name: c.search(f.headers.get(n, "")) is not None if n in f.headers
                       else False, lambda f, n=name, p=pattern: f"header {n} matches /{p}/"))
    if m.user_regex:
        user = re.compile(m.user_regex, re.I)
        checks.append((lambda f: user.search(f.user_text) is not None,
                       lambda f: f"last user message matches /{m.user_regex}/ ({_found(user, f.user_text)!r})"))
    if m.system_regex:
        system = re.compile(m.system_regex, re.I)
        checks.append((lambda f: system.search(f.system_text) is not None,
                       lambda f: f"system prompt matches /{m.system_regex}/ ({_found(system, f.system_text)!r})"))
    if m.keywords:
        words = re.compile(r"\b(?:" + "|".join(re.escape(w) for w in m.keywords) + r")\b", re.I)
        checks.append((lambda f: words.search(f.user_text) is not None or words.search(f.system_text) is not None,
                       lambda f: f"keyword {(_found(words, f.user_text) or _found(words, f.system_text))!r}"))
    return checks


@dataclass(frozen=True, slots=True)
class Decision:
    """The rule that matched (its 1-based place in the list) and why."""

    rule: RoutingRule
    number: int
    reason: str


class RuleSet:
    """`routing.rules`, compiled; `decide` gives the first match."""

    def __init__(self, rules: list[RoutingRule]) -> None:
        self.rules = [(rule, _checks(rule)) for rule in rules]

    def __len__(self) -> int:
        return len(self.rules)

    def decide(self, features: Features) -> Decision | None:
        """The first rule whose every condition holds, with its reason; None when no rule matches."""
        for number, (rule, checks) in enumerate(self.rules, 1):
            for holds, _ in checks:
                if not holds(features):
                    break
            else:
                reason = "; ".join(say(features) for _, say in checks) or "matches every call"
                return Decision(rule, number, reason)
        return None
