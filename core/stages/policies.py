"""Input and output policies: what may go out to a provider and what may come back (issue 13). The
input stage scans the request and blocks, redacts or flags it (core/policies/); the answer side runs
in the doors as the answer passes (whole, or a stream event by event: core/policies/streaming.py);
the output stage, once the answer is done, settles what the row says and keeps matched text out of it."""

from __future__ import annotations

import json

from core.call import Call
from core.errors import PolicyBlocked
from core.policies.gate import PolicyGate
from core.recorder import stored_text


class InputPolicies:
    name = "input_policies"

    def __init__(self, settings) -> None:
        self.gate = PolicyGate(settings)

    async def __call__(self, call: Call, ask) -> None:
        if call.refusal is not None or (guard := self.gate.guard(call)) is None:
            return None
        # A body that is not JSON (passthrough sends it on as it is) is never skipped silently: over_limit decides.
        is_json = call.body is not None or call.headers.get("content-length") in (None, "", "0")
        changed = guard.check_request(call.body, is_json)
        await self.gate.judge(guard, call.body)  # only a policy with a judge waits for its verdict
        if guard.block is not None:
            raise PolicyBlocked(guard.block)
        if changed:
            routed = getattr(ask, "routed", None)
            native = routed.native_body if routed is not None else call.body
            if native is not call.body:  # the router's: the client's own body, sent to deployments of its dialect
                guard.redact_like(native)
            guard.request_changed = True  # the door sends the body as redacted
            if call.request_body is not None:  # stored as the provider saw it
                call.request_body = stored_text(json.dumps(native, ensure_ascii=False).encode())
        return None


class OutputPolicies:
    name = "output_policies"

    def __call__(self, call: Call, outcome) -> None:
        guard = call.guard
        if guard is None:
            return
        if guard.block is not None and guard.block.on == "response":  # an answer a policy stopped
            outcome.status, outcome.error = "error", guard.block.message
        # What a policy found (flagged, restored, blocked) is never stored: counts only.
        call.request_body, outcome.body = guard.scrub(call.request_body), guard.scrub(outcome.body)
