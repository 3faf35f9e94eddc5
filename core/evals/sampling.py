"""Which live calls an online rule scores: its filters, then an exact share of what passes them."""

from __future__ import annotations

import fnmatch
import json
from typing import Any

from core.evals.config import OnlineRule
from core.evals.judge import EVAL_METADATA


def matches(rule: OnlineRule, row: dict[str, Any], metadata: dict[str, Any]) -> bool:
    if rule.only_ok and row.get("status") != "ok":
        return False
    if rule.providers and row.get("provider") not in rule.providers:
        return False
    if rule.modes and row.get("mode") not in rule.modes:
        return False
    if rule.customers and row.get("customer_identifier") not in rule.customers:
        return False
    if rule.models and not any(fnmatch.fnmatchcase(row.get("model") or "", m) for m in rule.models):
        return False
    return all(str(metadata.get(k)) == v for k, v in rule.metadata.items())


class Sampler:
    """Error diffusion over one rule's matches: each adds `rate`, and a call is picked each time the sum
    passes 1. Over any n matches exactly floor(n * rate) or one more are picked; no variance to wait out."""

    def __init__(self) -> None:
        self.carry: dict[int, float] = {}

    def pick(self, index: int, rate: float) -> bool:
        carry = self.carry.get(index, 0.0) + rate
        picked = carry >= 1.0 - 1e-9
        self.carry[index] = carry - 1.0 if picked else carry
        return picked


def metadata_of(row: dict[str, Any], fallback: dict[str, Any] | None) -> dict[str, Any]:
    if fallback is not None:
        return fallback
    try:
        meta = json.loads(row.get("metadata") or "{}")
    except ValueError:
        return {}
    return meta if isinstance(meta, dict) else {}


def is_eval_call(metadata: dict[str, Any]) -> bool:
    """The judge's own calls, and experiment runs: scored by whoever made them, never online."""
    return EVAL_METADATA in metadata
