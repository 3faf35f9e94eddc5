"""Outcome: how a call ended, as its door saw it; what the record stage turns into the row."""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from providers.base import ResponseFacts, StreamState


@dataclass
class Outcome:
    facts: ResponseFacts
    finished: bool = True
    chars: int = 0  # characters of answer seen, for estimates when usage never came
    body: str | None = None
    status: str = "ok"
    error: str | None = None
    status_code: int | None = None
    ended: float = field(default_factory=time.time)

    @classmethod
    def of(cls, state: StreamState, status: str, error: str | None) -> Outcome:
        facts = ResponseFacts(state.usage, state.response_model, state.error)
        return cls(facts, state.finished, state.output.chars, state.output.as_json(), status, error)

    @classmethod
    def failed(cls, status_code: int | None, status: str, error: str) -> Outcome:
        """A call that ended without an answer from the provider: refused, failed, or left."""
        return cls(ResponseFacts(error=error), True, 0, None, status, error, status_code)
