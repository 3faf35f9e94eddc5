"""What recording costs: the same loopback mock called direct, through bare mitmdump, through mitmdump
with a minimal streaming addon, and through mitmdump with tapgate, measured in one interleaved run.

    python scripts/bench_passthrough.py [--duration 5] [--warmup 1] [--repeat 1] [--quick] [--json out.json]

Every mitmdump is started by tests/e2e/harness.py exactly as the e2e tests start it (map_remote to the mock,
lazy connections, default output drained through a pipe). The load generator (scripts/bench_common.py) is
raw asyncio streams in its own process per cell: N keep-alive connections (CONNECT + TLS through a proxy),
each sending requests one after another. Bare mitmdump buffers a streamed response whole, so
"mitmdump+stream" (one addon line: `flow.response.stream = True`) is the fair baseline for time to first
chunk. The goals (issue): tapgate keeps >= 90% of bare mitmdump's req/s at concurrency 16, and its TTFT at
concurrency 1 is within 5 ms of direct.
"""

from __future__ import annotations

import json
import signal
import sys
import tempfile
import time
from dataclasses import asdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))  # run as a script or imported, bench_common is beside it
from bench_common import (  # noqa: E402
    Cell,
    bench_parser,
    cell_label,
    fmt,
    machine,
    machine_line,
    merge_rounds,
    parse_bench_args,
    proc_stats,
    run_cell,
)

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = ("direct", "mitmdump", "mitmdump+stream", "tapgate")
STREAM_ADDON = "def responseheaders(flow):\n    flow.response.stream = True\n"


CELLS = (
    Cell("non-stream", False, 1),
    Cell("non-stream", False, 16),
    Cell("stream", True, 1),
    Cell("stream", True, 16),
    # Events 20 ms apart: a proxy that buffers shows TTFT ~ the whole stream (~10 events).
    Cell("stream, events 20 ms apart", True, 1, 20),
)


def table(results: dict) -> str:
    head = ("| cell | config | req/s | p50 ms | p99 ms | added p50 ms | added p99 ms | TTFT p50 ms "
            "| proxy CPU ms/req | proxy peak RSS MiB | errors |")
    lines = [head, "|" + "---|" * (head.count("|") - 1)]
    for cell in CELLS:
        direct = results[cell, "direct"]
        for config in CONFIGS:
            r = results[cell, config]
            added = [None if r[k] is None or direct[k] is None or config == "direct" else r[k] - direct[k]
                     for k in ("p50_ms", "p99_ms")]
            lines.append(
                f"| {cell_label(cell)} | {config} | {fmt(r['rps'], '.0f')} | {fmt(r['p50_ms'], '.2f')} "
                f"| {fmt(r['p99_ms'], '.2f')} | {fmt(added[0], '+.2f')} | {fmt(added[1], '+.2f')} "
                f"| {fmt(r['ttft_p50_ms'], '.2f') if cell.stream else '—'} | {fmt(r.get('cpu_ms_per_req'), '.2f')} "
                f"| {fmt(r.get('peak_rss_mib'), '.0f')} | {r['errors']} |"
            )
    return "\n".join(lines)


def goals(results: dict) -> list[tuple[str, float | None, bool | None]]:
    def ratio(cell: Cell, base: str) -> float | None:
        a, b = results[cell, "tapgate"]["rps"], results[cell, base]["rps"]
        return 100 * a / b if a is not None and b else None

    def ttft_gap(cell: Cell) -> float | None:
        a, b = results[cell, "tapgate"]["ttft_p50_ms"], results[cell, "direct"]["ttft_p50_ms"]
        return None if a is None or b is None else a - b

    nonstream16, stream1, stream16, spaced = CELLS[1], CELLS[2], CELLS[3], CELLS[4]
    rows = [
        ("tapgate / bare rps at c16 (non-stream)", ratio(nonstream16, "mitmdump"), "%", lambda v: v >= 90),
        ("tapgate / bare rps at c16 (stream)", ratio(stream16, "mitmdump"), "%", lambda v: v >= 90),
        ("tapgate / mitmdump+stream rps at c16 (stream)", ratio(stream16, "mitmdump+stream"), "%", lambda v: v >= 90),
        ("tapgate TTFT - direct TTFT at c1 (stream)", ttft_gap(stream1), " ms", lambda v: v <= 5),
        ("tapgate TTFT - direct TTFT at c1 (events 20 ms apart)", ttft_gap(spaced), " ms", lambda v: v <= 5),
    ]
    return [(f"{label}: {fmt(v)}{unit}", v, None if v is None else ok(v)) for label, v, unit, ok in rows]


def start_everything(tmp: Path):
    sys.path.insert(0, str(ROOT / "tests" / "e2e"))
    from harness import start_gateway, start_mock

    mock, mock_port = start_mock()
    addon = tmp / "stream_all.py"
    addon.write_text(STREAM_ADDON)
    proxies = {}
    for config, extra, addons in (("mitmdump", (), False), ("mitmdump+stream", ("-s", str(addon)), False),
                                  ("tapgate", (), True)):
        confdir = tmp / config.replace("+", "_") / "conf"
        process, port = start_gateway(mock_port, confdir, tmp / "tapgate.db", *extra, addons=addons)
        proxies[config] = (process, port, confdir / "mitmproxy-ca-cert.pem")
    return mock, mock_port, proxies


def main(argv: list[str] | None = None) -> int:
    parser = bench_parser(__doc__.splitlines()[0])
    parser.add_argument("--include-usage", action="store_true",
                        help="streams ask for usage themselves, so tapgate neither injects nor hides it and "
                        "every config gets the same upstream events (default: they do not, as most clients)")
    args = parse_bench_args(parser, argv)

    started = time.monotonic()
    print(machine_line())
    print(f"{args.duration:g} s per cell after {args.warmup:g} s warm-up, {args.repeat} round(s); "
          f"configs interleaved per cell; streams {'ask' if args.include_usage else 'do not ask'} for usage\n",
          flush=True)

    with tempfile.TemporaryDirectory(prefix="tapgate-bench-") as tmp_name:
        tmp = Path(tmp_name)
        mock, mock_port, proxies = start_everything(tmp)
        runs: dict[tuple[Cell, str], list[dict]] = {}
        sent_to_tapgate = 0
        try:
            for round_ in range(args.repeat):
                for i, cell in enumerate(CELLS):
                    shift = (i + round_) % len(CONFIGS)  # rotate the order so no config always goes first
                    for config in CONFIGS[shift:] + CONFIGS[:shift]:
                        spec = {**asdict(cell), "warmup": args.warmup, "duration": args.duration,
                                "include_usage": args.include_usage}
                        if config == "direct":
                            spec |= {"port": mock_port, "ca": None}
                            pid = mock.proc.pid
                        else:
                            process, port, ca = proxies[config]
                            spec |= {"port": port, "ca": str(ca)}
                            pid = process.proc.pid
                        cpu0, _ = proc_stats(pid)
                        r = run_cell(spec)
                        cpu1, hwm = proc_stats(pid)
                        if config != "direct":
                            r["cpu_ms_per_req"] = 1000 * (cpu1 - cpu0) / max(1, r["done"])
                            r["peak_rss_mib"] = hwm
                        if config == "tapgate":
                            sent_to_tapgate += r["sent"]
                        runs.setdefault((cell, config), []).append(r)
                        print(f"  {cell_label(cell):<34} {config:<16} {r['rps']:>8.0f} req/s  "
                              f"p50 {fmt(r['p50_ms'], '.2f'):>7} ms  errors {r['errors']}"
                              + (f"  ({r['first_error']})" if r["first_error"] else ""), flush=True)
            tapgate = proxies["tapgate"][0]
            code = tapgate.stop(signal.SIGINT)  # its done() drains the writer thread
            rows = recorded(tmp / "tapgate.db")
        finally:
            for process, _, _ in proxies.values():
                process.stop()
            mock.stop()

    results = {}
    for key, rs in runs.items():
        results[key] = merge_rounds(rs)

    print()
    print(table(results))
    print("\nadded = config minus direct in the same cell; TTFT = request sent to first body chunk; proxy CPU = "
          "the proxy's user+system CPU over the cell (warm-up included) per request; peak RSS = its VmHWM after "
          "the cell (cumulative since start).\n")
    goal_lines = goals(results)
    for line, _, ok in goal_lines:
        print(f"{line}  [{'—' if ok is None else 'PASS' if ok else 'FAIL'}]")
    complete = rows["total"] == sent_to_tapgate
    print(f"tapgate recorded {rows['total']} rows for {sent_to_tapgate} requests sent "
          f"({rows['by_status']}); exit code {code}  [{'PASS' if complete and code == 0 else 'FAIL'}]")
    wall = time.monotonic() - started
    print(f"wall clock {wall:.1f} s")

    if args.json:
        doc = {
            **machine(),
            "duration_s": args.duration, "warmup_s": args.warmup, "repeat": args.repeat, "wall_s": wall,
            "include_usage": args.include_usage,
            "cells": [{**asdict(cell), "config": config, **results[cell, config], "runs": runs[cell, config]}
                      for cell in CELLS for config in CONFIGS],
            "goals": [{"line": line, "value": v, "ok": ok} for line, v, ok in goal_lines],
            "tapgate_rows": rows, "tapgate_sent": sent_to_tapgate, "tapgate_exit_code": code,
        }
        Path(args.json).write_text(json.dumps(doc, indent=2))
    return 0 if complete and code == 0 else 1


def recorded(db: Path) -> dict:
    import sqlite3

    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        by_status = dict(conn.execute("SELECT status, count(*) FROM requests GROUP BY status ORDER BY 2 DESC"))
    finally:
        conn.close()
    return {"total": sum(by_status.values()), "by_status": by_status}


if __name__ == "__main__":
    sys.exit(main())
