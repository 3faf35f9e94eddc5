"""The guardrails in force for both doors: built when the config is loaded (the secret rules take a
moment to compile), and each call's guard chosen by its scope."""

from __future__ import annotations

from typing import Any

from core.config import Configured
from core.policies.engine import Ask, CallGuard, Guardrails, Who


class PolicyGate:
    def __init__(self, settings: Configured) -> None:
        self.settings = settings
        self._built_for: Any = None
        self._guardrails: Guardrails | None = None
        # How a judging policy asks its LLM: the router's `ask`, set when the router is built.
        self.ask: Ask | None = None

    def current(self) -> Guardrails | None:
        """The guardrails of the config in force, None when it lists no policy. Raises ValueError."""
        policies = self.settings.config.policies
        if policies is not self._built_for:
            self._guardrails = Guardrails(policies) if policies else None
            self._built_for = policies
        return self._guardrails

    def guard(self, call: Any, key_name: str | None = None) -> CallGuard | None:
        """The call's guard (also left on `call.guard`), or None when no policy applies to it."""
        if (guardrails := self.current()) is None:
            return None
        key = call.caller.key
        call.guard = guardrails.for_call(Who(call.mode, call.host, call.model, call.caller.key_id,
                                             key_name or (key.name if key is not None else None),
                                             call.tags.customer_identifier))
        return call.guard

    async def judge(self, guard: CallGuard, body: Any) -> None:
        """The judging policies' verdicts on a request that passed the rules; no router: the judge's error."""
        if guard.judged:
            await guard.judge(body, self.ask or _no_router)


async def _no_router(model: str, messages: list) -> str:
    raise RuntimeError("the router is off (tapgate_router), so no judge can be asked")
