"""What the exporters cost: passthrough and router throughput with OTLP export and /metrics on, against
both off, in one interleaved run on the loopback mock.

    python scripts/bench_observability.py [--duration 5] [--warmup 1] [--repeat 1] [--quick] [--json out.json]
                                          [--modes passthrough,router] [--control] [--root OTHER_TREE]
                                          [--loadgen wrk|python]

Two gateways run side by side on the same mock: "off" (tapgate_metrics=false, no OTLP endpoint) and "on"
(OTLP/HTTP export to a loopback collector that accepts every batch, and /metrics scraped every second by
a thread, as a Prometheus would). Each cell measures both, one after the other, alternating which goes
first. The goal (issue 16): "on" within 5% of "off".

On a shared machine single cells swing by more than that, so the verdict is the median over rounds of
each round's own on / off ratio (the two measured back to back), and the CPU the gateway's process
spends per request is reported beside throughput (the export worker's own CPU apart). `--control` adds
a second "off" gateway, measured the same way: its ratio to "off" is the run's noise floor. A probe
(scripts/bench_probe.py) inside the "on" gateway measures the CPU its observability code takes there,
as a share of the process's: the figure a loaded machine moves least. `--root` runs both gateways on
another checkout's code (before a change), probe included. The router's cells are loaded by wrk where it
is installed (the passthrough's need CONNECT and TLS: the Python load generator): on two cores the
Python generator's own CPU, most of all reading streams, is taken from the gateway it measures.
"""

from __future__ import annotations

import http.client
import json
import os
import re
import statistics
import sys
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_common import (  # noqa: E402
    Cell,
    bench_parser,
    cell_label,
    cpu_seconds,
    fmt,
    machine_line,
    merge_rounds,
    parse_bench_args,
    proc_stats,
    run_cell,
    run_wrk,
    wrk_available,
)

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests" / "e2e"))
from harness import router_url, start_gateway, start_mock  # noqa: E402

CELLS = (Cell("non-stream", False, 16), Cell("stream", True, 16))
MODES = ("passthrough", "router")
CONFIGS = ("off", "on")
MASTER_KEY = "sk-bench-master"
GOAL = 0.95


class Collector:
    """A loopback OTLP/HTTP endpoint that takes every export (counted, not decoded)."""

    def __init__(self) -> None:
        self.exports = 0
        collector = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                self.rfile.read(int(self.headers["Content-Length"]))
                collector.exports += 1
                self.send_response(200)
                self.send_header("Content-Type", "application/x-protobuf")
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"


class Scraper(threading.Thread):
    """GET /metrics every second until stopped, as a Prometheus server would."""

    def __init__(self, port: int) -> None:
        super().__init__(daemon=True)
        self.port, self.stopped, self.scrapes, self.last = port, threading.Event(), 0, ""

    def run(self) -> None:
        while not self.stopped.wait(1.0):
            conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
            conn.request("GET", "/metrics")
            self.last = conn.getresponse().read().decode()
            conn.close()
            self.scrapes += 1


def metric(text: str, name: str) -> float:
    return sum(float(m.group(1)) for m in re.finditer(rf"^{name}(?:{{[^}}]*}})? (\S+)$", text, re.MULTILINE))


def per_call_costs(n: int = 20000) -> dict[str, float]:
    """CPU microseconds per call, in this process: counting it (/metrics) and encoding and queueing its
    record for export (on the call's thread), joining records into a batch line (the gateway's feeding
    thread), and encoding its span to OTLP's wire format (the export worker process, off the gateway;
    beside it the SDK's spans and the official encoder, the worker's path before, for comparison). The
    calls differ in ids, times, tokens and cost, as real ones do: the worker remembers repeated values."""
    from types import SimpleNamespace

    import orjson
    from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans

    from core.metrics import Metrics
    from core.otlp import FIELDS, ExportSettings, OtlpExport
    from core.otlp_spans import SpanBuilder
    from core.otlp_wire import WireEncoder

    row = {"id": "r1", "trace_id": "0af7651916cd43dd8448eb211c80319c", "span_id": "b7ad6b7169203331",
           "started_at": "2026-01-02T03:04:05.000Z", "duration_ms": 150.0, "ttft_ms": 20.0, "mode": "passthrough",
           "provider": "openai", "endpoint": "chat.completions", "model": "gpt-4o-mini", "host": "api.openai.com",
           "response_model": "gpt-4o-mini-2024-07-18", "status": "ok", "status_code": 200, "input_tokens": 12,
           "output_tokens": 7, "cost_usd": 0.001, "customer_identifier": "acme"}
    row = {**dict.fromkeys(FIELDS), **row}  # a recorded row has every field
    rows = [{**row, "trace_id": f"{i:032x}", "span_id": f"{i + 1:016x}", "input_tokens": 10 + i % 500,
             "output_tokens": i % 300, "cost_usd": i * 1e-7, "ttft_ms": 20.0 + i % 97 / 7,
             "started_at": f"2026-01-02T03:{i // 600 % 60:02d}:{i // 10 % 60:02d}.{i % 10}00Z"} for i in range(n)]
    call = SimpleNamespace(parent_span_id=None, spans=[], parser=None, refusal=None)

    metrics = Metrics()
    t = time.process_time()
    for _ in range(n):
        metrics.observe(row, call)
    observe = (time.process_time() - t) / n * 1e6
    export = OtlpExport(ExportSettings("unused", queue_size=n, batch_size=n))
    export.stopping = True  # its thread stops before it starts a worker: the queue stays here
    export.wake.set()
    export.thread.join()
    for _ in range(2):  # the first pass grows the process's memory (page faults): measure the second
        export.queue.clear()
        t = time.process_time()
        for r in rows:
            export.submit(r, call)
        submit = (time.process_time() - t) / n * 1e6
    items = list(export.queue)
    t = time.process_time()
    b"[" + b",".join(record for record, _ in items) + b"]\n"
    feed = (time.process_time() - t) / n * 1e6
    builder, records = SpanBuilder(), [orjson.loads(record) for record, _ in items[:5000]]
    t = time.process_time()
    encode_spans([span for r in records for span in builder.spans(r)]).SerializeToString()
    sdk = (time.process_time() - t) / len(records) * 1e6
    encoder = WireEncoder()
    t = time.process_time()
    encoder.request([span for r in records for span in encoder.spans(r)])
    build = (time.process_time() - t) / len(records) * 1e6
    return {"metrics_observe_us": observe, "otlp_submit_us": submit, "otlp_feed_us": feed,
            "worker_build_encode_us": build, "worker_sdk_encode_us": sdk}


def paired_ratio(runs: dict, mode: str, cell: Cell, config: str, figure: str) -> float | None:
    """The median over rounds of config's figure over "off"'s in the same round."""
    ratios = [a[figure] / b[figure] for a, b in zip(runs[mode, cell, config], runs[mode, cell, "off"], strict=True)
              if a.get(figure) and b.get(figure)]
    return statistics.median(ratios) if ratios else None


def pcts(runs: dict, mode: str, cell: Cell, config: str, figure: str) -> str:
    ratios = [f"{100 * a[figure] / b[figure]:.1f}%" for a, b in
              zip(runs[mode, cell, config], runs[mode, cell, "off"], strict=True) if a.get(figure) and b.get(figure)]
    median = paired_ratio(runs, mode, cell, config, figure)
    return f"{fmt(median and 100 * median, '.1f')}% ({', '.join(ratios)})"


def own_cpu(pid: int) -> float:
    """CPU seconds of the one process (the gateway without its export worker)."""
    return cpu_seconds(Path(f"/proc/{pid}/stat").read_text())


def main(argv: list[str] | None = None) -> int:
    parser = bench_parser(__doc__.splitlines()[0])
    parser.add_argument("--modes", default=",".join(MODES), help="modes to measure (default passthrough,router)")
    parser.add_argument("--control", action="store_true", help="add a second 'off' gateway: the noise floor")
    parser.add_argument("--root", type=Path, default=ROOT, help="the checkout whose gateway code runs (default: this one)")
    parser.add_argument("--loadgen", choices=("wrk", "python"), default="wrk" if wrk_available() else "python",
                        help="load generator of the router's cells (default: wrk where installed)")
    args = parse_bench_args(parser, argv)
    modes = [m for m in args.modes.split(",") if m]
    if not modes or set(modes) - set(MODES):
        parser.error(f"--modes: choose from {', '.join(MODES)}")
    configs = (*CONFIGS, "off2") if args.control else CONFIGS
    print(machine_line())
    if args.root.resolve() != ROOT:
        print(f"gateways run the code in {args.root} (per-call costs below are this tree's)")
    print(f"{args.duration:g} s per cell after {args.warmup:g} s warm-up, {args.repeat} round(s); "
          f"configs interleaved per cell; router cells loaded by {args.loadgen}\n", flush=True)
    collector = Collector()
    with tempfile.TemporaryDirectory(prefix="tapgate-bench-obs-") as tmp_name:
        tmp = Path(tmp_name)
        os.environ["TAPGATE_MASTER_KEY"] = MASTER_KEY
        mock, mock_port = start_mock()
        (tmp / "tapgate.yaml").write_text(
            "router:\n  master_key_env: TAPGATE_MASTER_KEY\n  providers:\n"
            f'    openai: {{base_url: "http://127.0.0.1:{mock_port}/v1", api_key_env: OPENAI_API_KEY}}\n')
        options = {"off": ["--set", "tapgate_metrics=false"], "off2": ["--set", "tapgate_metrics=false"],
                   "on": ["--set", f"tapgate_otlp_endpoint={collector.url}", "-s", str(ROOT / "scripts" / "bench_probe.py")]}
        probe_file = tmp / "probe.json"
        gateways, runs, scraper = {}, {}, None
        try:
            for config in configs:
                d = tmp / config
                process, port = start_gateway(mock_port, d / "conf", d / "t.db", "--set",
                                              f"tapgate_config={tmp / 'tapgate.yaml'}", "--set", "tapgate_console=false",
                                              *options[config], env={"TAPGATE_BENCH_PROBE": str(probe_file)},
                                              root=args.root.resolve())
                router = int(router_url(process).removesuffix("/v1").rpartition(":")[2])
                gateways[config] = (process, port, router, str(d / "conf" / "mitmproxy-ca-cert.pem"))
            scraper = Scraper(gateways["on"][2])
            scraper.start()

            def spec(config: str, mode: str, cell: Cell, warmup: float, duration: float) -> dict:
                _, port, router, ca = gateways[config]
                base = {"stream": cell.stream, "concurrency": cell.concurrency, "warmup": warmup,
                        "duration": duration, "include_usage": True}
                if mode == "passthrough":
                    return {**base, "port": port, "ca": ca}
                return {**base, "port": router, "host": f"127.0.0.1:{router}", "model": "openai/gpt-4o-mini",
                        "authorization": f"Bearer {MASTER_KEY}"}

            for config in configs:  # first calls pay for lazy imports and pools
                for mode in modes:
                    run_cell(spec(config, mode, CELLS[0], 0.0, 0.5))
            for round_ in range(args.repeat):
                for i, (mode, cell) in enumerate((m, c) for m in modes for c in CELLS):
                    k = (i + round_) % len(configs)  # which goes first rotates
                    order = configs[k:] + configs[:k]
                    for config in order:
                        pid = gateways[config][0].proc.pid
                        (cpu0, _), own0 = proc_stats(pid), own_cpu(pid)
                        load = run_wrk if mode == "router" and args.loadgen == "wrk" else run_cell
                        r = load(spec(config, mode, cell, args.warmup, args.duration))
                        (cpu1, _), own1 = proc_stats(pid), own_cpu(pid)
                        r["cpu_ms_per_req"] = 1000 * (cpu1 - cpu0) / max(1, r["done"])
                        r["own_cpu_ms_per_req"] = 1000 * (own1 - own0) / max(1, r["done"])
                        runs.setdefault((mode, cell, config), []).append(r)
                        print(f"  {mode:<12} {cell_label(cell):<16} {config:<4} {r['rps']:>7.0f} req/s  "
                              f"p50 {fmt(r['p50_ms'], '.2f'):>7} ms  CPU {r['own_cpu_ms_per_req']:.2f} "
                              f"({r['cpu_ms_per_req']:.2f} with worker) ms/req  errors {r['errors']}  "
                              f"load {os.getloadavg()[0]:.2f}", flush=True)
            time.sleep(2.5)  # one more scrape after the exporter's last batch (it sends at least every second)
            last = scraper.last
        finally:
            if scraper is not None:
                scraper.stopped.set()
            for process, *_ in gateways.values():
                process.stop()
            mock.stop()
        probe = json.loads(probe_file.read_text()) if probe_file.exists() else None
    results = {}
    for key, rs in runs.items():
        results[key] = merge_rounds(rs)
        results[key]["own_cpu_ms_per_req"] = statistics.median(r["own_cpu_ms_per_req"] for r in rs)
    lines = ["| mode | cell | off req/s | on req/s | on / off | off p50 ms | on p50 ms | off CPU ms/req | on CPU ms/req "
             "| CPU on / off | with worker | errors |", "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    verdicts, paired = [], []
    for mode in modes:
        for cell in CELLS:
            off, on = results[mode, cell, "off"], results[mode, cell, "on"]
            name = f"{mode}, {cell_label(cell)}"
            ratio = paired_ratio(runs, mode, cell, "on", "rps")
            verdicts.append((name, ratio))
            paired.append(f"{name}: on / off req/s {pcts(runs, mode, cell, 'on', 'rps')}; gateway CPU ms/req "
                          f"{pcts(runs, mode, cell, 'on', 'own_cpu_ms_per_req')}"
                          + (f"; control off2 / off req/s {pcts(runs, mode, cell, 'off2', 'rps')}, CPU "
                             f"{pcts(runs, mode, cell, 'off2', 'own_cpu_ms_per_req')}" if args.control else ""))
            ratio = on["rps"] / off["rps"] if off["rps"] else None
            own = on["own_cpu_ms_per_req"] / off["own_cpu_ms_per_req"] if off["own_cpu_ms_per_req"] else None
            tree = on["cpu_ms_per_req"] / off["cpu_ms_per_req"] if off["cpu_ms_per_req"] else None
            lines.append(f"| {mode} | {cell_label(cell)} | {off['rps']:.0f} | {on['rps']:.0f} | {fmt(ratio and 100 * ratio, '.1f')}% "
                         f"| {fmt(off['p50_ms'], '.2f')} | {fmt(on['p50_ms'], '.2f')} | {fmt(off['own_cpu_ms_per_req'], '.3f')} "
                         f"| {fmt(on['own_cpu_ms_per_req'], '.3f')} | {fmt(own and 100 * own, '.1f')}% "
                         f"| {fmt(tree and 100 * tree, '.1f')}% | {off['errors'] + on['errors']} |")
    print("\n" + "\n".join(lines) + "\n")
    print("Paired rounds (each round's ratio, median first):\n" + "\n".join(paired) + "\n")
    exported, dropped = metric(last, "tapgate_otlp_exported_spans_total"), metric(last, "tapgate_otlp_dropped_spans_total")
    calls = metric(last, "tapgate_calls_total")
    print(f"'on' gateway: {calls:.0f} calls counted on /metrics, {exported:.0f} spans exported, {dropped:.0f} dropped, "
          f"{scraper.scrapes} scrapes, {collector.exports} OTLP requests received")
    if probe:
        calls, cpu = max(probe["calls"], 1), probe["process_cpu_s"] * 1e9
        parts = ", ".join(f"{k} {v / calls / 1000:.1f}" for k, v in sorted(probe["cpu_ns"].items()))
        share = sum(probe["cpu_ns"].values()) / cpu if cpu else None
        print(f"'on' gateway's process, measured inside it over the run: {probe['calls']} calls, "
              f"{cpu / calls / 1000:.0f} us CPU per call in all; observability's part per call (us): {parts}; "
              f"its share of the process's CPU: {fmt(share and 100 * share, '.2f')}% (the probe's clock, "
              f"{probe['clock_ns'] / 1000:.1f} us a reading pair, subtracted)")
    costs = per_call_costs()
    print("CPU per call in process: " + ", ".join(f"{k} {v:.1f}" for k, v in costs.items()))
    ok = True
    for name, ratio in verdicts:
        passed = ratio is not None and ratio >= GOAL
        ok &= passed
        print(f"on / off rps, median of paired rounds ({name}): {fmt(ratio and 100 * ratio, '.1f')}%  "
              f"[{'PASS' if passed else 'FAIL'}]")
    if args.json:
        Path(args.json).write_text(json.dumps({f"{m} {cell_label(c)} {k}": v for (m, c, k), v in results.items()},
                                              indent=2))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
