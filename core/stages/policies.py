"""Input and output policies: what may go out to a provider and what may come back. Empty for now:
the place guardrails (secrets, PII, prompt injection) plug in, on both doors' calls."""

from __future__ import annotations

from core.call import Call


class InputPolicies:
    name = "input_policies"

    async def __call__(self, call: Call, ask) -> None:
        return None


class OutputPolicies:
    name = "output_policies"

    def __call__(self, call: Call, outcome) -> None:
        return None
