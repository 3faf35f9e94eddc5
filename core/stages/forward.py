"""Forward: passthrough's send stage. The request goes to the provider the client named, as it is;
the one change is asking a stream for the usage its client did not ask for (hidden again on the way
back), so every streamed call is costed."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from core.call import Call


@dataclass(frozen=True, slots=True)
class Forwarded:
    """The door sends the request on; `updates` are top-level body fields to set first, if any."""

    updates: dict[str, Any] | None


class Forward:
    name = "send"

    async def __call__(self, call: Call, ask) -> Forwarded:
        updates = call.route.provider.ask_for_usage(call.route, call.body)
        call.injected_usage = updates is not None
        call.upstream_started = time.time()
        call.prompt_sent = True
        call.answered_by = "provider"
        return Forwarded(updates)
