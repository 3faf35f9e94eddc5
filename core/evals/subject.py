"""What an evaluator sees of a call: the question, the answer and its tool calls, latency, cost, and a
dataset row's expected answer. Built from a `requests` row, so live calls and datasets read alike."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from providers import transcript

TOOL_LINE = re.compile(r"^→ ([^(]+)\(")


@dataclass
class Subject:
    question: str = ""
    answer: str = ""
    tool_calls: list[str] = field(default_factory=list)
    duration_ms: float | None = None
    cost_usd: float | None = None
    status: str | None = None
    expected: str | None = None
    row: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_row(cls, row: dict[str, Any], expected: str | None = None) -> Subject:
        text, tools = split_tools(transcript.answer(row.get("response_body")))
        return cls(question=transcript.question(row.get("request_body")), answer=text, tool_calls=tools,
                   duration_ms=row.get("duration_ms"), cost_usd=row.get("cost_usd"), status=row.get("status"),
                   expected=expected, row=row)


def split_tools(answer: str) -> tuple[str, list[str]]:
    """transcript.answer's text and its `→ name(args)` lines apart: (text, tool names)."""
    text, tools = [], []
    for line in answer.splitlines():
        if m := TOOL_LINE.match(line):
            tools.append(m.group(1))
        else:
            text.append(line)
    return "\n".join(text), tools
