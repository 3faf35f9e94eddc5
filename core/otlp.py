"""OTLP export: every recorded call becomes OpenTelemetry spans (GenAI semantic conventions plus tapgate's
attributes) sent to the operator's collector, so tapgate's traces join the ones they already keep.

The gateway's side is cheap on purpose. The Recorder listener encodes the call as a compact record (the
row's values in FIELDS' order, a few microseconds with orjson) and appends it to a bounded queue; one
thread writes what is queued, one JSON line per batch, to a worker process (core/otlp_worker.py) that
encodes the spans (core/otlp_wire.py) and exports them. Built with the SDK's objects, that part cost tens
to hundreds of microseconds of CPU a call: in the gateway it ran under the same GIL as the event loop and
took it from throughput; encoded directly in the worker, it is a few microseconds there.

One batch at most is with the worker at a time (it acknowledges each), so a collector that is down
or slow holds the worker, then fills the queue, and what does not fit is dropped and counted: a
call never waits on it. A worker that dies is started again; the calls it held count as dropped."""

from __future__ import annotations

import collections
import logging
import operator
import os
import subprocess
import sys
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import orjson

log = logging.getLogger(__name__)

BODY_LIMIT = 64 * 1024  # a span attribute, not a store: bodies past this are cut
RESTART_DELAY = 1.0  # seconds between starts of a worker that keeps dying
# The row's fields a span reads, in the order a compact record carries them; bodies last (only on option).
FIELDS = ("id", "trace_id", "span_id", "started_at", "duration_ms", "status", "error", "endpoint", "model",
          "provider", "response_model", "input_tokens", "output_tokens", "host", "status_code", "mode", "cost_usd",
          "cost_saved_usd", "shadow_cost_usd", "customer_identifier", "thread_identifier", "key_id", "cache_hit",
          "attempts", "routed_to", "ttft_ms", "usage_estimated", "client", "program", "repo", "branch",
          "request_body", "response_body")
ROW_FIELDS = FIELDS[:-2]
row_values = operator.itemgetter(*ROW_FIELDS)  # one C call for a recorded row, which has every field
ROOT = Path(__file__).resolve().parents[1]


@dataclass
class ExportSettings:
    endpoint: str
    protocol: str = "http/protobuf"  # or "grpc"
    headers: dict[str, str] = field(default_factory=dict)
    bodies: bool = False
    queue_size: int = 4096
    batch_size: int = 512
    timeout: float = 10.0

    @property
    def window(self) -> int:
        """Calls the worker may hold at once: one batch. The next is written only once it acknowledged
        the last, while it waits to read, so a write to its pipe never blocks on a stuck export."""
        return self.batch_size


def parse_headers(text: str) -> dict[str, str]:
    """`k=v,k2=v2`, as OTEL_EXPORTER_OTLP_HEADERS. Raises ValueError naming the bad pair (never its value)."""
    headers = {}
    for pair in filter(None, (p.strip() for p in text.split(","))):
        name, eq, value = pair.partition("=")
        if not eq or not name.strip():
            raise ValueError(f"expected name=value pairs separated by commas, got a pair named {name.strip()!r}")
        headers[name.strip().lower()] = value.strip()
    return headers


def compact(item: tuple, bodies: bool) -> list:
    """A queued call as the worker reads it: [row values in FIELDS' order, parent span id, the call's
    spans, finish reason]."""
    row, parent, spans, reason = item
    try:
        values = list(row_values(row))
    except KeyError:  # a partial row (tests, older callers): missing fields are None
        values = list(map(row.get, ROW_FIELDS))
    if bodies:
        values += [(row.get("request_body") or "")[:BODY_LIMIT] or None,
                   (row.get("response_body") or "")[:BODY_LIMIT] or None]
    else:
        values += [None, None]
    return [values, parent, spans, reason]


class Worker:
    """One worker process, and what it holds: batches sent and not yet acknowledged, in order."""

    def __init__(self, command: list[str], settings: ExportSettings) -> None:
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, (str(ROOT), os.environ.get("PYTHONPATH"))))}
        self.proc = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=env, close_fds=True)
        self.batches: collections.deque[tuple[int, int]] = collections.deque()  # (calls, spans) per batch
        self.calls = self.spans = 0  # held: sent and not acknowledged
        self.reader: threading.Thread | None = None
        # The settings travel on the pipe, not the command line: headers may hold the backend's API key.
        self.proc.stdin.write(orjson.dumps(asdict(settings)) + b"\n")
        self.proc.stdin.flush()

    def alive(self) -> bool:
        return self.proc.poll() is None


class OtlpExport:
    """A Recorder listener (`submit`), the thread that feeds the worker and the one that reads its
    acknowledgements; `dropped` counts spans that never reached the collector (queue full, export
    failed, worker died), `exported` those it accepted."""

    def __init__(self, settings: ExportSettings, command: list[str] | None = None) -> None:
        self.settings = settings
        self.command = command or [sys.executable, "-m", "core.otlp_worker"]
        self.queue: collections.deque = collections.deque()
        self.overflowed = 0  # counted by the calls' thread only
        self.failed = 0  # the rest under `changed`
        self.exported = 0
        self.started = 0  # workers started
        self.worker: Worker | None = None
        self.last_start = -RESTART_DELAY
        self.changed = threading.Condition()  # acknowledgements, batches sent, workers gone
        self.wake = threading.Event()
        self.stopping = False
        self.thread = threading.Thread(target=self._run, name="tapgate-otlp", daemon=True)
        self.thread.start()

    # -- the call's side: append and return --------------------------------------------------------

    def submit(self, row: dict[str, Any], call: Any = None) -> None:
        spans = getattr(call, "spans", ())
        if len(self.queue) >= self.settings.queue_size:
            self.overflowed += 1 + len(spans)
            return
        item = (row, getattr(call, "parent_span_id", None), spans, finish_reason(call))
        try:
            # Encoded now: the queue holds bytes, which the garbage collector never walks, not the call's
            # row and spans (kept for up to a second, they made every collection of the gateway longer).
            record = orjson.dumps(compact(item, self.settings.bodies), default=str)
        except (TypeError, orjson.JSONEncodeError):
            log.exception("tapgate: cannot encode the OTLP record of call %s", row.get("id"))
            with self.changed:
                self.failed += 1 + len(spans)
            return
        self.queue.append((record, 1 + len(spans)))
        if len(self.queue) >= self.settings.batch_size and not self.wake.is_set():
            self.wake.set()

    # -- the feeding thread --------------------------------------------------------------------------

    def _run(self) -> None:
        while not self.stopping:
            self.wake.wait(1.0)
            self.wake.clear()
            self._send(deadline=None)

    def _send(self, deadline: float | None) -> None:
        """Send what is queued to the worker, a batch at a time, as the window allows."""
        while self.queue:
            if self.stopping and deadline is None:  # stop() sends the rest, within its timeout
                return
            worker = self._worker(deadline)
            if worker is None:
                return
            with self.changed:
                room = self.changed.wait_for(lambda w=worker: w.calls < self.settings.window or not w.alive(),
                                             timeout=0.5 if deadline is None else max(deadline - time.monotonic(), 0))
            if not room or not worker.alive():
                if deadline is not None and time.monotonic() >= deadline:
                    return
                continue
            n = min(self.settings.batch_size, self.settings.window - worker.calls, len(self.queue))
            with self.changed:  # taken from the queue and held by the worker at once: `depth` never dips
                items = [self.queue.popleft() for _ in range(n)]
                spans = sum(count for _, count in items)
                worker.batches.append((n, spans))
                worker.calls += n
                worker.spans += spans
            line = b"[" + b",".join(record for record, _ in items) + b"]\n"
            try:
                worker.proc.stdin.write(line)
                worker.proc.stdin.flush()
            except (OSError, ValueError):  # the worker is gone: its reader counts what it held
                worker.proc.kill()
            with self.changed:
                self.changed.notify_all()

    def _worker(self, deadline: float | None) -> Worker | None:
        """The running worker, started (again) if need be, at most once per RESTART_DELAY."""
        worker = self.worker
        if worker is not None and worker.alive():
            return worker
        while (wait := self.last_start + RESTART_DELAY - time.monotonic()) > 0:
            if self.stopping and (deadline is None or time.monotonic() + wait > deadline):
                return None
            time.sleep(min(wait, 0.1))
        self.last_start = time.monotonic()
        try:
            worker = Worker(self.command, self.settings)
        except OSError as e:
            log.warning("tapgate: cannot start the OTLP export worker: %s", e)
            return None
        self.started += 1
        if self.started > 1:
            log.warning("tapgate: the OTLP export worker stopped; started it again")
        self.worker = worker
        worker.reader = threading.Thread(target=self._read, args=(worker,), name="tapgate-otlp-acks", daemon=True)
        worker.reader.start()
        return worker

    def _read(self, worker: Worker) -> None:
        """The worker's acknowledgements, one line per batch in order: how many spans were exported."""
        for line in worker.proc.stdout:
            try:
                exported = int(orjson.loads(line)["exported"])
            except (ValueError, KeyError, TypeError):
                continue
            with self.changed:
                if not worker.batches:
                    continue
                calls, spans = worker.batches.popleft()
                worker.calls -= calls
                worker.spans -= spans
                self.exported += exported
                self.failed += spans - exported
                self.changed.notify_all()
        worker.proc.wait()
        with self.changed:  # gone: what it still held never reached the collector
            self.failed += worker.spans
            worker.batches.clear()
            worker.calls = worker.spans = 0
            self.changed.notify_all()

    # -- for /metrics, tests and shutdown --------------------------------------------------------------

    @property
    def depth(self) -> int:
        """Calls waiting: queued here, or with the worker and not yet acknowledged."""
        worker = self.worker
        return len(self.queue) + (worker.calls if worker is not None else 0)

    @property
    def dropped(self) -> int:
        return self.overflowed + self.failed

    def flush(self, timeout: float = 30.0) -> bool:
        """Wait until everything queued so far was exported or counted as failed."""
        deadline = time.monotonic() + timeout
        with self.changed:
            while self.depth:
                if time.monotonic() >= deadline:
                    return False
                self.wake.set()
                self.changed.wait(0.2)
        return True

    def stop(self, timeout: float = 5.0) -> None:
        """Export what is queued (waiting at most `timeout` seconds in all), then stop the worker."""
        deadline = time.monotonic() + timeout
        self.stopping = True
        self.wake.set()
        self.thread.join(timeout)
        if self.thread.is_alive():  # still writing to a worker that does not read: nothing more can go
            if self.worker is not None:
                self.worker.proc.kill()
            self.thread.join(1.0)
        else:
            self._send(deadline)
        worker = self.worker  # perhaps started just now, by _send
        if worker is not None:
            try:
                worker.proc.stdin.close()  # the worker exports what it has, acknowledges and exits
            except OSError:
                pass
            try:
                worker.proc.wait(max(deadline - time.monotonic(), 0.1))
            except subprocess.TimeoutExpired:
                worker.proc.kill()
                worker.proc.wait()
            if worker.reader is not None:
                worker.reader.join(1.0)  # its last acknowledgements counted
        with self.changed:
            self.failed += sum(n for _, n in self.queue)  # never sent: counted
            self.queue.clear()


def finish_reason(call: Any) -> str | None:
    """Why the answer stopped, where the call's stream parser saw it."""
    parser = getattr(call, "parser", None)
    state = getattr(parser, "state", None)
    return getattr(getattr(state, "output", None), "finish_reason", None)
