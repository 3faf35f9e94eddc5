"""What sharing state costs and what a second process buys: one OpenAI chat call at a time per connection,
concurrency 16, through the router to the loopback mock, in three configs measured in one run:

    sqlite        one process, budgets in its own memory, calls in SQLite (today's default)
    shared        one process, budgets and rate limits admitted and settled in Redis (tapgate_redis),
                  calls written to PostgreSQL (tapgate_postgres)
    shared x2     two such processes on one router port (tapgate_reuse_port)

Every config enforces the same gateway budget (so every call reserves and settles). Goals (issue #17):
shared state adds at most 0.5 ms at p50, and two processes serve at least 1.7x one. Each shared config
gets a database of its own on the PostgreSQL at TAPGATE_BENCH_POSTGRES, dropped afterwards.

Each loaded cell also reports the CPU per call of each part (the gateways, Redis, PostgreSQL, the mock, the
rest: the load generator and anything else running) and how many cores the gateways and the whole machine
kept busy: one process is bound by its own core, two by the machine's two.

The load comes from wrk where it is installed (`apt-get install wrk`), else from the Python load
generator. On two cores everything shares the CPU the gateways need: the Python generator alone takes
about 0.13 ms a call, a tenth of the machine at these rates, wrk about a tenth of that.

    .venv/bin/python scripts/bench_scaleout.py [--duration 8] [--warmup 2] [--rounds 1] [--loadgen wrk]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
import uuid
from contextlib import contextmanager
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "e2e"))

from bench_common import (  # noqa: E402
    Cell,
    cpu_by_command,
    fmt,
    machine_busy,
    machine_line,
    proc_stats,
    run_cell,
    run_wrk,
    wrk_available,
)
from harness import ROOT, Process, start_mock  # noqa: E402

BIN = Path(sys.executable).parent
MASTER_KEY = "sk-bench-master"
REDIS = os.environ.get("TAPGATE_BENCH_REDIS", "redis://127.0.0.1:6379/0")
POSTGRES = os.environ.get("TAPGATE_BENCH_POSTGRES", "postgresql://postgres@127.0.0.1:5432/postgres")
CELL = Cell("router, whole", stream=False, concurrency=16)
# One call at a time: what sharing adds to a call itself, with no queue in front of the CPU (at
# concurrency 16 on two cores, p50 is mostly the wait behind the other fifteen calls).
LONE = Cell("router, whole, one at a time", stream=False, concurrency=1)
# Where the machine's CPU goes at concurrency 16, per call: what bounds a second process on two cores.
CPU_PARTS = ("gateways", "redis", "postgres", "mock", "rest", "machine")


def config(tmp: Path, mock_port: int) -> Path:
    path = tmp / "tapgate.yaml"
    path.write_text(
        "budgets:\n  - {unit: usd, period: month, cap: 1000000}\n"
        "router:\n  master_key_env: TAPGATE_MASTER_KEY\n"
        f'  providers:\n    openai: {{base_url: "http://127.0.0.1:{mock_port}/v1", api_key_env: OPENAI_API_KEY}}\n'
    )
    return path


def start(tmp: Path, mock_port: int, router: str, *options: str) -> tuple[Process, int]:
    args = [str(BIN / "mitmdump"), "-s", str(ROOT / "addons" / "gateway.py"), "--listen-port", "0",
            "--set", f"tapgate_db={tmp / 't.db'}", "--set", f"confdir={tmp / 'conf'}",
            "--set", f"tapgate_config={config(tmp, mock_port)}", "--set", f"tapgate_router={router}"]
    for option in options:
        args += ["--set", option]
    env = {**os.environ, "TAPGATE_MASTER_KEY": MASTER_KEY, "OPENAI_API_KEY": "sk-mock", "PYTHONUNBUFFERED": "1"}
    process = Process.start(args, env=env)
    port = int(process.wait_for(r"tapgate router listening at http://127\.0\.0\.1:(\d+)", timeout=60).group(1))
    process.wait_for(r"tapgate ready", timeout=60)
    return process, port


def measure(port: int, warmup: float, duration: float, cell: Cell = CELL, loadgen: str = "python") -> dict:
    spec = {"name": cell.name, "stream": False, "concurrency": cell.concurrency, "chunk_delay_ms": 0,
            "warmup": warmup, "duration": duration, "port": port, "ca": None, "host": f"127.0.0.1:{port}",
            "authorization": f"Bearer {MASTER_KEY}", "model": "openai/gpt-4o-mini"}
    return run_wrk(spec) if loadgen == "wrk" else run_cell(spec)


@contextmanager
def database(shared: bool):
    """A PostgreSQL database of the run's own (None when not shared)."""
    if not shared:
        yield None
        return
    import psycopg
    from psycopg.conninfo import conninfo_to_dict, make_conninfo

    name = f"tapgate_bench_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(POSTGRES, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        info = conninfo_to_dict(make_conninfo(POSTGRES, dbname=name))
        yield f"postgresql://{info.get('user', 'postgres')}@{info.get('host', '127.0.0.1')}:{info.get('port', 5432)}/{name}"
    finally:
        with psycopg.connect(POSTGRES, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def cpu_use(gateways: list[int], mock: int) -> dict[str, float]:
    """CPU seconds so far of each part of the benchmark, the machine's busy time and the wall clock."""
    servers = cpu_by_command("redis-server", "postgres")
    return {"gateways": sum(proc_stats(pid)[0] for pid in gateways), "redis": servers["redis-server"],
            "postgres": servers["postgres"], "mock": proc_stats(mock)[0], "machine": machine_busy(),
            "wall": time.monotonic()}


def cpu_per_call(before: dict, after: dict, calls: int) -> dict[str, float]:
    """Milliseconds of CPU per call by part over the loaded cell ("rest": the load generator and whatever
    else ran), and the cores the gateways and the machine kept busy."""
    spent = {k: after[k] - before[k] for k in before}
    per = {k: 1000 * spent[k] / max(1, calls) for k in ("gateways", "redis", "postgres", "mock", "machine")}
    per["rest"] = per["machine"] - sum(per[k] for k in ("gateways", "redis", "postgres", "mock"))
    return per | {"gateway_cores": spent["gateways"] / spent["wall"], "machine_cores": spent["machine"] / spent["wall"]}


def run(name: str, mock_port: int, mock_pid: int, processes: int, shared: bool, warmup: float, duration: float,
        loadgen: str) -> dict:
    with tempfile.TemporaryDirectory(prefix=f"bench-scaleout-{name}-") as d, database(shared) as pg:
        tmp = Path(d)
        prefix = f"tapgate-bench-{uuid.uuid4().hex[:8]}:"
        options = [f"tapgate_redis={REDIS}", f"tapgate_redis_prefix={prefix}", f"tapgate_postgres={pg}"] if shared else []
        first, port = start(tmp, mock_port, "127.0.0.1:0", *options, "tapgate_reuse_port=true")
        procs = [first]
        for _ in range(processes - 1):  # the others join the first one's router port
            procs.append(start(tmp, mock_port, f"127.0.0.1:{port}", *options, "tapgate_reuse_port=true")[0])
        try:
            # One at a time first, after its own warm-up: measured after the loaded cell, it would also
            # measure that cell's aftermath (the writers draining, PostgreSQL's autovacuum).
            lone = measure(port, warmup, duration / 2, LONE, loadgen)["p50_ms"]
            measure(port, 0, warmup, CELL, loadgen)
            before = cpu_use([p.proc.pid for p in procs], mock_pid)
            loaded = measure(port, 0, duration, CELL, loadgen)
            return loaded | {"c1_p50_ms": lone, "cpu": cpu_per_call(before, cpu_use([p.proc.pid for p in procs], mock_pid),
                                                                   loaded["done"])}
        finally:
            for p in procs:
                p.stop()
            if shared:
                import redis

                client = redis.Redis.from_url(REDIS)
                keys = list(client.scan_iter(match=prefix + "*"))
                if keys:
                    client.delete(*keys)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=float, default=8.0)
    parser.add_argument("--warmup", type=float, default=2.0)
    parser.add_argument("--rounds", type=int, default=1, help="rounds of the three configs; medians reported")
    parser.add_argument("--loadgen", choices=("wrk", "python"), default="wrk" if wrk_available() else "python",
                        help="load generator (default: wrk where installed)")
    args = parser.parse_args(argv)
    mock, mock_port = start_mock()
    configs = {"sqlite": (1, False), "shared": (1, True), "shared x2": (2, True)}
    rounds: dict[str, list[dict]] = {name: [] for name in configs}
    try:
        for i in range(args.rounds):
            order = list(configs) if i % 2 == 0 else list(reversed(configs))  # alternate, against drift
            for name in order:
                n, shared = configs[name]
                r = run(name.replace(" ", "-"), mock_port, mock.proc.pid, n, shared, args.warmup, args.duration, args.loadgen)
                rounds[name].append(r)
                cpu = r["cpu"]
                print(f"  round {i + 1} {name:<10} {r['rps']:>6.0f} req/s  c16 p50 {fmt(r['p50_ms'], '.2f')} ms  "
                      f"c1 p50 {fmt(r['c1_p50_ms'], '.2f')} ms  load {os.getloadavg()[0]:.2f}  CPU ms/call: "
                      + ", ".join(f"{k} {cpu[k]:.3f}" for k in CPU_PARTS)
                      + f"; cores busy: gateways {cpu['gateway_cores']:.2f}, machine {cpu['machine_cores']:.2f}",
                      flush=True)
    finally:
        mock.stop()
    results = {name: {k: statistics.median(r[k] or 0 for r in rs) for k in ("rps", "p50_ms", "p99_ms", "c1_p50_ms")}
               | {"errors": sum(r["errors"] for r in rs)} for name, rs in rounds.items()}
    print(machine_line())
    print(f"{args.rounds} round(s), medians, load from {args.loadgen}\n")
    print("| config | c16 req/s | c16 p50 ms | c16 p99 ms | c1 p50 ms | errors |\n|---|---:|---:|---:|---:|---:|")
    for name, r in results.items():
        print(f"| {name} | {fmt(r['rps'], '.0f')} | {fmt(r['p50_ms'], '.2f')} | {fmt(r['p99_ms'], '.2f')} "
              f"| {fmt(r['c1_p50_ms'], '.2f')} | {r['errors']} |")
    print("\nCPU per call at concurrency 16, ms (medians; rest: the load generator and the rest of the machine)\n")
    print("| config | " + " | ".join(CPU_PARTS) + " | gateways' cores busy | machine's cores busy |\n"
          + "|---|" + "---:|" * (len(CPU_PARTS) + 2))
    for name, rs in rounds.items():
        cpu = {k: statistics.median(r["cpu"][k] for r in rs) for k in (*CPU_PARTS, "gateway_cores", "machine_cores")}
        print(f"| {name} | " + " | ".join(f"{cpu[k]:.3f}" for k in CPU_PARTS)
              + f" | {cpu['gateway_cores']:.2f} | {cpu['machine_cores']:.2f} |")
    base, shared, two = results["sqlite"], results["shared"], results["shared x2"]
    added = shared["p50_ms"] - base["p50_ms"] if shared["p50_ms"] and base["p50_ms"] else None
    lone = shared["c1_p50_ms"] - base["c1_p50_ms"] if shared["c1_p50_ms"] and base["c1_p50_ms"] else None
    scale = two["rps"] / shared["rps"] if shared["rps"] else None
    print(f"\nshared state adds {fmt(lone, '.2f')} ms at p50 one call at a time and {fmt(added, '.2f')} ms at c16 "
          f"(goal <= 0.5); two processes serve {fmt(scale, '.2f')}x one (goal >= 1.7)")
    # The same figures paired within each round (its configs ran back to back): a shared machine's speed
    # drifts by more than the effects measured here between rounds, less within one.
    deltas = [s["c1_p50_ms"] - b["c1_p50_ms"] for b, s in zip(rounds["sqlite"], rounds["shared"], strict=True)
              if s["c1_p50_ms"] and b["c1_p50_ms"]]
    scales = [t["rps"] / s["rps"] for s, t in zip(rounds["shared"], rounds["shared x2"], strict=True) if s["rps"]]
    if deltas and scales:
        print(f"paired by round: adds {statistics.median(deltas):.2f} ms one call at a time "
              f"({', '.join(f'{d:.2f}' for d in deltas)}); two processes {statistics.median(scales):.2f}x one "
              f"({', '.join(f'{x:.2f}' for x in scales)})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
