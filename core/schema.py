"""The store's schema: sqlite-utils migrations, and open_db, which creates and migrates the file
before the gateway or `tapgate keys` writes it. No mitmproxy here."""

from __future__ import annotations

import fcntl
import os
import secrets
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlite_utils import Database
from sqlite_utils.migrations import Migrations

from core.journal import private_dir

BUSY_TIMEOUT_MS = 5000  # how long a statement waits for another process's write lock before it fails

migrations = Migrations("tapgate")


@migrations()
def m001_requests_and_spans(db: Database) -> None:
    db["requests"].create(
        {
            "id": str,
            "trace_id": str,
            "span_id": str,
            "started_at": str,
            "duration_ms": float,
            "ttft_ms": float,
            "mode": str,
            "provider": str,
            "endpoint": str,
            "host": str,
            "path": str,
            "model": str,
            "response_model": str,
            "stream": int,
            "status_code": int,
            "status": str,
            "error": str,
            "input_tokens": int,
            "output_tokens": int,
            "cache_read_tokens": int,
            "cache_write_tokens": int,
            "reasoning_tokens": int,
            "cost_usd": float,
            "customer_identifier": str,
            "thread_identifier": str,
            "metadata": str,
            "key_id": str,
            "request_body": str,
            "response_body": str,
        },
        pk="id",
    )
    db["spans"].create(
        {
            "span_id": str,
            "trace_id": str,
            "parent_span_id": str,
            "request_id": str,
            "name": str,
            "started_at": str,
            "duration_ms": float,
            "status": str,
            "attributes": str,
        },
        pk="span_id",
    )
    db["meta"].create({"key": str, "value": str}, pk="key")


@migrations()
def m002_usage_estimated_and_indexes(db: Database) -> None:
    # Rows whose usage the provider never reported (a cut stream) carry an estimate, and say so.
    db["requests"].add_column("usage_estimated", int, not_null_default=0)
    db["requests"].create_index(["started_at"], if_not_exists=True)
    db["requests"].create_index(["trace_id"], if_not_exists=True)
    db["requests"].create_index(["customer_identifier", "started_at"], if_not_exists=True)
    db["requests"].create_index(["thread_identifier", "started_at"], if_not_exists=True)
    db["spans"].create_index(["trace_id"], if_not_exists=True)


# Spend per UTC day, key, customer, provider and model: `where date = '2025-06-01' order by cost_usd desc`.
SPEND_BY_DAY_KEY = """
SELECT substr(started_at, 1, 10) AS date, key_id, customer_identifier AS customer, provider, model,
       count(*) AS requests, sum(input_tokens) AS input_tokens, sum(output_tokens) AS output_tokens,
       sum(coalesce(input_tokens, 0) + coalesce(output_tokens, 0)) AS tokens, sum(cost_usd) AS cost_usd
FROM requests
GROUP BY 1, 2, 3, 4, 5
"""

# Latency percentiles of successful calls per UTC day, provider and model, by nearest rank: the
# value at rank ceil(p * n) (window functions, SQLite 3.25+). TTFT is ranked over streams only.
LATENCY_BY_MODEL = """
WITH ranked AS (
  SELECT substr(started_at, 1, 10) AS date, provider, model, duration_ms, ttft_ms,
         row_number() OVER (PARTITION BY substr(started_at, 1, 10), provider, model ORDER BY duration_ms) AS rd,
         count(*) OVER (PARTITION BY substr(started_at, 1, 10), provider, model) AS n,
         row_number() OVER (PARTITION BY substr(started_at, 1, 10), provider, model, ttft_ms IS NULL
                            ORDER BY ttft_ms) AS rt,
         count(ttft_ms) OVER (PARTITION BY substr(started_at, 1, 10), provider, model) AS nt
  FROM requests
  WHERE status = 'ok' AND duration_ms IS NOT NULL
)
SELECT date, provider, model, max(n) AS requests,
       min(CASE WHEN rd >= 0.50 * n THEN duration_ms END) AS p50_ms,
       min(CASE WHEN rd >= 0.95 * n THEN duration_ms END) AS p95_ms,
       min(CASE WHEN rd >= 0.99 * n THEN duration_ms END) AS p99_ms,
       max(nt) AS streams,
       min(CASE WHEN ttft_ms IS NOT NULL AND rt >= 0.50 * nt THEN ttft_ms END) AS ttft_p50_ms,
       min(CASE WHEN ttft_ms IS NOT NULL AND rt >= 0.95 * nt THEN ttft_ms END) AS ttft_p95_ms
FROM ranked
GROUP BY date, provider, model
"""


@migrations()
def m003_dashboard_indexes_and_views(db: Database) -> None:
    # The questions the dashboard and `tapgate logs`/`spend` ask every day: by provider, model, key or
    # status over a time range; spans by request (trace, export, the dashboard's retries).
    for columns in (["provider", "started_at"], ["model", "started_at"], ["key_id", "started_at"],
                    ["status", "started_at"]):
        db["requests"].create_index(columns, if_not_exists=True)
    db["spans"].create_index(["request_id"], if_not_exists=True)
    db.create_view("spend_by_day_key", SPEND_BY_DAY_KEY.strip(), ignore=True)
    db.create_view("latency_by_model", LATENCY_BY_MODEL.strip(), ignore=True)



@migrations()
def m004_keys_budgets_alerts(db: Database) -> None:
    # Gateway keys: only a hash of the secret is kept; `prefix` is enough to recognise it in a list.
    db["keys"].create(
        {
            "id": str,
            "name": str,
            "hash": str,
            "prefix": str,
            "created_at": str,
            "expires_at": str,
            "revoked_at": str,
            "rotated_at": str,
            "models": str,  # JSON list of globs; empty: every model
            "budgets": str,  # JSON list of Budget
            "rate_limit": str,  # JSON RateLimit
            "alerts": str,  # JSON Alerts for this key's budgets, beside the global ones
            "metadata": str,
        },
        pk="id",
    )
    db["keys"].create_index(["hash"], unique=True)
    # Where each budget stands, rewritten by the gateway every few seconds, for `top` and Datasette.
    db["budgets"].create(
        {
            "id": str,  # scope:scope_id:budget label
            "name": str,
            "scope": str,  # key, customer or global
            "scope_id": str,
            "unit": str,
            "period": str,
            "period_start": str,
            "resets_at": str,
            "spent": float,
            "reserved": float,
            "cap": float,
            "updated_at": str,
        },
        pk="id",
    )
    # One row per threshold crossed per period: the primary key is what makes an alert happen once,
    # across restarts; sent_at stays NULL until a delivery succeeded.
    db["alerts"].create(
        {
            "id": str,  # scope:scope_id:budget:threshold:period_start
            "created_at": str,
            "scope": str,
            "scope_id": str,
            "budget": str,
            "unit": str,
            "threshold": float,
            "cap": float,
            "spent": float,
            "period_start": str,
            "resets_at": str,
            "message": str,
            "channels": str,  # JSON list of channel names still to deliver to
            "sent_at": str,
            "attempts": int,
            "last_error": str,
        },
        pk="id",
    )


@migrations()
def m005_router_columns(db: Database) -> None:
    # Router calls (mode "router"): the deployment that answered ("anthropic/claude-sonnet-4-5") and
    # how many attempts it took, retries and fallbacks included; NULL for passthrough calls.
    db["requests"].add_column("routed_to", str)
    db["requests"].add_column("attempts", int)


@migrations()
def m006_key_downgrade(db: Database) -> None:
    # Per key: model downgrade rules for router calls as a budget nears its end (JSON list of Downgrade).
    db["keys"].add_column("downgrade", str)


@migrations()
def m007_response_cache(db: Database) -> None:
    # A call answered from the response cache: cost_usd 0 and what it would have cost in cost_saved_usd.
    db["requests"].add_column("cache_hit", int)  # NULL: the cache was not consulted; 0 a miss; 1 a hit
    db["requests"].add_column("cost_saved_usd", float)
    # Cache entries kept across restarts (cache.persist); the gateway loads the unexpired ones at start.
    db["cache_entries"].create(
        {"key": str, "expires_at": float, "stream": int, "content_type": str, "body": bytes, "meta": str},
        pk="key",
    )


@migrations()
def m008_scores(db: Database) -> None:
    # Evaluator verdicts on calls (issue 15): online scoring, user feedback, experiments. One row per call
    # and evaluator (the id is both), so scoring a call again replaces its score.
    db["scores"].create(
        {
            "id": str,  # call_id:evaluator
            "call_id": str,
            "evaluator": str,
            "value": float,
            "label": str,
            "reason": str,
            "judge_cost_usd": float,
            "source": str,  # online, feedback or experiment
            "created_at": str,
        },
        pk="id",
    )
    db["scores"].create_index(["call_id"], if_not_exists=True)
    db["scores"].create_index(["evaluator", "created_at"], if_not_exists=True)


@migrations()
def m009_prompts(db: Database) -> None:
    # Versioned prompt templates (issue 15): `tapgate prompts push` adds a version, `label` points a label
    # at one; router calls rendered from a prompt carry its id and version, so reports group by them.
    db["prompts"].create(
        {"id": str, "name": str, "version": int, "messages": str, "model": str, "parameters": str,
         "created_at": str},
        pk="id",  # name:version
    )
    db["prompts"].create_index(["name", "version"], unique=True, if_not_exists=True)
    db["prompt_labels"].create({"id": str, "name": str, "label": str, "version": int, "updated_at": str},
                               pk="id")  # name:label
    db["requests"].add_column("prompt_id", str)
    db["requests"].add_column("prompt_version", int)


@migrations()
def m010_datasets(db: Database) -> None:
    # Datasets (issue 15): calls snapshotted from the logs (or imported), each row with an optional
    # expected answer, for experiments and replay.
    db["datasets"].create({"name": str, "created_at": str, "source": str}, pk="name")
    db["dataset_rows"].create(
        {"id": str, "dataset": str, "position": int, "call_id": str, "provider": str, "endpoint": str,
         "model": str, "stream": int, "request_body": str, "response_body": str, "expected": str, "tags": str,
         "content_type": str, "response_events": str},
        pk="id",  # dataset:position
    )
    db["dataset_rows"].create_index(["dataset", "position"], if_not_exists=True)


@migrations()
def m011_stream_events(db: Database) -> None:
    # With evals.record_streams: a passthrough stream's raw events and when each came (JSON
    # [[ms after the call started, event text], ...]), so a dataset replays it event for event.
    db["stream_events"].create({"call_id": str, "content_type": str, "events": str}, pk="call_id")


@migrations()
def m012_routing_rule(db: Database) -> None:
    # Router calls: the routing rule that matched (routing.rules[].name) and why; NULL when none did.
    db["requests"].add_column("rule", str)
    db["requests"].add_column("rule_reason", str)


@migrations()
def m013_experiment_variant(db: Database) -> None:
    # Router calls in an A/B experiment (routing.experiments): its name and the variant the call got.
    db["requests"].add_column("experiment", str)
    db["requests"].add_column("variant", str)


@migrations()
def m014_policies(db: Database) -> None:
    # What the guardrails did to a call (JSON list: policy, on, action, outcome, counts per type); NULL
    # when no policy applied. Counts only: the matched text is never stored.
    db["requests"].add_column("policies", str)


@migrations()
def m015_client_and_run_tags(db: Database) -> None:
    # Who made the call: the known client its User-Agent names (core/clients.py), and for programs started
    # with `tapgate run` their name, working directory, git repository and branch (core/runtags.py).
    for column in ("client", "program", "cwd", "repo", "branch"):
        db["requests"].add_column(column, str)


@migrations()
def m016_shadow_cost(db: Database) -> None:
    # Calls paid by a subscription login (Claude Code on a Pro/Max plan): cost_usd NULL, and here what the
    # call would cost at API prices.
    db["requests"].add_column("shadow_cost_usd", float)


def open_db(path: str | Path) -> Database:
    """Open (creating if needed) and migrate the store; WAL so readers never block the writer.
    A new store and its directory are readable by their owner only: they hold every prompt."""
    path = Path(path).expanduser()
    private_dir(path.parent)
    with opening(path):
        if not path.exists():
            os.close(os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600))  # -wal and -shm follow its mode
        db = Database(path)
        db.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
        db.enable_wal()
        migrations.apply(db)
    return db


@contextmanager
def opening(path: Path):
    """One process at a time opens and migrates a store: gateways started together (scripts/gateways.py)
    would otherwise both migrate a new file, and one fails with "database is locked" or "table already
    exists". A lock file of its own (flock), never the database file: closing any descriptor of that
    file would drop SQLite's own POSIX locks held by this process."""
    fd = os.open(path.with_name(path.name + ".open-lock"), os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def install_salt(db: Database) -> str:
    """The per-store secret that salts key fingerprints, created on first use."""
    row = db.execute("SELECT value FROM meta WHERE key = 'key_salt'").fetchone()
    if row:
        return row[0]
    salt = secrets.token_hex(16)
    db["meta"].insert({"key": "key_salt", "value": salt}, replace=True)
    return salt


def read_cache_entries(path: str | Path, now: float) -> list[dict[str, Any]]:
    """Unexpired cache entries kept by an earlier run (read once at start, never on the hot path);
    `path` may be a postgresql:// URL."""
    from core.database import open_for_edit

    db = open_for_edit(path)
    try:
        db.execute("DELETE FROM cache_entries WHERE expires_at <= ?", [now])
        db.conn.commit()
        return list(db["cache_entries"].rows_where("expires_at > ?", [now]))
    finally:
        db.close()
