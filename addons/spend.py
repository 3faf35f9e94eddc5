"""Spend: starts and stops Admission (budgets and rate limits, core/admission.py; the admit stage asks
it), and gives back the reservation of a call server replay answered from a file."""

from __future__ import annotations

from mitmproxy import http

from addons.capture import replayed
from addons.store import store_location
from core.admission import Admission
from core.call import Call


class Spend(Admission):
    """The record stage settles each call through `settle` (a Recorder listener)."""

    def running(self) -> None:
        self.start(store_location())

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
