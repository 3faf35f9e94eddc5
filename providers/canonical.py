"""What makes two requests ask for the same answer, for the response cache: the body without the
fields that only change how the answer is delivered, and whether sampling makes answers differ."""

from __future__ import annotations

from typing import Any

# Fields that change how an answer is delivered, not what it says: a streamed and a whole request
# share an answer.
DELIVERY = ("stream", "stream_options")
# Endpoints that differ only in delivery: Gemini names its streamed call in the URL.
WHOLE_ENDPOINT = {"streamGenerateContent": "generateContent"}


def canonical(endpoint: str, body: Any) -> tuple[str, Any]:
    """(endpoint, body) as they bear on the answer: delivery fields and the model left out (the
    cache adds the model back when it keys by model)."""
    if not isinstance(body, dict):
        return WHOLE_ENDPOINT.get(endpoint, endpoint), body
    drop = (*DELIVERY, "model")
    return WHOLE_ENDPOINT.get(endpoint, endpoint), {k: v for k, v in body.items() if k not in drop}


def sampled(body: Any) -> bool:
    """Answers that differ call to call by design: temperature above 0, or several choices (n > 1;
    Gemini's generationConfig.candidateCount)."""
    if not isinstance(body, dict):
        return False
    config = body.get("generationConfig") if isinstance(body.get("generationConfig"), dict) else body
    temperature = config.get("temperature")
    n = body.get("n") or config.get("candidateCount") or 1
    return (isinstance(temperature, (int, float)) and temperature > 0) or (isinstance(n, int) and n > 1)
