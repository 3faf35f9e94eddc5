"""What `tapgate dataset` does: snapshot recorded calls into a dataset, list it, export and import JSONL."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime
from typing import Any

from sqlite_utils import Database

from cli import queries
from core.database import StoreError
from providers import transcript

ROW_FIELDS = ("call_id", "provider", "endpoint", "model", "stream", "request_body", "response_body", "expected",
              "tags", "content_type", "response_events")
# Exported as JSON values; response_body stays the recorded text, so a replay sends the very bytes.
JSON_FIELDS = ("request_body", "tags", "response_events")


def from_logs(conn: sqlite3.Connection, filters: queries.Filters, limit: int | None,
              expect_recorded: bool) -> list[dict[str, Any]]:
    """The matching calls (oldest first) as dataset rows: input, answer, tags; only calls with bodies."""
    where, params = filters.where()
    where += (" AND " if where else " WHERE ") + "request_body IS NOT NULL AND status = 'ok'"
    events = queries.has_table(conn, "stream_events")
    sql = (f"SELECT id, provider, endpoint, model, stream, request_body, response_body, customer_identifier,"
           f" thread_identifier, metadata, {'e.content_type, e.events' if events else 'NULL AS content_type, NULL AS events'}"
           f" FROM requests{' LEFT JOIN stream_events e ON e.call_id = requests.id' if events else ''}{where}"
           " ORDER BY started_at, id")
    if limit:
        sql, params = sql + " LIMIT ?", [*params, limit]
    out = []
    for r in conn.execute(sql, params):
        tags = {"customer": r["customer_identifier"], "thread": r["thread_identifier"],
                "metadata": json.loads(r["metadata"] or "{}")}
        out.append({"call_id": r["id"], "provider": r["provider"], "endpoint": r["endpoint"], "model": r["model"],
                    "stream": r["stream"], "request_body": r["request_body"], "response_body": r["response_body"],
                    "expected": transcript.answer(r["response_body"]) if expect_recorded else None,
                    "tags": json.dumps({k: v for k, v in tags.items() if v}, ensure_ascii=False),
                    "content_type": r["content_type"], "response_events": r["events"]})
    return out


def save(db: Database, name: str, rows: list[dict[str, Any]], source: dict[str, Any]) -> int:
    """A new dataset NAME holding rows; refuses a name in use."""
    if db["datasets"].count_where("name = ?", [name]):
        raise StoreError(f"a dataset {name!r} exists already")
    with db.conn:
        db["datasets"].insert({"name": name, "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
                               "source": json.dumps(source)})
        db["dataset_rows"].insert_all(
            ({"id": f"{name}:{i}", "dataset": name, "position": i, **{k: row.get(k) for k in ROW_FIELDS}}
             for i, row in enumerate(rows)), batch_size=500)
    return len(rows)


def rows_of(conn: sqlite3.Connection, name: str) -> list[dict[str, Any]]:
    if not conn.execute("SELECT 1 FROM datasets WHERE name = ?", (name,)).fetchone():
        raise StoreError(f"no dataset {name!r} (tapgate dataset create or import)")
    return [dict(r) for r in conn.execute("SELECT * FROM dataset_rows WHERE dataset = ? ORDER BY position", (name,))]


def export_lines(rows: Iterable[dict[str, Any]]) -> Iterator[str]:
    """One JSON object a line: the request and answer as JSON, tags as an object, expected as text."""
    for r in rows:
        doc = {k: r[k] for k in ROW_FIELDS}
        for key in JSON_FIELDS:
            try:
                doc[key] = json.loads(doc[key]) if doc[key] else None
            except ValueError:
                pass  # not JSON (a cut body): kept as text
        yield json.dumps(doc, ensure_ascii=False)


def import_lines(lines: Iterable[str], source: str) -> list[dict[str, Any]]:
    """Rows from JSONL: `request_body` required (an object or its text); the rest optional."""
    out = []
    for n, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            doc = json.loads(line)
        except ValueError as e:
            raise StoreError(f"{source}:{n}: not JSON: {e}") from None
        if not isinstance(doc, dict) or doc.get("request_body") is None:
            raise StoreError(f"{source}:{n}: each line needs a request_body")
        if unknown := set(doc) - set(ROW_FIELDS):
            raise StoreError(f"{source}:{n}: unknown field {sorted(unknown)[0]!r}")
        row = {k: doc.get(k) for k in ROW_FIELDS}
        for key in JSON_FIELDS:
            if row[key] is not None and not isinstance(row[key], str):
                row[key] = json.dumps(row[key], ensure_ascii=False)
        if row["expected"] is not None and not isinstance(row["expected"], str):
            raise StoreError(f"{source}:{n}: expected must be text")
        out.append(row)
    return out
