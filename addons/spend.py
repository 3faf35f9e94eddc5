"""Spend: passthrough's door to Admission (budgets and rate limits, in core/admission.py). A call it
refuses is answered 429 before any byte goes upstream; a replayed call gives its reservation back."""

from __future__ import annotations

from mitmproxy import ctx, http

from addons.capture import refuse, replayed
from core.admission import Admission
from core.call import Call


class Spend(Admission):
    """The router asks the same object (admit, downgrade); Capture's recorder calls `settle`."""

    def running(self) -> None:
        self.start(ctx.options.tapgate_db)

    def request(self, flow: http.HTTPFlow) -> None:
        call: Call | None = flow.metadata.get("tapgate")
        if call is None or flow.response is not None:
            return
        if (refusal := self.admit(call, flow.metadata.get("tapgate_key"))) is not None:
            message, code, headers = refusal
            refuse(flow, call, 429, message, code, headers=headers)

    def response(self, flow: http.HTTPFlow) -> None:
        self._release_replayed(flow)

    def error(self, flow: http.HTTPFlow) -> None:
        self._release_replayed(flow)

    def _release_replayed(self, flow: http.HTTPFlow) -> None:
        """A call server replay answered from a file is not recorded (Capture) and cost nothing."""
        call: Call | None = flow.metadata.get("tapgate")
        if call is not None and replayed(flow):
            self.release(call)

    def done(self) -> None:
        self.stop()
