"""What online scoring costs the calls it watches, and how long an experiment takes.

    python scripts/bench_evals.py [--duration 5] [--warmup 1] [--repeat 1] [--quick] [--json out.json]

Two gateways in front of one loopback mock, started as the e2e tests start them: one with online scoring
off, one scoring 10% of calls with a rule evaluator (a regex). Each cell (router and passthrough, whole
answers, 8 connections) runs on both, interleaved round by round, so a busy machine slows both alike; the
figure is the ratio of their throughputs (the issue's goal: within 5%). Then a 200-row dataset made from
the logs is run with `tapgate eval run`'s Experiment against one candidate at concurrency 8, timed.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import sqlite3
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_common import (  # noqa: E402
    Cell,
    bench_parser,
    fmt,
    machine,
    machine_line,
    median,
    parse_bench_args,
    proc_stats,
    run_cell,
)

ROOT = Path(__file__).resolve().parents[1]
MASTER_KEY = "sk-bench-master"
CELLS = (Cell("router", False, 8), Cell("passthrough", False, 8))
SCORING = """
evals:
  evaluators:
    answered: {kind: regex, pattern: '\\w'}
  online:
    - evaluators: [answered]
      rate: 0.1
"""


def config(mock_port: int, scoring: bool) -> str:
    return ("router:\n  master_key_env: TAPGATE_MASTER_KEY\n  providers:\n"
            f'    openai: {{base_url: "http://127.0.0.1:{mock_port}/v1", api_key_env: OPENAI_API_KEY}}\n'
            + (SCORING if scoring else ""))


def start(tmp: Path, aa: bool = False):
    sys.path.insert(0, str(ROOT / "tests" / "e2e"))
    from harness import router_url, start_gateway, start_mock

    mock, mock_port = start_mock()
    os.environ |= {"TAPGATE_MASTER_KEY": MASTER_KEY, "OPENAI_API_KEY": "sk-mock"}
    gateways = {}
    for name in ("off", "on"):
        (tmp / name).mkdir()
        (tmp / name / "tapgate.yaml").write_text(config(mock_port, name == "on" and not aa))
        process, proxy = start_gateway(mock_port, tmp / name / "conf", tmp / name / "t.db",
                                       "--set", f"tapgate_config={tmp / name / 'tapgate.yaml'}")
        url = router_url(process)
        gateways[name] = (process, proxy, int(re.search(r":(\d+)/v1$", url).group(1)), url, tmp / name)
    return mock, gateways


def spec(cell: Cell, gateway, warmup: float, duration: float) -> dict:
    _, proxy, router, _, home = gateway
    if cell.name == "router":
        target = {"port": router, "host": f"127.0.0.1:{router}", "authorization": f"Bearer {MASTER_KEY}",
                  "model": "openai/gpt-4o-mini"}
    else:
        target = {"port": proxy, "host": "api.openai.com", "authorization": "Bearer sk-bench", "model": "gpt-4o-mini",
                  "ca": str(home / "conf" / "mitmproxy-ca-cert.pem")}
    return {"stream": cell.stream, "concurrency": cell.concurrency, "warmup": warmup, "duration": duration,
            **target}


def count(db: Path, sql: str) -> int:
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        return conn.execute(sql).fetchone()[0]
    finally:
        conn.close()


def experiment(gateway, rows: int = 200, concurrency: int = 8) -> dict:
    """A dataset of `rows` distinct calls made through the router, then run against one candidate."""
    from openai import OpenAI

    from cli import datasets, queries
    from cli.experiment import Experiment
    from core.evals.config import EvalsConfig
    from core.schema import open_db

    _, _, _, url, home = gateway
    client = OpenAI(base_url=url, api_key=MASTER_KEY, max_retries=0)
    for n in range(rows):
        client.chat.completions.create(model="openai/gpt-4o-mini", messages=[{"role": "user", "content": f"q{n}"}],
                                       extra_body={"customer_identifier": "bench-experiment"})
    db = home / "t.db"
    deadline = time.monotonic() + 30
    while count(db, "SELECT count(*) FROM requests WHERE customer_identifier = 'bench-experiment'") < rows:
        if time.monotonic() > deadline:
            raise SystemExit("the gateway did not record the dataset's calls")
        time.sleep(0.1)
    found = datasets.from_logs(queries.connect(db), queries.Filters(customer="bench-experiment"), rows, False)
    conn = open_db(db)
    datasets.save(conn, "bench", found, {})
    conn.close()
    table = datasets.rows_of(queries.connect(db), "bench")
    run = Experiment(table, ["openai/gpt-4o-mini"], url, MASTER_KEY, EvalsConfig(), [], concurrency=concurrency)
    started = time.perf_counter()
    results = asyncio.run(run.run())
    seconds = time.perf_counter() - started
    return {"rows": len(table), "concurrency": concurrency, "seconds": round(seconds, 3),
            "rows_per_s": round(len(results) / seconds, 1), "errors": sum(not r.ok for r in results)}


def main(argv: list[str] | None = None) -> None:
    parser = bench_parser(__doc__.splitlines()[0])
    parser.add_argument("--aa", action="store_true", help="scoring off on both gateways: the noise floor of the ratio")
    args = parse_bench_args(parser, argv)
    with tempfile.TemporaryDirectory() as tmp:
        mock, gateways = start(Path(tmp), args.aa)
        try:
            results: dict = {}
            for cell in CELLS:
                rounds: dict[str, list[float]] = {"off": [], "on": []}
                cpu: dict[str, list[float]] = {"off": [], "on": []}
                for _ in range(args.repeat):
                    for name in ("off", "on", "on", "off"):  # ABBA: neither side always runs second
                        before = proc_stats(gateways[name][0].proc.pid)[0]
                        r = run_cell(spec(cell, gateways[name], args.warmup, args.duration / 2))
                        spent = proc_stats(gateways[name][0].proc.pid)[0] - before
                        if r["errors"]:
                            raise SystemExit(f"{cell.name} {name}: {r['errors']} errors: {r['first_error']}")
                        rounds[name].append(r["rps"])
                        cpu[name].append(spent * 1000 / max(1, r.get("done") or r["requests"]))
                off, on = median(rounds["off"]), median(rounds["on"])
                results[cell.name] = {"off_rps": off, "on_rps": on, "ratio": on / off,
                                      "off_cpu_ms": median(cpu["off"]), "on_cpu_ms": median(cpu["on"])}
            on_db = gateways["on"][4] / "t.db"
            time.sleep(1.5)  # the writer commits within a second; scores follow their calls
            calls = count(on_db, "SELECT count(*) FROM requests")
            scores = count(on_db, "SELECT count(*) FROM scores")
            results["scored"] = {"calls": calls, "scores": scores, "share": scores / calls if calls else 0.0}
            results["experiment"] = experiment(gateways["off"])
        finally:
            for process, *_ in gateways.values():
                process.stop()
            mock.stop()
    print(machine_line("two gateways, "))
    print("| cell | scoring off req/s | scoring 10% req/s | ratio | gateway CPU ms/req off | on | CPU ratio |\n"
          "|---|---|---|---|---|---|---|")
    for cell in CELLS:
        r = results[cell.name]
        print(f"| {cell.name}, whole, c{cell.concurrency} | {fmt(r['off_rps'])} | {fmt(r['on_rps'])} "
              f"| {r['ratio']:.3f} | {fmt(r['off_cpu_ms'], '.2f')} | {fmt(r['on_cpu_ms'], '.2f')} "
              f"| {r['on_cpu_ms'] / r['off_cpu_ms']:.3f} |")
    s, e = results["scored"], results["experiment"]
    print(f"\nscored: {s['scores']} of {s['calls']} calls ({s['share']:.1%})")
    print(f"experiment: {e['rows']} rows at concurrency {e['concurrency']} in {e['seconds']} s "
          f"({e['rows_per_s']} rows/s, {e['errors']} errors)")
    if args.json:
        Path(args.json).write_text(json.dumps({"machine": machine(), **results}, indent=2))


if __name__ == "__main__":
    main()
