"""What the response cache saves: a cached answer (hit) against the same call sent on to the loopback mock
(miss), in router and passthrough mode, whole and streamed, measured in one interleaved run.

    python scripts/bench_cache.py [--duration 5] [--warmup 1] [--repeat 1] [--quick] [--include-usage]
                                  [--tapgate-set NAME=VALUE] [--json out.json]

One mitmdump with tapgate (started by tests/e2e/harness.py as the e2e tests start it: map_remote to the mock,
lazy connections) serves both modes: the router on plain HTTP with the master key and `"cache_enabled": true`
in the body, and the proxy (CONNECT + TLS to api.openai.com) with `X-Tapgate-Cache-Enabled: true`. Every
config sends the same bytes per cell; the miss adds `X-Tapgate-Cache: bypass`, so each call goes to the mock,
and the hit's entry was stored before the run by one call of the same request (the stream cells hit an entry
stored by the stream request: their bodies differ from the whole cells' in `user`, so the keys differ).
Besides what the client sees, the store says what the gateway spent: `duration_ms` of the rows each cell
wrote (request start to last byte) and the `cache lookup` span. The goal (issue): a hit in well under a
millisecond of gateway time for a typical body.
"""

from __future__ import annotations

import http.client
import json
import os
import re
import signal
import ssl
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from datetime import datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))  # run as a script or imported, bench_common is beside it
from bench_common import (  # noqa: E402
    MESSAGES,
    Cell,
    bench_parser,
    cell_label,
    fmt,
    machine,
    machine_line,
    merge_rounds,
    parse_bench_args,
    pct,
    proc_stats,
    run_cell,
)

ROOT = Path(__file__).resolve().parents[1]
CELLS = (
    Cell("non-stream", False, 1),
    Cell("non-stream", False, 16),
    Cell("stream", True, 1),
    Cell("stream", True, 16),
)
MODES = ("router", "passthrough")
KINDS = ("miss", "hit")
CONFIGS = tuple(f"{mode} {kind}" for mode in MODES for kind in KINDS)
MASTER_KEY = "sk-bench-master"
MOCK_KEY = "sk-mock"
TTL = 86400  # longer than any run, so no entry expires mid-run (the default is 300 s)


@dataclass(frozen=True)
class Target:
    """Where one mode's chat endpoint is reached and as whom."""

    mode: str
    port: int
    host: str
    authorization: str
    model: str
    ca: str | None = None


# -- the requests ------------------------------------------------------------------------------------


def request_parts(mode: str, kind: str, stream: bool, include_usage: bool) -> tuple[dict, dict]:
    """(body fields besides model and messages, extra headers) of one config's request."""
    body: dict = {"user": f"bench-cache-{'stream' if stream else 'whole'}"}
    headers: dict = {}
    if stream:
        body["stream"] = True
        if include_usage:
            body["stream_options"] = {"include_usage": True}
    if mode == "router":
        body["cache_enabled"] = True
    else:
        headers["X-Tapgate-Cache-Enabled"] = "true"
    if kind == "miss":
        headers["X-Tapgate-Cache"] = "bypass"
    return body, headers


def spec_for(target: Target, kind: str, cell: Cell, warmup: float, duration: float, include_usage: bool) -> dict:
    body, headers = request_parts(target.mode, kind, cell.stream, include_usage)
    return {**asdict(cell), "warmup": warmup, "duration": duration, "port": target.port, "ca": target.ca,
            "host": target.host, "authorization": target.authorization, "model": target.model,
            "body": body, "headers": headers}


def call_once(target: Target, kind: str, stream: bool, include_usage: bool) -> tuple[int, str | None, bytes]:
    """(status, x-tapgate-cache, body) of one request, as the load generator would send it."""
    body, headers = request_parts(target.mode, kind, stream, include_usage)
    if target.ca:
        conn = http.client.HTTPSConnection("127.0.0.1", target.port, timeout=30,
                                           context=ssl.create_default_context(cafile=target.ca))
        conn.set_tunnel("api.openai.com", 443)
    else:
        conn = http.client.HTTPConnection("127.0.0.1", target.port, timeout=30)
    try:
        conn.request("POST", "/v1/chat/completions",
                     json.dumps({"model": target.model, "messages": MESSAGES, **body}),
                     {"Authorization": target.authorization, "Content-Type": "application/json", **headers})
        response = conn.getresponse()
        return response.status, response.getheader("x-tapgate-cache"), response.read()
    finally:
        conn.close()


def prime(target: Target, stream: bool, include_usage: bool) -> None:
    """Check that a bypassed call reaches the mock and store the entry the hit cells are served."""
    expected = [("miss", "BYPASS"), ("hit", None), ("hit", "HIT")]  # None: MISS, or HIT from an earlier run
    for kind, header in expected:
        status, got, data = call_once(target, kind, stream, include_usage)
        good = b"data:" in data and b"[DONE]" in data if stream else b'"choices"' in data
        if status != 200 or not good or (header is not None and got != header):
            raise SystemExit(f"{target.mode} {'stream' if stream else 'non-stream'} {kind}: answered {status}, "
                             f"x-tapgate-cache {got!r} (expected {header or 'MISS'}): {data[:300]!r}")


# -- the gateway -------------------------------------------------------------------------------------


def start(tmp: Path, extra: list[str]):
    sys.path.insert(0, str(ROOT / "tests" / "e2e"))
    from harness import router_url, start_gateway, start_mock

    mock, mock_port = start_mock()
    config = tmp / "tapgate.yaml"
    config.write_text(
        "router:\n"
        "  master_key_env: TAPGATE_MASTER_KEY\n"
        "  providers:\n"
        f'    openai: {{base_url: "http://127.0.0.1:{mock_port}/v1", api_key_env: OPENAI_API_KEY}}\n'
        f"cache: {{ttl: {TTL}}}\n"
    )
    os.environ |= {"TAPGATE_MASTER_KEY": MASTER_KEY, "OPENAI_API_KEY": MOCK_KEY}  # start_gateway passes os.environ
    args = ["--set", f"tapgate_config={config}"]
    for option in extra:
        args += ["--set", option]
    try:
        gateway, proxy_port = start_gateway(mock_port, tmp / "conf", tmp / "t.db", *args)
        router_port = int(re.search(r":(\d+)/v1$", router_url(gateway)).group(1))
    except BaseException:
        mock.stop()
        raise
    targets = {
        "router": Target("router", router_port, f"127.0.0.1:{router_port}", f"Bearer {MASTER_KEY}",
                         "openai/gpt-4o-mini"),
        "passthrough": Target("passthrough", proxy_port, "api.openai.com", "Bearer sk-bench", "gpt-4o-mini",
                              str(tmp / "conf" / "mitmproxy-ca-cert.pem")),
    }
    return mock, gateway, targets


def stored(db: Path) -> list[tuple[float, str, int | None, float | None, float | None]]:
    """(started_at as a Unix time, mode, cache_hit, duration_ms, cache lookup span ms) of every row."""
    import sqlite3

    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        lookups = dict(conn.execute("SELECT request_id, duration_ms FROM spans WHERE name = 'cache lookup'"))
        rows = conn.execute("SELECT id, started_at, mode, cache_hit, duration_ms FROM requests").fetchall()
    finally:
        conn.close()
    return [(datetime.fromisoformat(started.replace("Z", "+00:00")).timestamp(), mode, hit, duration,
             lookups.get(id_)) for id_, started, mode, hit, duration in rows]


def gateway_time(rows: list, runs: list[dict], mode: str) -> dict:
    """duration_ms and lookup percentiles of the rows that one config's measured windows wrote."""
    mine = [r for r in rows if r[1] == mode and any(a <= r[0] < b for a, b in (run["window"] for run in runs))]
    durations = [r[3] / 1000 for r in mine if r[3] is not None]  # pct() takes seconds
    lookups = [r[4] / 1000 for r in mine if r[4] is not None]
    return {"rows": len(mine), "hit_rows": sum(1 for r in mine if r[2] == 1),
            "gw_p50_ms": pct(durations, 0.50), "gw_p99_ms": pct(durations, 0.99),
            "lookup_p50_ms": pct(lookups, 0.50), "lookup_p99_ms": pct(lookups, 0.99)}


# -- output ------------------------------------------------------------------------------------------


def table(results: dict) -> str:
    head = ("| cell | config | req/s | p50 ms | p99 ms | TTFC p50 ms | gateway p50 ms | gateway p99 ms "
            "| lookup p50 ms | gateway CPU ms/req | rows (hits) | errors |")
    lines = [head, "|" + "---|" * (head.count("|") - 1)]
    for cell in CELLS:
        for config in CONFIGS:
            r = results[cell, config]
            lines.append(
                f"| {cell_label(cell)} | {config} | {fmt(r['rps'], '.0f')} | {fmt(r['p50_ms'], '.2f')} "
                f"| {fmt(r['p99_ms'], '.2f')} | {fmt(r['ttft_p50_ms'] if cell.stream else None, '.2f')} "
                f"| {fmt(r['gw_p50_ms'], '.3f')} | {fmt(r['gw_p99_ms'], '.3f')} | {fmt(r['lookup_p50_ms'], '.3f')} "
                f"| {fmt(r['cpu_ms_per_req'], '.2f')} | {r['rows']} ({r['hit_rows']}) | {r['errors']} |"
            )
    return "\n".join(lines)


def ratio(a: float | None, b: float | None) -> float | None:
    return None if a is None or b is None or b <= 0 else a / b


def ratios(results: dict) -> list[dict]:
    rows = []
    for cell in CELLS:
        for mode in MODES:
            hit, miss = results[cell, f"{mode} hit"], results[cell, f"{mode} miss"]
            rows.append({"cell": cell_label(cell), "mode": mode,
                         **{f"{k}_hit_over_miss": ratio(hit[k], miss[k]) for k in
                            ("rps", "p50_ms", "p99_ms", "gw_p50_ms", "gw_p99_ms", "cpu_ms_per_req")},
                         "hit_gw_p50_ms": hit["gw_p50_ms"], "hit_gw_p99_ms": hit["gw_p99_ms"],
                         # Judged at c1 only: at c16 a row's time includes waiting for the event loop.
                         "hit_gw_p50_under_1ms": None if hit["gw_p50_ms"] is None or cell.concurrency > 1
                         else hit["gw_p50_ms"] < 1.0})
    return rows


def ratio_table(rows: list[dict]) -> str:
    head = ("| cell | mode | req/s hit/miss | p50 hit/miss | p99 hit/miss | gateway p50 hit/miss "
            "| CPU/req hit/miss | hit gateway p50 ms (< 1) | hit gateway p99 ms |")
    lines = [head, "|" + "---|" * (head.count("|") - 1)]
    for r in rows:
        verdict = "" if r["hit_gw_p50_under_1ms"] is None else " PASS" if r["hit_gw_p50_under_1ms"] else " FAIL"
        lines.append(
            f"| {r['cell']} | {r['mode']} | {fmt(r['rps_hit_over_miss'], '.2f')}x "
            f"| {fmt(r['p50_ms_hit_over_miss'], '.2f')} "
            f"| {fmt(r['p99_ms_hit_over_miss'], '.2f')} | {fmt(r['gw_p50_ms_hit_over_miss'], '.2f')} "
            f"| {fmt(r['cpu_ms_per_req_hit_over_miss'], '.2f')} | {fmt(r['hit_gw_p50_ms'], '.3f')}{verdict} "
            f"| {fmt(r['hit_gw_p99_ms'], '.3f')} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = bench_parser(__doc__.splitlines()[0])
    parser.add_argument("--include-usage", action="store_true",
                        help="streams ask for usage themselves (default: they do not, as most clients; a "
                        "passthrough hit then re-renders the stored stream without the usage tapgate asked for)")
    parser.add_argument("--tapgate-set", action="append", default=[], metavar="NAME=VALUE",
                        help="a mitmproxy option for the gateway, e.g. tapgate_console=false (repeatable)")
    args = parse_bench_args(parser, argv)

    started = time.monotonic()
    print(machine_line())
    print(f"{args.duration:g} s per cell after {args.warmup:g} s warm-up, {args.repeat} round(s); configs "
          f"interleaved per cell; streams {'ask' if args.include_usage else 'do not ask'} for usage\n", flush=True)

    with tempfile.TemporaryDirectory(prefix="tapgate-bench-cache-") as tmp_name:
        tmp = Path(tmp_name)
        mock, gateway, targets = start(tmp, args.tapgate_set)
        runs: dict[tuple[Cell, str], list[dict]] = {}
        try:
            for target in targets.values():
                for stream in (False, True):
                    prime(target, stream, args.include_usage)
            for config in CONFIGS:  # first requests pay for lazy imports, pools and TLS sessions
                mode, kind = config.split()
                for cell in (CELLS[1], CELLS[3]):
                    run_cell(spec_for(targets[mode], kind, cell, 0.0, max(args.warmup, 0.5), args.include_usage))
            print(f"  ready: router on port {targets['router'].port}, proxy on port {targets['passthrough'].port}",
                  flush=True)
            for round_ in range(args.repeat):
                for i, cell in enumerate(CELLS):
                    shift = (i + round_) % len(CONFIGS)  # rotate the order so no config always goes first
                    for config in CONFIGS[shift:] + CONFIGS[:shift]:
                        mode, kind = config.split()
                        cpu0, _ = proc_stats(gateway.proc.pid)
                        r = run_cell(spec_for(targets[mode], kind, cell, args.warmup, args.duration,
                                              args.include_usage))
                        cpu1, _ = proc_stats(gateway.proc.pid)
                        r["cpu_ms_per_req"] = 1000 * (cpu1 - cpu0) / max(1, r["done"])
                        runs.setdefault((cell, config), []).append(r)
                        print(f"  {cell_label(cell):<16} {config:<16} {r['rps']:>8.0f} req/s  "
                              f"p50 {fmt(r['p50_ms'], '.2f'):>7} ms  errors {r['errors']}"
                              + (f"  ({r['first_error']})" if r["first_error"] else ""), flush=True)
            code = gateway.stop(signal.SIGINT)  # its done() drains the writer thread
            rows = stored(tmp / "t.db")
        finally:
            gateway.stop()
            mock.stop()

    results = {}
    for (cell, config), rs in runs.items():
        results[cell, config] = merge_rounds(rs) | gateway_time(rows, rs, config.split()[0])

    print()
    print(table(results))
    print("\nmiss = the same request with `X-Tapgate-Cache: bypass` (answered by the mock); TTFC = request sent to "
          "first body chunk; gateway = duration_ms of the rows the cell's measured window wrote (request start to "
          "last byte, as the gateway records it; at c16 it includes waiting for the event loop); lookup = the "
          "`cache lookup` span; gateway CPU = the mitmdump process's CPU over the cell (warm-up included) per "
          "request; rows (hits) = rows the window wrote (of them cache_hit = 1).\n")
    ratio_rows = ratios(results)
    print(ratio_table(ratio_rows))
    print("\nhit/miss: a hit's figure over the miss's in the same cell and mode. The goal (a hit in well under a "
          "millisecond of gateway time) is judged on the hit rows' duration_ms p50 at c1; at c16 that time "
          "includes queueing (passthrough rows start at the request's first byte), and CPU/req is the cost.")
    # Every hit cell's rows must be hits and every miss cell's must not: else the run measured something else.
    wrong = [f"{cell_label(cell)} {config}" for (cell, config), r in results.items()
             if r["rows"] == 0 or r["hit_rows"] != (r["rows"] if config.endswith("hit") else 0)]
    print(f"\nrows as expected (hit cells all cache_hit = 1, miss cells none): "
          f"{'PASS' if not wrong else 'FAIL: ' + ', '.join(wrong)}; gateway exit code {code}")
    wall = time.monotonic() - started
    print(f"wall clock {wall:.1f} s")
    errors = sum(r["errors"] for r in results.values())

    if args.json:
        doc = {
            **machine(),
            "duration_s": args.duration, "warmup_s": args.warmup, "repeat": args.repeat, "wall_s": wall,
            "include_usage": args.include_usage,
            "cells": [{**asdict(cell), "config": config, **results[cell, config], "runs": runs[cell, config]}
                      for cell in CELLS for config in CONFIGS],
            "ratios": ratio_rows, "rows_unexpected": wrong, "gateway_exit_code": code,
        }
        Path(args.json).write_text(json.dumps(doc, indent=2))
    return 1 if errors or wrong or code != 0 else 0


if __name__ == "__main__":
    sys.exit(main())
