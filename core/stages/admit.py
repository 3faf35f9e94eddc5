"""Admit: may this call go on? A request the door could not read is refused here; the model is one the caller's key allows (and, at the router, one
that routes anywhere, or a cheaper one a downgrade rule picks); then rate limits and budgets, whose
worst case is reserved in the ledger before any byte goes upstream (core/admission.py)."""

from __future__ import annotations

from core.admission import Admission
from core.call import Call
from core.errors import BadRequest, Forbidden, ModelNotFound, OverLimit
from core.routing import UnknownModel


class Admit:
    name = "admit"

    def __init__(self, admission: Admission) -> None:
        self.admission = admission

    async def __call__(self, call: Call, ask) -> None:
        if ask.unreadable is not None:
            raise ask.unreadable
        key, model = call.caller.key, call.facts.model
        if ask.deployment is not None and not model:
            raise BadRequest("model is required", param="model")
        if key is not None and not key.allows(model):
            raise Forbidden(f"Gateway key {key.name or key.id} may not call model {model!r}; it allows "
                            f"{', '.join(key.models)}.", param="model", code="model_not_allowed")
        priced = None
        if ask.deployment is not None:
            if (cheaper := self.admission.downgrade(call, key, model)) is not None:
                call.downgraded_to, note = cheaper
                call.notes.append(note)
            try:
                route, deployment_model = ask.deployment(call.model)
            except UnknownModel as e:
                raise ModelNotFound(f"The model {e.args[0]!r} does not exist on this gateway: not an alias in "
                                    "the config, a provider/model name, or a known model.", param="model") from None
            priced = (route.prices_under, deployment_model)
        if (refusal := await self.admission.enter(call, key, priced)) is not None:
            message, code, headers = refusal
            raise OverLimit(message, code=code, headers=headers)
