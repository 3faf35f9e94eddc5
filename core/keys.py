"""Gateway keys: the secret is shown once and only its hash is stored; the gateway keeps the table in
memory and re-reads it when the store changes, so a key created or revoked by the CLI takes effect
while the gateway runs."""

from __future__ import annotations

import base64
import fnmatch
import hashlib
import logging
import os
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from core import database
from core.config import Alerts, Budget, Downgrade, RateLimit
from core.following import StoreFollower
from core.ledger import plural
from providers.safe_json import loads

log = logging.getLogger(__name__)
# How often the key ring re-reads the store when other gateway processes share it (through Redis or
# PostgreSQL): a key revoked or rotated through any of them is refused by all within a second.
SHARED_REFRESH = 0.25

KEY_PREFIX = "tg-"
# The columns of a key that the gateway acts on: a change to any of them is re-read.
SETTINGS = "id, hash, name, expires_at, revoked_at, models, budgets, rate_limit, alerts, metadata, downgrade"


def new_secret() -> str:
    """A new gateway key: 32 random bytes, URL-safe, recognisable by its prefix."""
    return KEY_PREFIX + base64.urlsafe_b64encode(os.urandom(32)).rstrip(b"=").decode()


def hash_secret(secret: str) -> str:
    """What the store keeps: keys are random and long, so a plain SHA-256 cannot be reversed."""
    return hashlib.sha256(secret.encode()).hexdigest()


@dataclass(frozen=True)
class GatewayKey:
    id: str
    name: str
    prefix: str
    created_at: str
    expires_at: str | None = None
    revoked_at: str | None = None
    models: tuple[str, ...] = ()
    budgets: tuple[Budget, ...] = ()
    rate_limit: RateLimit = field(default_factory=RateLimit)  # pydantic models are unhashable: no plain default
    alerts: Alerts = field(default_factory=Alerts)
    metadata: dict[str, Any] = field(default_factory=dict)
    downgrade: tuple[Downgrade, ...] = ()

    def __repr__(self) -> str:
        # Short: it sits in flow.metadata, which mitmproxy formats for filters and views on every flow.
        return f"GatewayKey({self.id})"

    def problem(self, now: datetime | None = None) -> str | None:
        """Why the key cannot be used now, or None."""
        if self.revoked_at:
            return f"gateway key {self.prefix}… was revoked"
        if self.expires_at and (now or datetime.now(UTC)).isoformat() >= self.expires_at:
            return f"gateway key {self.prefix}… expired at {self.expires_at}"
        return None

    def allows(self, model: str | None) -> bool:
        """Whether the key may call this model (its globs; none means every model)."""
        return not self.models or (model is not None and any(fnmatch.fnmatchcase(model, g) for g in self.models))

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> GatewayKey:
        return cls(
            id=row["id"],
            name=row["name"] or "",
            prefix=row["prefix"],
            created_at=row["created_at"],
            expires_at=row["expires_at"],
            revoked_at=row["revoked_at"],
            models=tuple(loads(row["models"] or "[]")),
            budgets=tuple(Budget.model_validate(b) for b in loads(row["budgets"] or "[]")),
            rate_limit=RateLimit.model_validate(loads(row["rate_limit"] or "{}")),
            alerts=Alerts.model_validate(loads(row["alerts"] or "{}")),
            downgrade=tuple(Downgrade.model_validate(d) for d in loads(row.get("downgrade") or "[]")),
            metadata=loads(row["metadata"] or "{}"),
        )


class KeyRing(StoreFollower):
    """Every key by hash, read from the store; a thread re-reads it when the file changes, so lookups
    on the hot path are one dict access and never touch SQLite."""

    what = "gateway keys"

    def __init__(self) -> None:
        super().__init__()  # refresh: shorter when processes share the store (addons/shared.py)
        self._by_hash: dict[str, GatewayKey] = {}

    def __len__(self) -> int:
        return len(self._by_hash)

    def find(self, secret: str) -> GatewayKey | None:
        return self._by_hash.get(hash_secret(secret))

    def by_hash(self, digest: str) -> GatewayKey | None:
        return self._by_hash.get(digest)

    def keys(self) -> list[GatewayKey]:
        """Every key (the dict is swapped whole on reload, so any thread may ask)."""
        return list(self._by_hash.values())

    def by_id(self, key_id: str) -> GatewayKey | None:
        return next((k for k in self._by_hash.values() if k.id == key_id), None)

    def reload(self) -> None:
        """Re-read the keys when one was created, rotated, revoked or updated; otherwise only a
        one-row query (file stamps would not do: the store changes with every recorded call)."""
        with self.connection() as conn:
            if not database.has_table(conn, "keys"):
                version, rows = None, []  # a store from before m004 (or a new PostgreSQL one): no keys yet
            else:
                # every column create, rotate, revoke and update change, in one string built by the store
                version = conn.execute(f"SELECT json_group_array(json_array({SETTINGS}))"
                                       " FROM (SELECT * FROM keys ORDER BY id) AS k").fetchone()[0]
                if version == self._version:
                    return
                rows = [dict(r) for r in conn.execute("SELECT * FROM keys")]
        by_hash = {}
        for row in rows:
            try:
                by_hash[row["hash"]] = GatewayKey.from_row(row)
            except ValueError as e:
                log.warning("tapgate: key %s is unreadable and was skipped: %s", row.get("id"), e)
        changed = by_hash != self._by_hash
        self._by_hash, self._version = by_hash, version
        if changed:  # after the swap: whoever waits for this line sees the new keys in use
            usable = sum(k.problem() is None for k in by_hash.values())
            log.info("tapgate: %s (%d usable) from %s", plural(len(by_hash), "gateway key"), usable, self.shown)


