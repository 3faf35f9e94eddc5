"""User feedback on a call, from `POST /v1/feedback` or `tapgate score`: a score like any evaluator's."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from core.evals.online import score_row
from core.evals.score import Score


class Feedback(BaseModel):
    model_config = ConfigDict(extra="forbid")

    call_id: str = Field(min_length=1, max_length=200)
    value: float | bool | None = None
    label: str | None = Field(default=None, max_length=200)
    reason: str | None = Field(default=None, max_length=2000)
    evaluator: str = Field(default="feedback", min_length=1, max_length=100)


class BadFeedback(ValueError):
    """Feedback that cannot be stored; `param` names the field."""

    def __init__(self, message: str, param: str | None = None) -> None:
        super().__init__(message)
        self.param = param


def feedback_row(body: Any) -> dict[str, Any]:
    """The `scores` row of a feedback body. Raises BadFeedback naming the field."""
    if not isinstance(body, dict):
        raise BadFeedback("the body must be a JSON object with call_id and value or label")
    try:
        fb = Feedback.model_validate(body)
    except ValidationError as e:
        err = e.errors()[0]
        where = str(err["loc"][0]) if err["loc"] else None  # `value.float`: the field, not pydantic's branch
        raise BadFeedback(f"{where}: {err['msg']}", where) from None
    if fb.value is None and fb.label is None:
        raise BadFeedback("give a value (a number or a boolean) or a label", "value")
    score = Score.of(fb.value) if fb.value is not None else Score()
    score = Score(score.value, fb.label or score.label, fb.reason)
    return score_row(fb.call_id, fb.evaluator, score, "feedback")
