"""Tag: who the call is for and what it belongs to (customer, thread, metadata, a customer's own
budget), from X-Tapgate-* headers, the gateway's body fields and the body's own user fields."""

from __future__ import annotations

from core.call import Call
from core.errors import BadRequest
from core.tagging import BadTag, Tags, tags_for


class Tag:
    name = "tag"
    describes = True  # a call refused before it is still recorded with who it was for

    async def __call__(self, call: Call, ask) -> None:
        fields = ask.fields
        try:
            call.tags = tags_for(ask.headers, call.facts.user, call.facts.metadata, fields)
        except BadTag as e:
            # Still say who it was for, as far as the well-formed parts tell.
            customer = (ask.headers.get("x-tapgate-customer-identifier") or fields.get("customer_identifier")
                        or call.facts.user)
            call.tags = Tags(customer_identifier=customer if isinstance(customer, str) else None)
            raise BadRequest(str(e), param=e.param, code=ask.bad_field_code) from None
        # Respan's disable_log: metrics only, neither prompt nor answer kept.
        call.keep_bodies = ask.store_bodies and fields.get("disable_log") is not True
        if not call.keep_bodies:
            call.request_body = None
