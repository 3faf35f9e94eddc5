"""Readiness: whether the gateway can take calls now (store writable, router bound, every deployment's
key set), with a reason per failed check, for load balancers and orchestrators (GET /health/ready)."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any


@dataclass
class Check:
    name: str
    ok: bool
    reason: str = ""


@dataclass
class Readiness:
    checks: list[Check] = field(default_factory=list)

    @property
    def ready(self) -> bool:
        return all(c.ok for c in self.checks)

    def body(self) -> dict[str, Any]:
        return {"status": "ready" if self.ready else "not_ready",
                "checks": {c.name: {"ok": c.ok, **({"reason": c.reason} if c.reason else {})} for c in self.checks}}


def store_check(storage: Any) -> Check:
    """The store takes rows: its writer runs, is not stalled on SQLite, and its journal can be written."""
    writer = getattr(storage, "writer", None)
    journal = getattr(storage, "journal", None)
    if writer is None or journal is None or not writer.is_alive():
        return Check("store", False, "the store is not open")
    if getattr(storage, "_full", False):
        return Check("store", False, "the journal is full (tapgate_journal_max_mb): calls are not being recorded")
    if writer.stalled_since is not None and hasattr(writer, "connected"):
        # PostgreSQL away: calls still land in the journal on disk and drain when it is back, so every
        # gateway stays in its balancer's pool rather than all leaving it at once.
        return Check("store", True, f"PostgreSQL unreachable, {writer.pending()[0]} records wait in the journal: "
                                    f"{writer.last_error}")
    if writer.stalled_since is not None:
        return Check("store", False, f"the store's writer is stalled: {writer.last_error or 'database locked'}")
    if getattr(storage, "_failing", False) or not os.access(journal.directory, os.W_OK):
        return Check("store", False, f"the journal in {journal.directory} cannot be written")
    return Check("store", True)


def router_check(address: str) -> Check:
    return Check("router", True) if address else Check("router", False, "the router is not listening")


def keys_check(missing: list[tuple[str, str]]) -> Check:
    """Every configured deployment's key variable is set (`missing`: (deployment, variable) pairs)."""
    if not missing:
        return Check("deployment_keys", True)
    names = ", ".join(f"{name} ({variable})" for name, variable in missing)
    return Check("deployment_keys", False, f"key variable not set for: {names}")


def readiness(storage: Any, address: str, missing: list[tuple[str, str]]) -> Readiness:
    return Readiness([store_check(storage), router_check(address), keys_check(missing)])
