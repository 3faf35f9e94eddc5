"""Record: the call becomes its row and spans, priced, and is metered (spend settled, the console,
any listener); once per call, and never at the cost of the call itself."""

from __future__ import annotations

import logging

from core.call import Call
from core.outcome import Outcome
from core.recorder import Recorder

log = logging.getLogger(__name__)


class Record:
    name = "record"

    def __init__(self, recorder: Recorder) -> None:
        self.recorder = recorder

    def __call__(self, call: Call, outcome: Outcome) -> None:
        if call.recorded:
            return
        call.recorded = True
        try:
            self.recorder.record(call, outcome)
        except Exception:  # recording must never break a call
            log.exception("tapgate: could not record call %s", call.id)
