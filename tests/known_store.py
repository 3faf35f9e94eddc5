"""A store of hand-written calls for the read side's tests (queries, snapshot, views, CLI): every
figure in it is known in advance."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from core.schema import open_db

CALLER = "c0ffee00c0ffee00"  # a caller's span (traceparent) that is not in the store
TRACE = "7ace" * 8


def at(now: datetime, **ago: float) -> str:
    return (now - timedelta(**ago)).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def request(**values: Any) -> dict[str, Any]:
    row = {
        "id": None, "trace_id": None, "span_id": None, "started_at": None, "duration_ms": 100.0, "ttft_ms": None,
        "mode": "passthrough", "provider": "openai", "endpoint": "chat.completions", "host": "api.openai.com",
        "path": "/v1/chat/completions", "model": "gpt-4o", "response_model": "gpt-4o-2024-08-06", "stream": 0,
        "status_code": 200, "status": "ok", "error": None, "input_tokens": 10, "output_tokens": 20,
        "cache_read_tokens": 0, "cache_write_tokens": 0, "reasoning_tokens": 0, "usage_estimated": 0,
        "cost_usd": 0.01, "customer_identifier": None, "thread_identifier": None, "metadata": "{}",
        "key_id": "fp_aaaaaaaaaaaa", "request_body": None, "response_body": None,
    }
    row.update(values)
    row["trace_id"] = row["trace_id"] or row["id"] * 2
    row["span_id"] = row["span_id"] or row["id"][:16]
    return row


def spans_of(row: dict[str, Any], parent: str | None = None) -> list[dict[str, Any]]:
    """A root span and an upstream span starting 1 ms later, as Capture writes them."""
    start = datetime.fromisoformat(row["started_at"])
    status = "ok" if row["status"] == "ok" else "error"
    return [
        {"span_id": row["span_id"], "trace_id": row["trace_id"], "parent_span_id": parent, "request_id": row["id"],
         "name": f"passthrough {row['provider']} {row['endpoint']}", "started_at": row["started_at"],
         "duration_ms": row["duration_ms"], "status": status, "attributes": json.dumps({"model": row["model"]})},
        {"span_id": row["span_id"][:15] + "u", "trace_id": row["trace_id"], "parent_span_id": row["span_id"],
         "request_id": row["id"], "name": f"upstream {row['host']}",
         "started_at": (start + timedelta(milliseconds=1)).isoformat(timespec="milliseconds").replace("+00:00", "Z"),
         "duration_ms": row["duration_ms"] - 1, "status": status,
         "attributes": json.dumps({"http.status_code": row["status_code"], "ttft_ms": row["ttft_ms"]})},
    ]


def rows(now: datetime) -> list[dict[str, Any]]:
    """Five calls, newest last: two for acme in thread t1 (one trace, under a caller's span), two
    for globex (an error; an unpriced model), and one of acme's two days ago."""
    chat_request = {"model": "gpt-4o", "messages": [
        {"role": "system", "content": "Be brief."}, {"role": "user", "content": "What is the capital of the UK?"}]}
    chat_response = {"choices": [{"message": {"role": "assistant", "content": "London."}, "finish_reason": "stop"}]}
    return [
        request(id="a" * 32, started_at=at(now, days=2), cost_usd=1.0, customer_identifier="acme",
                metadata=json.dumps({"team": "search"})),
        request(id="b" * 32, trace_id=TRACE, started_at=at(now, minutes=10), customer_identifier="acme",
                thread_identifier="t1", metadata=json.dumps({"team": "search", "tier": 2}), duration_ms=200.0,
                request_body=json.dumps(chat_request), response_body=json.dumps(chat_response)),
        request(id="c" * 32, trace_id=TRACE, started_at=at(now, minutes=4), provider="anthropic",
                endpoint="messages", host="api.anthropic.com", path="/v1/messages", model="claude-sonnet-4-6",
                response_model="claude-sonnet-4-5-20250929", stream=1, ttft_ms=50.0, duration_ms=400.0,
                cost_usd=0.02, customer_identifier="acme", thread_identifier="t1", key_id="fp_bbbbbbbbbbbb",
                request_body=json.dumps({"model": "claude-sonnet-4-6", "max_tokens": 100, "messages": [
                    {"role": "user", "content": "What is the capital of the UK?"},
                    {"role": "assistant", "content": "London."},
                    {"role": "user", "content": [{"type": "text", "text": "And of France?"}]}]}),
                response_body=json.dumps({"text": "Paris.", "tool_calls": [], "finish_reason": "end_turn"})),
        request(id="d" * 32, started_at=at(now, minutes=2), provider="gemini", endpoint="generateContent",
                host="generativelanguage.googleapis.com", model="gemini-2.5-flash", response_model=None,
                status_code=429, status="error", error="RESOURCE_EXHAUSTED", input_tokens=None, output_tokens=None,
                cost_usd=None, duration_ms=30.0, customer_identifier="globex",
                request_body=json.dumps({"contents": [{"role": "user", "parts": [{"text": "needle in a haystack"}]}]})),
        request(id="e" * 32, started_at=at(now, minutes=1), model="gpt-9-unpriced", response_model="gpt-9-unpriced",
                cost_usd=None, duration_ms=300.0, customer_identifier="globex", metadata=json.dumps({"team": "chat"})),
    ]


def build(path: Path, now: datetime | None = None) -> list[dict[str, Any]]:
    """Write the known calls and their spans to a new store at path; return the calls."""
    now = now or datetime.now(UTC)
    calls = rows(now)
    db = open_db(path)
    with db.conn:
        db["requests"].insert_all(calls)
        for row in calls:
            db["spans"].insert_all(spans_of(row, CALLER if row["trace_id"] == TRACE else None))
    db.close()
    return calls


def copy_to_postgres(path: Path, url: str) -> None:
    """Make the PostgreSQL database at url the same store as the SQLite one at path: its schema,
    then every row of every table, as the gateway's PostgreSQL writer would have written them."""
    import sqlite3

    import psycopg

    from core.pg import functions, schema

    source = sqlite3.connect(path)
    with psycopg.connect(url, autocommit=True) as conn:
        schema.install(conn)
        functions.install(conn)
        for table in schema.sqlite_shape().tables:
            cursor = source.execute(f'SELECT * FROM "{table.name}"')
            names = [c[0] for c in cursor.description]
            rows = cursor.fetchall()
            if rows:
                columns = ", ".join(f'"{n}"' for n in names)
                marks = ", ".join(["%s"] * len(names))
                with conn.cursor() as cur:  # rowid follows the order they were written, as in SQLite
                    cur.executemany(f'INSERT INTO "{table.name}" ({columns}) VALUES ({marks})', rows)
    source.close()
