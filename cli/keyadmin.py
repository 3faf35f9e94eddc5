"""Gateway key administration behind `tapgate keys`: budget specs parsed, rows written with only the
secret's hash, so the command stays a thin layer and the running gateway's KeyRing picks changes up."""

from __future__ import annotations

import json
import re
import secrets
import sqlite3
from datetime import UTC, datetime, timedelta
from typing import Any, get_args

from pydantic import ValidationError
from sqlite_utils import Database
from sqlite_utils.db import NotFoundError

from cli.queries import StoreError
from core.config import Alerts, Budget, Downgrade, Period, RateLimit, Unit
from core.keys import GatewayKey, hash_secret, new_secret

PREFIX_CHARS = 8  # of the secret, kept so a key can be recognised in a list ("tg-AbCdE")
_SPEC = re.compile(r"^(?P<cap>(?:\d+(?:\.\d*)?|\.\d+)(?:e[-+]?\d+)?)?(?P<unit>[a-z]+)/(?P<period>[a-z]+)(?:@(?P<soft>.*))?$")
_DURATION = re.compile(r"^(\d+)([mhdw])$")
_SECONDS = {"m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


class KeyAdminError(StoreError):
    """A key command that cannot be done as asked; the message is for the user."""


def parse_downgrade(spec: str) -> Downgrade:
    """`<share>:<model glob>=<cheaper model>`, e.g. `0.8:gpt-4o=gpt-4o-mini`."""
    share, _, rule = spec.partition(":")
    model, _, to = rule.partition("=")
    try:
        return Downgrade(above=float(share), model=model.strip(), to=to.strip())
    except (ValueError, ValidationError):
        raise KeyAdminError(f"downgrade {spec!r}: expected <share>:<model>=<cheaper model> with a share in (0, 1], "
                            "e.g. 0.8:gpt-4o=gpt-4o-mini") from None


def parse_budget(spec: str) -> Budget:
    """`<cap><unit>/<period>[@soft1,soft2]`, e.g. `100usd/month@50,80`, `10requests/day`, `usd/month@5,8`."""
    text = spec.strip().lower().replace(" ", "")
    m = _SPEC.match(text)
    if not m:
        raise KeyAdminError(
            f"budget {spec!r}: expected <cap><unit>/<period>[@soft,...], e.g. 100usd/month@50,80 or 10requests/day"
        )
    try:
        soft = [float(s) for s in m["soft"].split(",")] if m["soft"] else []
    except ValueError:
        raise KeyAdminError(f"budget {spec!r}: soft thresholds after @ must be numbers, e.g. @50,80") from None
    fields: dict[str, Any] = {"unit": m["unit"], "period": m["period"], "soft": soft}
    if m["cap"]:
        fields["cap"] = float(m["cap"])
    try:
        budget = Budget.model_validate(fields)
    except ValidationError as e:
        raise KeyAdminError(f"budget {spec!r}: {_readable(e)}") from None
    if budget.cap is None and not budget.soft:
        raise KeyAdminError(f"budget {spec!r}: give a cap (100{budget.unit}/...), soft thresholds (@50,80), or both")
    if any(s <= 0 for s in budget.soft):
        raise KeyAdminError(f"budget {spec!r}: soft thresholds must be greater than 0")
    if budget.cap is not None and any(s >= budget.cap for s in budget.soft):
        raise KeyAdminError(f"budget {spec!r}: soft thresholds must be below the cap ({_number(budget.cap)})")
    return budget


def budget_spec(budget: Budget) -> str:
    """The spec a budget was written as: parse_budget's inverse, for lists."""
    cap = _number(budget.cap) if budget.cap is not None else ""
    soft = "@" + ",".join(map(_number, budget.soft)) if budget.soft else ""
    return f"{cap}{budget.unit}/{budget.period}{soft}"


def _number(value: float) -> str:
    """12 significant digits: 0.3, not 0.30000000000000004."""
    return str(int(value)) if float(value).is_integer() else f"{float(value):.12g}"


def downgrade_spec(rule: Downgrade) -> str:
    """The --downgrade a rule was written as: parse_downgrade's inverse, for lists."""
    return f"{_number(rule.above)}:{rule.model}={rule.to}"


def _readable(e: ValidationError) -> str:
    err = e.errors()[0]
    where = ".".join(str(p) for p in err["loc"])
    if where == "unit":
        return f"unit {err['input']!r} is not one of {', '.join(get_args(Unit))}"
    if where == "period":
        return f"period {err['input']!r} is not one of {', '.join(get_args(Period))}"
    if err["type"] == "greater_than":
        return f"{where} must be greater than {err['ctx']['gt']}"
    return f"{where}: {err['msg']}"


def parse_expiry(text: str, now: datetime) -> str:
    """`30d`, `12h`, `90m`, `2w` from now, or an ISO date or time (UTC unless it says; a date means
    midnight at its start); stored as UTC ISO 8601 so it compares as text with GatewayKey.problem."""
    value = text.strip().lower()
    if m := _DURATION.match(value):
        when = now + timedelta(seconds=int(m[1]) * _SECONDS[m[2]])
    else:
        try:
            when = datetime.fromisoformat(text.strip())
        except ValueError:
            raise KeyAdminError(f"expires {text!r}: expected 30d, 12h, 90m, 2w or an ISO date or time") from None
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        if when <= now:
            raise KeyAdminError(f"expires {text!r}: that is already past")
    return _iso(when)


def parse_meta(items: list[str]) -> dict[str, str]:
    meta = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise KeyAdminError(f"--meta takes key=value, not {item!r}")
        meta[key] = value
    return meta


def create_key(
    db: Database,
    name: str,
    budgets: list[Budget] = (),
    rpm: int | None = None,
    tpm: int | None = None,
    models: list[str] = (),
    expires: str | None = None,
    metadata: dict[str, Any] | None = None,
    now: datetime | None = None,
    downgrade: list[Downgrade] = (),
    alerts: Alerts | None = None,
) -> tuple[GatewayKey, str]:
    """A new key and its secret; the secret is returned here once and never stored."""
    now = now or datetime.now(UTC)
    _one_per_period(budgets)
    limit = _rate_limit(rpm, tpm)
    secret = new_secret()
    row = {
        "name": name,
        "hash": hash_secret(secret),
        "prefix": secret[:PREFIX_CHARS],
        "created_at": _iso(now),
        "expires_at": parse_expiry(expires, now) if expires else None,
        "revoked_at": None,
        "rotated_at": None,
        "models": json.dumps(list(models)),
        "budgets": json.dumps([b.model_dump(exclude_none=True) for b in budgets]),
        "rate_limit": limit.model_dump_json(exclude_none=True),
        "alerts": (alerts or Alerts()).model_dump_json(exclude_none=True),
        "metadata": json.dumps(metadata or {}),
        "downgrade": json.dumps([d.model_dump() for d in downgrade]),
    }
    for _ in range(5):  # 32 bits of id: a clash is unlikely, and harmless when retried
        row["id"] = "key_" + secrets.token_hex(4)
        try:
            db["keys"].insert(row)
            break
        except sqlite3.IntegrityError:
            continue
    else:
        raise KeyAdminError("could not find a free key id")
    return GatewayKey.from_row(row), secret


def _one_per_period(budgets: list[Budget]) -> None:
    seen: set[tuple[str, str]] = set()
    for b in budgets:
        if (b.unit, b.period) in seen:
            raise KeyAdminError(f"two budgets in {b.unit} per {b.period}: give one")
        seen.add((b.unit, b.period))


def _rate_limit(rpm: int | None, tpm: int | None) -> RateLimit:
    try:
        return RateLimit(rpm=rpm or None, tpm=tpm or None)  # 0: no limit
    except ValidationError as e:
        raise KeyAdminError(f"rate limit: {_readable(e)}") from None


def parse_alerts(given: dict[str, Any], current: Alerts | None = None) -> Alerts:
    """A key's alert destinations: `given` fields (slack_webhook, webhook, and email_to, smtp_host,
    smtp_port, sender, starttls, username, password_env for email) over `current`; a value of "none"
    (email_to ["none"] for email) removes that destination."""
    fields = (current or Alerts()).model_dump(exclude_none=True)
    for name in ("slack_webhook", "webhook"):
        if name in given:
            fields[name] = None if given[name] == "none" else given[name]
    email = {("to" if k == "email_to" else k): v for k, v in given.items() if k not in ("slack_webhook", "webhook")}
    if email.get("to") == ["none"]:
        fields["email"] = None
    elif email:
        fields["email"] = {**(fields.get("email") or {}), **email}
    try:
        return Alerts.model_validate({k: v for k, v in fields.items() if v is not None})
    except ValidationError as e:
        err = e.errors()[0]
        if err["loc"][:1] == ("email",) and err["type"] == "missing":
            flag = "email-to" if err["loc"][-1] == "to" else "smtp-host"
            raise KeyAdminError(f"email alerts need --{flag}") from None
        raise KeyAdminError(f"alerts: {_readable(e)}") from None


KEEP = object()  # update_key: a setting not given stays as it is


def update_key(
    db: Database,
    key_id: str,
    *,
    name: str | None = None,
    budgets: list[Budget] | None = None,
    rpm: Any = KEEP,
    tpm: Any = KEEP,
    models: list[str] | None = None,
    expires: Any = KEEP,
    metadata: dict[str, Any] | None = None,
    downgrade: list[Downgrade] | None = None,
    alerts: dict[str, Any] | None = None,
    now: datetime | None = None,
) -> dict[str, Any]:
    """Change a key's settings; each one given replaces the old whole (None or KEEP: unchanged;
    rpm/tpm 0 and expires None remove them). Its id, secret and spend stay; the running gateway's key
    ring sees the row change and applies it to the next call."""
    row = _row(db, key_id)
    if row["revoked_at"]:
        raise KeyAdminError(f"key {key_id} was revoked at {row['revoked_at']}; create a new one")
    key = GatewayKey.from_row(row)
    updates: dict[str, Any] = {}
    if name is not None:
        updates["name"] = name
    if budgets is not None:
        _one_per_period(budgets)
        updates["budgets"] = json.dumps([b.model_dump(exclude_none=True) for b in budgets])
    if rpm is not KEEP or tpm is not KEEP:
        limit = _rate_limit(key.rate_limit.rpm if rpm is KEEP else rpm, key.rate_limit.tpm if tpm is KEEP else tpm)
        updates["rate_limit"] = limit.model_dump_json(exclude_none=True)
    if models is not None:
        updates["models"] = json.dumps(list(models))
    if expires is not KEEP:
        updates["expires_at"] = parse_expiry(expires, now or datetime.now(UTC)) if expires else None
    if metadata is not None:
        updates["metadata"] = json.dumps(metadata)
    if downgrade is not None:
        updates["downgrade"] = json.dumps([d.model_dump() for d in downgrade])
    if alerts:
        updates["alerts"] = parse_alerts(alerts, key.alerts).model_dump_json(exclude_none=True)
    if updates:
        db["keys"].update(key_id, updates)
    return describe({**row, **updates})


def list_keys(db: Database) -> list[dict[str, Any]]:
    """Every key, oldest first, as shown to a user: never the hash."""
    return [describe(row) for row in db["keys"].rows_where(order_by="created_at, id")]


def describe(row: dict[str, Any], now: datetime | None = None) -> dict[str, Any]:
    key = GatewayKey.from_row(row)
    problem = key.problem(now)
    status = "active" if problem is None else "revoked" if key.revoked_at else "expired"
    return {
        "id": key.id,
        "name": key.name,
        "prefix": key.prefix,
        "status": status,
        "created_at": key.created_at,
        "expires_at": key.expires_at,
        "revoked_at": key.revoked_at,
        "rotated_at": row.get("rotated_at"),
        "budgets": [budget_spec(b) for b in key.budgets],
        "rate_limit": key.rate_limit.model_dump(exclude_none=True),
        "models": list(key.models),
        "metadata": key.metadata,
        # where the key's own alerts go, by kind only: a webhook URL is as secret as a key
        "alerts": [kind for kind in ("slack_webhook", "webhook", "email") if getattr(key.alerts, kind)],
        "downgrade": [downgrade_spec(d) for d in key.downgrade],
    }


def revoke_key(db: Database, key_id: str, now: datetime | None = None) -> dict[str, Any]:
    """Stop a key working; revoking twice keeps the first time."""
    row = _row(db, key_id)
    if not row["revoked_at"]:
        row["revoked_at"] = _iso(now or datetime.now(UTC))
        db["keys"].update(key_id, {"revoked_at": row["revoked_at"]})
    return describe(row)


def rotate_key(db: Database, key_id: str, now: datetime | None = None) -> tuple[dict[str, Any], str]:
    """A new secret for the same key: id, budgets and spend carry over; the old secret stops working."""
    row = _row(db, key_id)
    if row["revoked_at"]:
        raise KeyAdminError(f"key {key_id} was revoked at {row['revoked_at']}; create a new one")
    secret = new_secret()
    updates = {"hash": hash_secret(secret), "prefix": secret[:PREFIX_CHARS], "rotated_at": _iso(now or datetime.now(UTC))}
    db["keys"].update(key_id, updates)
    return describe({**row, **updates}), secret


def _row(db: Database, key_id: str) -> dict[str, Any]:
    try:
        return db["keys"].get(key_id)
    except NotFoundError:
        raise KeyAdminError(f"no key {key_id!r} (see tapgate keys list)") from None


def _iso(when: datetime) -> str:
    return when.astimezone(UTC).isoformat(timespec="seconds")
