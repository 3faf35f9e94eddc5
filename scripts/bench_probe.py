"""A benchmark's probe inside a gateway: the CPU its observability code takes, measured where it runs.

    mitmdump -s addons/gateway.py -s scripts/bench_probe.py    (TAPGATE_BENCH_PROBE=out.json)

It wraps the Metrics and Telemetry addons' working parts (counting a call, queueing it for export, the
feeding thread's batches, building /metrics' families) with per-thread CPU clocks, and at shutdown
writes their totals (less the clock's own cost, calibrated at start) and the whole process's CPU over the same span to TAPGATE_BENCH_PROBE: the share
of the gateway's CPU that observability takes, which a loaded machine's noise does not move as much
as it moves throughput. Not part of the gateway: scripts/bench_observability.py loads it."""

from __future__ import annotations

import json
import os
import time

from mitmproxy import ctx


def timed(totals: dict, counts: dict, name: str, fn):
    def wrapper(*args, **kwargs):
        t = time.thread_time_ns()
        try:
            return fn(*args, **kwargs)
        finally:
            totals[name] = totals.get(name, 0) + time.thread_time_ns() - t
            counts[name] = counts.get(name, 0) + 1
    return wrapper


def timed_generator(totals: dict, counts: dict, name: str, fn):
    def wrapper(*args, **kwargs):
        t = time.thread_time_ns()
        out = list(fn(*args, **kwargs))
        totals[name] = totals.get(name, 0) + time.thread_time_ns() - t
        counts[name] = counts.get(name, 0) + 1
        return iter(out)
    return wrapper


def clock_cost(n: int = 5000) -> float:
    """CPU nanoseconds a timed() wrapper adds by itself (the thread clock is a system call here)."""
    noop = timed({}, {}, "noop", lambda: None)
    t = time.thread_time_ns()
    for _ in range(n):
        noop()
    return (time.thread_time_ns() - t) / n


class Probe:
    def __init__(self) -> None:
        self.totals: dict[str, int] = {}
        self.counts: dict[str, int] = {}
        self.clock_ns = 0.0
        self.calls = 0
        self.started = 0.0

    def running(self) -> None:
        metrics, telemetry = ctx.master.addons.get("metrics"), ctx.master.addons.get("telemetry")
        collectors, export = metrics.collectors, telemetry.export
        if collectors is not None:
            observe = timed(self.totals, self.counts, "metrics_observe", collectors.observe)

            def counted(row, call=None):
                self.calls += 1
                observe(row, call)

            collectors.observe = counted
            if hasattr(collectors, "families"):  # the scrape's families (older collectors are not wrapped)
                collectors.families = timed_generator(self.totals, self.counts, "metrics_scrape", collectors.families)
        if export is not None:
            export.submit = timed(self.totals, self.counts, "otlp_submit", export.submit)
            # The exporting thread's work: feeding the worker, or (older code) building and encoding spans.
            name = "_send" if hasattr(export, "_send") else "flush"
            setattr(export, name, timed(self.totals, self.counts, "otlp_exporting_thread", getattr(export, name)))
        self.clock_ns = clock_cost()
        self.started = time.process_time()

    def done(self) -> None:
        path = os.environ.get("TAPGATE_BENCH_PROBE")
        if path:
            with open(path, "w") as f:
                cpu = {name: max(total - self.counts[name] * self.clock_ns, 0) for name, total in self.totals.items()}
                json.dump({"calls": self.calls, "process_cpu_s": time.process_time() - self.started,
                           "cpu_ns": cpu, "clock_ns": self.clock_ns}, f)


addons = [Probe()]
