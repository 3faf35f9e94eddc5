"""The store's read side: every query the dashboards and the `tapgate` commands ask. Opening the store
read-only (connect), its timestamps (iso) and StoreError come from core/database.py, which the
gateway shares; they are re-exported here, the one module the CLI reads through."""

from __future__ import annotations

import re
import sqlite3
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from core.database import StoreError, columns, connect, has_table, iso  # noqa: F401 (re-exported)
from providers.safe_json import loads

# The columns a list of calls shows: everything but the bodies, which can be a MiB each.
CALL_COLUMNS = (
    "id", "trace_id", "span_id", "started_at", "duration_ms", "ttft_ms", "mode", "provider", "endpoint", "model",
    "response_model", "stream", "status_code", "status", "error", "input_tokens", "output_tokens",
    "cache_read_tokens", "cache_write_tokens", "reasoning_tokens", "usage_estimated", "cost_usd",
    "customer_identifier", "thread_identifier", "metadata", "key_id", "host", "path", "routed_to", "attempts",
    "cache_hit", "cost_saved_usd", "policies",
)
# Columns later migrations added (m005 router, m007 cache, m014 policies): NULL when a reader opens an older store.
LATER_COLUMNS = ("routed_to", "attempts", "cache_hit", "cost_saved_usd", "policies")
BODY_COLUMNS = ("request_body", "response_body")
# Calls with usage but no price (a model missing from the table): their cost is unknown, not 0.
UNPRICED = "sum(cost_usd IS NULL AND input_tokens IS NOT NULL)"
# `spend --by`: a name, or meta:<key> for a metadata key.
GROUPS = {"key": "key_id", "customer": "customer_identifier", "model": "model", "provider": "provider",
          "thread": "thread_identifier", "variant": "experiment || '/' || variant", "client": "client",
          "program": "program", "repo": "repo", "branch": "branch"}
# Groups over columns a later migration added (m013 experiments, m014 client and run tags): a store without
# them cannot group so.
GROUP_COLUMNS = {"variant": "variant", "client": "client", "program": "program", "repo": "repo", "branch": "branch"}
RELATIVE = re.compile(r"^(\d+(?:\.\d+)?)\s*([smhdw])$")
UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}


def parse_when(text: str, now: datetime | None = None) -> str:
    """`30m`, `1h`, `2d`, `1w` ago, or an ISO date or time (UTC unless it says otherwise)."""
    now = now or datetime.now(UTC)
    if m := RELATIVE.match(text.strip()):
        return iso(now - timedelta(**{UNITS[m.group(2)]: float(m.group(1))}))
    try:
        when = datetime.fromisoformat(text.strip())
    except ValueError:
        raise StoreError(f"not a time: {text!r} (use 30m, 1h, 2d, 1w, or an ISO date such as 2025-06-01)") from None
    return iso(when if when.tzinfo else when.replace(tzinfo=UTC))


def has_column(conn: sqlite3.Connection, table: str, column: str) -> bool:
    return column in columns(conn, table)


# -- the dashboard -----------------------------------------------------------------------------------


def call_columns(conn: sqlite3.Connection, extra: tuple[str, ...] = ()) -> str:
    """The select list of a list of calls (CALL_COLUMNS and `extra`); a column a store from before
    its migration lacks reads as NULL."""
    have = set(columns(conn, "requests"))
    return ", ".join(c if c in have or c not in LATER_COLUMNS else f"NULL AS {c}" for c in CALL_COLUMNS + extra)


def calls_since(conn: sqlite3.Connection, since: str, until: str | None) -> list[dict[str, Any]]:
    """The few columns the dashboard's window needs, of calls started in [since, until)."""
    cache = ", cache_hit" if has_column(conn, "requests", "cache_hit") else ""
    sql = f"SELECT id, started_at, provider, status, duration_ms, ttft_ms{cache} FROM requests WHERE started_at >= ?"
    params = (since, until) if until else (since,)
    return [dict(r) for r in conn.execute(sql + (" AND started_at < ?" if until else ""), params)]


def calls_after(conn: sqlite3.Connection, rowid: int) -> list[dict[str, Any]]:
    """Calls written after row `rowid`, in the order they were written: what a follower has not seen.
    (The writer only appends, so rowids grow; a call is written once, when it ends.)"""
    sql = f"SELECT rowid AS _rowid, {call_columns(conn)} FROM requests WHERE rowid > ? ORDER BY rowid"
    return [dict(r) for r in conn.execute(sql, (rowid,))]


def ids_after(conn: sqlite3.Connection, rowid: int) -> dict[str, int]:
    """Request id -> rowid of the calls written after row `rowid`."""
    return {r["id"]: r["_rowid"] for r in conn.execute("SELECT id, rowid AS _rowid FROM requests WHERE rowid > ?",
                                                       (rowid,))}


def last_rowid(conn: sqlite3.Connection) -> int:
    return conn.execute("SELECT coalesce(max(rowid), 0) FROM requests").fetchone()[0]


ATTEMPT = "name >= 'attempt ' AND name < 'attempt!'"  # spans named `attempt ...`: the router's tries


def attempts_since(conn: sqlite3.Connection, since: str) -> dict[str, list[str]]:
    """Request id -> the names of its attempt spans, for spans started since `since` (one scan)."""
    out: dict[str, list[str]] = {}
    for r in conn.execute(f"SELECT request_id, name FROM spans WHERE {ATTEMPT} AND started_at >= ?", (since,)):
        out.setdefault(r["request_id"], []).append(r["name"])
    return out


def attempts_of(conn: sqlite3.Connection, request_ids: list[str]) -> dict[str, list[str]]:
    """Request id -> the names of its attempt spans, for a few requests (by the request_id index)."""
    out: dict[str, list[str]] = {}
    for i in range(0, len(request_ids), 500):
        chunk = request_ids[i : i + 500]
        marks = ", ".join("?" * len(chunk))
        for r in conn.execute(f"SELECT request_id, name FROM spans WHERE {ATTEMPT} AND request_id IN ({marks})",
                              chunk):
            out.setdefault(r["request_id"], []).append(r["name"])
    return out


def spend_since(conn: sqlite3.Connection, since: str, until: str | None = None) -> list[sqlite3.Row]:
    """Cost and calls per (key, customer, model), the dashboard's three spend columns in one scan."""
    sql = ("SELECT key_id, customer_identifier, model, count(*) AS calls, sum(cost_usd) AS cost_usd,"
           f" {UNPRICED} AS unpriced FROM requests WHERE started_at >= ?")
    params: tuple = (since,)
    if until:
        sql, params = sql + " AND started_at < ?", (since, until)
    # `+column`: group after the started_at range, not by walking a (column, started_at) index.
    return conn.execute(sql + " GROUP BY +key_id, +customer_identifier, +model", params).fetchall()


def last_calls(conn: sqlite3.Connection, limit: int, until: str | None = None) -> list[dict[str, Any]]:
    sql = f"SELECT {call_columns(conn)} FROM requests"
    params = (until, limit) if until else (limit,)
    return [dict(r) for r in conn.execute(
        sql + (" WHERE started_at < ?" if until else "") + " ORDER BY started_at DESC, id DESC LIMIT ?", params)]


def budgets(conn: sqlite3.Connection) -> list[sqlite3.Row] | None:
    """Capped budgets as (name, spent, cap, unit) from the gateway's last snapshot of its ledger, or
    None while there are none (a store from before m004 has no table)."""
    if not has_table(conn, "budgets"):
        return None
    rows = conn.execute(
        "SELECT name, spent, cap, unit FROM budgets WHERE cap IS NOT NULL ORDER BY spent / cap DESC, name"
    ).fetchall()
    return rows or None


# -- `tapgate logs` ----------------------------------------------------------------------------------


@dataclass
class Filters:
    """What `tapgate logs` narrows calls by; every field is ANDed."""

    provider: str | None = None
    model: str | None = None
    status: str | None = None
    mode: str | None = None
    customer: str | None = None
    thread: str | None = None
    meta: list[tuple[str, str]] = field(default_factory=list)
    since: str | None = None
    until: str | None = None
    grep: str | None = None
    policy: str | None = None

    def where(self) -> tuple[str, list[Any]]:
        clauses: list[str] = []
        params: list[Any] = []
        for column, value in (("provider", self.provider), ("mode", self.mode),
                              ("customer_identifier", self.customer), ("thread_identifier", self.thread)):
            if value is not None:
                clauses.append(f"{column} = ?")
                params.append(value)
        if self.model is not None:
            clauses.append("(model = ? OR response_model = ?)")
            params += [self.model, self.model]
        if self.status is not None:  # a word (ok, error, ...) or an HTTP status code
            clauses.append("status_code = ?" if self.status.isdigit() else "status = ?")
            params.append(int(self.status) if self.status.isdigit() else self.status)
        for key, value in self.meta:
            clauses.append("json_extract(metadata, ?) IN (?, ?)")
            params += [json_path(key), value, scalar(value)]
        if self.since:
            clauses.append("started_at >= ?")
            params.append(self.since)
        if self.until:
            clauses.append("started_at < ?")
            params.append(self.until)
        if self.policy is not None:  # calls the policy acted on: flagged, redacted, blocked, over its limit
            clauses.append("EXISTS (SELECT 1 FROM json_each(requests.policies) WHERE json_extract(value, '$.policy') = ?"
                           " AND json_extract(value, '$.outcome') != 'clean')")
            params.append(self.policy)
        if self.grep:
            like = "%" + re.sub(r"([\\%_])", r"\\\1", self.grep) + "%"
            clauses.append("(request_body LIKE ? ESCAPE '\\' OR response_body LIKE ? ESCAPE '\\')")
            params += [like, like]
        return (" WHERE " + " AND ".join(clauses)) if clauses else "", params


def json_path(key: str) -> str:
    """A JSON path to one top-level key, quoted so dots and spaces in it are literal."""
    return '$."' + key.replace("\\", "\\\\").replace('"', '\\"') + '"'


def typed(value: Any, kind: str | None) -> Any:
    """A value json_extract gave, typed as SQLite gives it by its json_type: PostgreSQL's json_extract
    returns text only, so a JSON 2 would print as "2" there."""
    if isinstance(value, str) and kind in ("integer", "true", "false"):
        return int(value)
    if isinstance(value, str) and kind == "real":
        return float(value)
    return value


def scalar(value: str) -> Any:
    """`5`, `true`, `1.5` as the SQL values json_extract gives for JSON numbers and booleans."""
    try:
        parsed = loads(value)
    except ValueError:
        return value
    return int(parsed) if isinstance(parsed, bool) else parsed if isinstance(parsed, (int, float)) else value


def logs(conn: sqlite3.Connection, filters: Filters, limit: int | None, bodies: bool = False) -> list[dict[str, Any]]:
    """Calls matching the filters, newest first."""
    where, params = filters.where()
    sql = f"SELECT {call_columns(conn, BODY_COLUMNS if bodies else ())} FROM requests{where}"
    sql += " ORDER BY started_at DESC, id DESC"
    if limit:
        sql, params = sql + " LIMIT ?", [*params, limit]
    return [dict(r) for r in conn.execute(sql, params)]


# -- `tapgate trace` and `tapgate thread` -------------------------------------------------------------


def resolve_trace(conn: sqlite3.Connection, ident: str) -> str:
    """A trace id from a trace id, a request id, or a unique prefix of either (6+ characters)."""
    for sql in ("SELECT trace_id FROM requests WHERE trace_id = ? OR id = ?",
                "SELECT trace_id FROM spans WHERE trace_id = ? OR span_id = ?"):
        if row := conn.execute(sql + " LIMIT 1", (ident, ident)).fetchone():
            return row[0]
    if len(ident) >= 6 and re.fullmatch(r"[0-9a-fA-F]+", ident):
        found = {r[0] for r in conn.execute(
            "SELECT DISTINCT trace_id FROM requests WHERE trace_id LIKE ? || '%' OR id LIKE ? || '%' LIMIT 2",
            (ident.lower(), ident.lower()))}
        if len(found) == 1:
            return found.pop()
        if len(found) > 1:
            raise StoreError(f"{ident!r} is the start of more than one trace; give more of it")
    raise StoreError(f"no trace or request {ident!r} in the store")


SHORT_ID = 8  # the shortest request id prefix `tapgate logs` shows (git shows 7 of a hash)


def unique_prefixes(conn: sqlite3.Connection, ids: list[str], least: int = SHORT_ID) -> dict[str, str]:
    """Each request id's shortest prefix (at least `least` characters) that resolve_trace takes to
    its call's trace: no other trace's id or request id starts with it."""
    out = {}
    for ident in ids:
        if not re.fullmatch(r"[0-9a-f]{6,}", ident):  # resolve_trace takes hex prefixes only
            out[ident] = ident
            continue
        for n in range(min(max(least, 6), len(ident)), len(ident) + 1):
            prefix = ident[:n]
            # a range on the two indexed columns: LIKE 'x%' would scan (the default LIKE ignores case)
            end = prefix[:-1] + chr(ord(prefix[-1]) + 1)
            found = {r[0] for r in conn.execute(
                "SELECT DISTINCT trace_id FROM requests"
                " WHERE (id >= ?1 AND id < ?2) OR (trace_id >= ?1 AND trace_id < ?2) LIMIT 2", (prefix, end))}
            if len(found) <= 1:
                break
        out[ident] = prefix
    return out


def trace(conn: sqlite3.Connection, trace_id: str) -> tuple[list[dict[str, Any]], dict[str, dict[str, Any]]]:
    """The trace's spans (oldest first) and its requests by id."""
    spans = [dict(r) for r in conn.execute(
        "SELECT * FROM spans WHERE trace_id = ? ORDER BY started_at, span_id", (trace_id,))]
    requests = {r["id"]: dict(r) for r in conn.execute(
        f"SELECT {call_columns(conn)} FROM requests WHERE trace_id = ?", (trace_id,))}
    return spans, requests


def thread(conn: sqlite3.Connection, thread_id: str) -> list[dict[str, Any]]:
    """The thread's calls, oldest first, bodies included."""
    sql = f"SELECT {call_columns(conn, BODY_COLUMNS)} FROM requests WHERE thread_identifier = ?"
    return [dict(r) for r in conn.execute(sql + " ORDER BY started_at, id", (thread_id,))]


# -- `tapgate spend` and `tapgate export` -------------------------------------------------------------


def spend(conn: sqlite3.Connection, by: str, since: str | None, until: str | None) -> list[dict[str, Any]]:
    """Totals per group, most expensive first; `by` is a GROUPS name or `meta:<key>`."""
    kind, kparams = "NULL", []  # a metadata key's JSON type, which gives its values their type back
    if by.startswith("meta:") and len(by) > 5:
        group, params = "json_extract(metadata, ?)", [json_path(by[5:])]
        kind, kparams = "min(json_type(metadata, ?))", params
    elif by in GROUPS:
        if (column := GROUP_COLUMNS.get(by)) and not has_column(conn, "requests", column):
            raise StoreError(f"this store has no {column} column yet: the gateway adds it when it next starts")
        group, params = GROUPS[by], []
    else:
        raise StoreError(f"cannot group by {by!r}: use {', '.join(GROUPS)} or meta:<key>")
    where, wparams = Filters(since=since, until=until).where()
    # Over a period, walk the started_at range then group (`+`), not the whole (group, started_at) index.
    grouping = f"+{group}" if where else "1"
    cache = ("coalesce(sum(cache_hit), 0) AS cache_hits, sum(cost_saved_usd) AS saved_usd"
             if has_column(conn, "requests", "cache_hit") else "0 AS cache_hits, NULL AS saved_usd")
    unpriced, shadow = UNPRICED, "NULL AS shadow_cost_usd"
    if has_column(conn, "requests", "shadow_cost_usd"):  # subscription calls: priced, as a shadow cost
        unpriced = "sum(cost_usd IS NULL AND shadow_cost_usd IS NULL AND input_tokens IS NOT NULL)"
        shadow = "sum(shadow_cost_usd) AS shadow_cost_usd"
    sql = (f"SELECT {group} AS name, count(*) AS requests, sum(input_tokens) AS input_tokens,"
           f" sum(output_tokens) AS output_tokens, sum(cost_usd) AS cost_usd, {unpriced} AS unpriced, {shadow}, {cache},"
           f" {kind} AS name_type FROM requests{where} GROUP BY {grouping}"
           " ORDER BY cost_usd DESC NULLS LAST, requests DESC, 1 NULLS FIRST")
    rows = [dict(r) for r in conn.execute(sql, [*params, *kparams, *wparams, *(params if where else [])])]
    return [r | {"name": typed(r["name"], r.pop("name_type"))} for r in rows]


def export(conn: sqlite3.Connection, since: str | None, until: str | None, batch: int = 500
           ) -> Iterator[dict[str, Any]]:
    """Every request in the range, oldest first, each with its spans under "spans"."""
    where, params = Filters(since=since, until=until).where()
    cursor = conn.execute(f"SELECT * FROM requests{where} ORDER BY started_at, id", params)
    while rows := cursor.fetchmany(batch):
        ids = [r["id"] for r in rows]
        spans: dict[str, list[dict[str, Any]]] = {}
        marks = ", ".join("?" * len(ids))
        for s in conn.execute(f"SELECT * FROM spans WHERE request_id IN ({marks}) ORDER BY started_at", ids):
            spans.setdefault(s["request_id"], []).append(dict(s))
        for r in rows:
            yield {**dict(r), "spans": spans.get(r["id"], [])}


# -- scores (`tapgate logs`, `trace`, `evals report`) --------------------------------------------------


def scores_of(conn: sqlite3.Connection, call_ids: list[str]) -> dict[str, list[dict[str, Any]]]:
    """Call id -> its scores, by evaluator name (by the call_id index, 500 ids a query)."""
    out: dict[str, list[dict[str, Any]]] = {}
    if not has_table(conn, "scores"):
        return out
    for i in range(0, len(call_ids), 500):
        chunk = call_ids[i : i + 500]
        marks = ", ".join("?" * len(chunk))
        for r in conn.execute(f"SELECT call_id, evaluator, value, label, reason, judge_cost_usd, source FROM scores"
                              f" WHERE call_id IN ({marks}) ORDER BY evaluator", chunk):
            out.setdefault(r["call_id"], []).append(dict(r))
    return out


def score_text(scores: list[dict[str, Any]]) -> str:
    """`answered=pass helpful=4`: each evaluator's label, else its value."""
    return " ".join(f"{s['evaluator']}={s['label'] if s['label'] is not None else format(s['value'], 'g')}"
                    for s in scores)


# What `tapgate evals report --by` groups by: a requests column (or expression), or meta:<key>.
# A variant is the metadata's `variant` (an A/B arm), else the deployment that answered.
REPORT_GROUPS = {"model": "coalesce(r.response_model, r.model)", "customer": "r.customer_identifier",
                 "provider": "r.provider", "variant": "coalesce(json_extract(r.metadata, '$.variant'), r.routed_to)",
                 "prompt": "r.prompt_id || '@' || r.prompt_version", "evaluator": "NULL"}


def score_rows(conn: sqlite3.Connection, by: str, since: str | None, until: str | None,
               evaluator: str | None = None) -> list[dict[str, Any]]:
    """(evaluator, group, value, label, judge cost) of every score of calls started in the range."""
    if not has_table(conn, "scores"):
        return []
    params: list[Any] = []
    kind = "NULL"
    if by.startswith("meta:") and len(by) > 5:
        group, params = "json_extract(r.metadata, ?)", [json_path(by[5:])]
        kind, params = "json_type(r.metadata, ?)", params * 2
    elif by in REPORT_GROUPS:
        group = REPORT_GROUPS[by]
        if by == "prompt" and not has_column(conn, "requests", "prompt_id"):
            raise StoreError("this store has no prompt columns yet (the gateway adds them at its next start)")
    else:
        raise StoreError(f"cannot group by {by!r}: use {', '.join(REPORT_GROUPS)} or meta:<key>")
    where, wparams = Filters(since=since, until=until).where()
    where = where.replace("started_at", "r.started_at")
    if evaluator:
        where += (" AND " if where else " WHERE ") + "s.evaluator = ?"
        wparams.append(evaluator)
    sql = (f"SELECT s.evaluator, {group} AS grp, {kind} AS grp_type, s.value, s.label, s.judge_cost_usd FROM scores s"
           f" JOIN requests r ON r.id = s.call_id{where}")
    rows = [dict(r) for r in conn.execute(sql, [*params, *wparams])]
    return [r | {"grp": typed(r["grp"], r.pop("grp_type"))} for r in rows]
# -- `tapgate compare` -------------------------------------------------------------------------------


def variant_calls(conn: sqlite3.Connection, experiment: str | None, since: str | None,
                  until: str | None) -> list[dict[str, Any]]:
    """The calls of A/B experiments (one, or all), with what `compare variants` sums."""
    if not has_column(conn, "requests", "variant"):
        raise StoreError("this store has no variant column yet: the gateway adds it when it next starts")
    where, params = Filters(since=since, until=until).where()
    clauses = [where.removeprefix(" WHERE ")] if where else []
    clauses.append("variant IS NOT NULL")
    if experiment is not None:
        clauses.append("experiment = ?")
        params.append(experiment)
    sql = ("SELECT experiment, variant, duration_ms, ttft_ms, cost_usd, status, input_tokens, output_tokens"
           f" FROM requests WHERE {' AND '.join(clauses)} ORDER BY experiment, variant")
    return [dict(r) for r in conn.execute(sql, params)]


def shadow_pairs(conn: sqlite3.Connection, shadow: str | None, since: str | None,
                 until: str | None) -> list[dict[str, Any]]:
    """Each shadow call with the call it shadowed (metadata.shadow_of), for `compare shadow`."""
    clauses, params = ["s.mode = 'shadow'"], []
    for clause, value in (("json_extract(s.metadata, '$.shadow') = ?", shadow), ("s.started_at >= ?", since),
                          ("s.started_at < ?", until)):
        if value is not None:
            clauses.append(clause)
            params.append(value)
    columns = ", ".join(f"{side}.{c} AS {side}_{c}" for side in ("o", "s") for c in (
        "model", "routed_to", "status", "duration_ms", "cost_usd", "input_tokens", "output_tokens", "response_body"))
    sql = (f"SELECT json_extract(s.metadata, '$.shadow') AS shadow, {columns} FROM requests s"
           f" JOIN requests o ON o.id = json_extract(s.metadata, '$.shadow_of') WHERE {' AND '.join(clauses)}"
           " ORDER BY s.started_at")
    return [dict(r) for r in conn.execute(sql, params)]
