"""A recorded call's status, tokens and cost as text: the same in the CLI's tables and views and in
the gateway's console line."""

from __future__ import annotations

from typing import Any


def status_text(row: dict[str, Any]) -> str:
    """`200`, or `529 error`: the HTTP status, and the outcome when it is not ok."""
    return str(row["status_code"] or "---") + ("" if row["status"] == "ok" else f" {row['status']}")


def tokens_text(row: dict[str, Any]) -> str:
    """`in→out`, `~` when estimated."""
    tokens = "-" if row["input_tokens"] is None else f"{row['input_tokens']}→{row['output_tokens']}"
    return tokens + ("~" if row.get("usage_estimated") else "")


def cost_text(row: dict[str, Any], places: int = 6) -> str:
    """`$0.000533`; `$?` for usage without a price; nothing for a call without usage (refused by the
    gateway, or an error the provider answered before any token)."""
    if row["cost_usd"] is None:
        return "$?" if row["input_tokens"] is not None and row["status"] != "refused" else ""
    return f"${row['cost_usd']:.{places}f}"
