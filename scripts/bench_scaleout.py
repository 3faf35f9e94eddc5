"""What sharing state costs and what a second process buys: one OpenAI chat call at a time per connection,
concurrency 16, through the router to the loopback mock, in three configs measured in one run:

    sqlite        one process, budgets in its own memory (today's default)
    redis         one process, budgets and rate limits admitted and settled in Redis (tapgate_redis)
    redis x2      two processes sharing Redis and one router port (tapgate_reuse_port)

Every config enforces the same gateway budget (so every call reserves and settles). Goals (issue #17):
shared state adds at most 0.5 ms at p50, and two processes serve at least 1.7x one. PostgreSQL is not
in the table yet: tapgate_postgres is not built.

    .venv/bin/python scripts/bench_scaleout.py [--duration 8] [--warmup 2]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "e2e"))

from bench_common import Cell, fmt, machine_line, run_cell  # noqa: E402
from harness import ROOT, Process, start_mock  # noqa: E402

BIN = Path(sys.executable).parent
MASTER_KEY = "sk-bench-master"
REDIS = os.environ.get("TAPGATE_BENCH_REDIS", "redis://127.0.0.1:6379/0")
CELL = Cell("router, whole", stream=False, concurrency=16)


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


def measure(port: int, warmup: float, duration: float) -> dict:
    spec = {"name": CELL.name, "stream": False, "concurrency": CELL.concurrency, "chunk_delay_ms": 0,
            "warmup": warmup, "duration": duration, "port": port, "ca": None, "host": f"127.0.0.1:{port}",
            "authorization": f"Bearer {MASTER_KEY}", "model": "openai/gpt-4o-mini"}
    return run_cell(spec)


def run(name: str, mock_port: int, processes: int, shared: bool, warmup: float, duration: float) -> dict:
    with tempfile.TemporaryDirectory(prefix=f"bench-scaleout-{name}-") as d:
        tmp = Path(d)
        prefix = f"tapgate-bench-{uuid.uuid4().hex[:8]}:"
        options = [f"tapgate_redis={REDIS}", f"tapgate_redis_prefix={prefix}"] if shared else []
        first, port = start(tmp, mock_port, "127.0.0.1:0", *options, "tapgate_reuse_port=true")
        procs = [first]
        for _ in range(processes - 1):  # the others join the first one's router port
            procs.append(start(tmp, mock_port, f"127.0.0.1:{port}", *options, "tapgate_reuse_port=true")[0])
        try:
            return measure(port, warmup, duration)
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
    args = parser.parse_args(argv)
    mock, mock_port = start_mock()
    try:
        results = {
            "sqlite": run("sqlite", mock_port, 1, False, args.warmup, args.duration),
            "redis": run("redis", mock_port, 1, True, args.warmup, args.duration),
            "redis x2": run("redis-x2", mock_port, 2, True, args.warmup, args.duration),
        }
    finally:
        mock.stop()
    print(machine_line())
    print(f"| config (c{CELL.concurrency}) | req/s | p50 ms | p99 ms | errors |\n|---|---:|---:|---:|---:|")
    for name, r in results.items():
        print(f"| {name} | {fmt(r['rps'], '.0f')} | {fmt(r['p50_ms'], '.2f')} | {fmt(r['p99_ms'], '.2f')} | {r['errors']} |")
    base, shared, two = results["sqlite"], results["redis"], results["redis x2"]
    added = shared["p50_ms"] - base["p50_ms"] if shared["p50_ms"] and base["p50_ms"] else None
    scale = two["rps"] / shared["rps"] if shared["rps"] else None
    print(f"\nshared state adds {fmt(added, '.2f')} ms at p50 (goal <= 0.5); two processes serve "
          f"{fmt(scale, '.2f')}x one (goal >= 1.7)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
