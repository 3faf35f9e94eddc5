"""The OTLP export worker: a process of its own that reads compact call records (core/otlp.py), encodes
their spans straight to OTLP's wire format (core/otlp_wire.py) and exports them with the official
exporter's transport (core/otlp_spans.py), so none of that runs under the gateway's GIL.

    python -m core.otlp_worker    stdin: the settings (one JSON line), then one JSON line per batch
                                  stdout: one line per batch, {"exported": spans the collector accepted}

It ignores SIGINT (the gateway's Ctrl-C reaches the whole process group; the gateway closes stdin when
it is done, and the worker exports what it has, answers and exits), and runs at a lower CPU priority
(nice +10): on a busy machine, calls come first and spans wait a little."""

from __future__ import annotations

import logging
import os
import signal
import sys

import orjson
from opentelemetry.sdk.trace.export import SpanExportResult

from core.otlp import ExportSettings
from core.otlp_spans import make_exporter
from core.otlp_wire import Encoded, WireEncoder

log = logging.getLogger("tapgate.otlp_worker")
NICENESS = 10  # background work: yields the CPU to the gateway's calls when both want it


def export_batch(records: list, encoder: WireEncoder, exporter) -> int:
    """Spans of the batch the collector accepted (a call whose spans cannot be built is skipped)."""
    spans = []
    for record in records:
        try:
            spans += encoder.spans(record)
        except Exception:  # a malformed record is one call's trace lost, not the batch
            log.exception("tapgate: cannot build the OTLP spans of call %s", record[0][0] if record else None)
    if not spans:
        return 0
    try:
        result = exporter.export_encoded(Encoded(encoder.request(spans), len(spans)))
    except Exception as e:  # an exporter bug must not stop the worker
        log.warning("tapgate: OTLP export failed: %s", e)
        return 0
    return len(spans) if result is SpanExportResult.SUCCESS else 0


def main() -> int:
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        os.nice(NICENESS)
    except (OSError, AttributeError):  # not permitted here, or no nice (Windows): the gateway's priority
        pass
    logging.basicConfig(level=logging.WARNING, format="tapgate OTLP worker: %(message)s")
    source, answers = sys.stdin.buffer, sys.stdout.buffer
    sys.stdout = sys.stderr  # a stray print must not corrupt the acknowledgements
    settings = ExportSettings(**orjson.loads(source.readline()))
    encoder, exporter = WireEncoder(settings.bodies), make_exporter(settings)
    try:
        for line in source:
            try:
                records = orjson.loads(line)
            except orjson.JSONDecodeError:
                log.error("tapgate: the OTLP export worker read a line that is not JSON; its calls are lost")
                records = []
            exported = export_batch(records, encoder, exporter)
            try:
                answers.write(b'{"exported":%d}\n' % exported)
                answers.flush()
            except BrokenPipeError:  # the gateway is gone: nobody to answer
                break
    finally:
        exporter.shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
