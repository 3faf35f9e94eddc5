"""The store writer under the proxy's full load: records per second committed, the backlog over time,
what a SIGKILL at the end of the load would lose, and the writer thread's share of the gateway's CPU.

    python scripts/bench_writer.py [--before DIR] [--duration 8] [--warmup 1] [--rate 2400] [--quick] [--json out.json]
                                   [--postgres postgresql://postgres@127.0.0.1:5432/postgres]

Two cells. "loop at 100%" pins the load the issue measured, whatever else the machine runs: in one
process the Store is fed a call's records (a `requests` row with 1 KiB bodies and two spans, as the
recorder writes them) --rate times a second by a thread that spends every moment between calls in
Python, as the proxy's event loop does at its maximum rate, so the writer gets the GIL only as the
event loop lets it. Counted every 0.25 s: records committed and waiting.

One gateway (tests/e2e/harness.py, as the e2e tests start it) in front of the loopback mock, driven by
two load generator processes at once (scripts/bench_common.py: non-stream and stream, 16 keep-alive
connections each, CONNECT + TLS). While they run, the committed rows are counted in the store every
0.25 s. When they stop, the rows still to come (the writer's backlog at that instant: what a SIGKILL
then would have lost from the store, before the journal) are counted as the writer drains, and the
gateway is stopped cleanly. `--before DIR` runs the same cell first on another checkout (for example
`git archive main | tar -x -C /tmp/tapgate-main`) and prints the two side by side, as ratios.

`--postgres URL` (a server the benchmark may create a scratch database in) runs both cells of this
checkout once more with `tapgate_postgres` (core/pg/writer.py), so the PostgreSQL writer's records
per second and CPU per record read beside SQLite's.
"""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import sys
import tempfile
import threading
import time
from contextlib import contextmanager
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))  # run as a script or imported, bench_common is beside it
from bench_common import bench_parser, fmt, machine, machine_line, parse_bench_args, run_cell  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
SAMPLE_SECONDS = 0.25


def rows(db: Path | str) -> int:
    if isinstance(db, str):  # a PostgreSQL URL
        import psycopg

        try:
            with psycopg.connect(db, connect_timeout=5) as conn:
                return conn.execute("SELECT count(*) FROM requests").fetchone()[0]
        except psycopg.Error:
            return 0
    try:
        conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5)
    except sqlite3.OperationalError:
        return 0
    try:
        return conn.execute("SELECT count(*) FROM requests").fetchone()[0]
    except sqlite3.OperationalError:
        return 0
    finally:
        conn.close()


def cpu(pid: int) -> tuple[float, dict[int, float]]:
    """(the whole process's CPU seconds, each thread's), from /proc."""
    tick = os.sysconf("SC_CLK_TCK")

    def seconds(stat: Path) -> float:
        fields = stat.read_text().rpartition(")")[2].split()
        return (int(fields[11]) + int(fields[12])) / tick

    threads = {}
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            threads[int(task.name)] = seconds(task / "stat")
        except OSError:
            continue
    return seconds(Path(f"/proc/{pid}/stat")), threads


def writer_cpu(pid: int, before: dict[int, float], after: dict[int, float]) -> float:
    """The writer's CPU over the load: Python 3.13 does not name its threads for /proc, so it is the
    busiest thread besides the event loop's (the main thread); the others (alerts, the dashboard's,
    the resolver's) are idle under this load."""
    return max((t - before.get(tid, 0.0) for tid, t in after.items() if tid != pid), default=0.0)


def run(code: Path, mock_port: int, tmp: Path, args, postgres: str = "") -> dict:
    from harness import start_gateway

    extra = ("--set", f"tapgate_postgres={postgres}") if postgres else ()
    process, port = start_gateway(mock_port, tmp / "conf", tmp / "tapgate.db", *extra, root=code)
    db = postgres or tmp / "tapgate.db"  # where rows() counts
    try:
        ca = str(tmp / "conf" / "mitmproxy-ca-cert.pem")
        specs = [{"port": port, "ca": ca, "concurrency": 16, "stream": stream, "warmup": args.warmup,
                  "duration": args.duration} for stream in (False, True)]
        results: list[dict] = []
        threads = [threading.Thread(target=lambda s=s: results.append(run_cell(s))) for s in specs]
        cpu0 = cpu(process.proc.pid)
        t0 = time.monotonic()
        for t in threads:
            t.start()
        samples = []  # (seconds since start, rows committed)
        while any(t.is_alive() for t in threads):
            samples.append((time.monotonic() - t0, rows(db)))
            time.sleep(SAMPLE_SECONDS)
        load_s = time.monotonic() - t0
        at_end = rows(db)
        cpu1 = cpu(process.proc.pid)
        drained_at = None
        last, still = at_end, 0
        while still < 8:  # the writer drains: wait until the count has not moved for 2 s
            time.sleep(SAMPLE_SECONDS)
            now = rows(db)
            still = still + 1 if now == last else 0
            if now != last:
                drained_at = time.monotonic() - t0 - load_s
            last = now
        code_stop = process.stop(signal.SIGINT)
        total = rows(db)
    finally:
        process.stop()
    answered = sum(r["done"] for r in results)  # warm-up included: every call the store should have
    rate = sum(r["rps"] for r in results)
    committed = [(t, n) for t, n in samples if args.warmup + 0.5 <= t <= args.warmup + args.duration]
    commit_rate = ((committed[-1][1] - committed[0][1]) / (committed[-1][0] - committed[0][0])
                   if len(committed) > 1 else None)
    # The backlog at each sample: calls answered by then (at the measured rate, after the warm-up's
    # ramp) minus rows committed; at the load's end it is exact: rows still to come.
    per_s = total / load_s if load_s else 0
    backlog = [(round(t, 2), max(0, round(per_s * t) - n)) for t, n in samples]
    proc_cpu, thread_cpu = cpu1[0] - cpu0[0], writer_cpu(process.proc.pid, cpu0[1], cpu1[1])
    return {
        "answered_per_s": rate, "committed_per_s": commit_rate, "answered": answered, "rows": total,
        "backlog_at_end": total - at_end, "max_backlog_estimate": max((b for _, b in backlog), default=0),
        "drain_s": drained_at, "process_cpu_s": proc_cpu, "writer_cpu_s": thread_cpu,
        "writer_cpu_share": thread_cpu / proc_cpu if proc_cpu else None, "exit_code": code_stop,
        "errors": sum(r["errors"] for r in results), "backlog_timeline": backlog,
    }


SYNTHETIC_CHILD = "--synthetic-child"


def synthetic(code: Path, args, postgres: str = "") -> dict:
    """The "loop at 100%" cell for the Store of `code`, in a process of its own (its own imports)."""
    import subprocess

    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, (str(code), os.environ.get("PYTHONPATH"))))}
    spec = {"rate": args.rate, "duration": args.duration, "postgres": postgres}
    out = subprocess.run([sys.executable, __file__, SYNTHETIC_CHILD, json.dumps(spec)], capture_output=True,
                         text=True, env=env, cwd=code, timeout=args.duration * 20 + 120)
    if out.returncode != 0:
        raise RuntimeError(f"synthetic cell failed:\n{out.stderr}")
    return json.loads(out.stdout)


def synthetic_child(spec: dict) -> dict:
    from mitmproxy.test import taddons

    from addons.store import Store

    body = "x" * 1024
    rate, duration = spec["rate"], spec["duration"]
    with tempfile.TemporaryDirectory(prefix="tapgate-bench-writer-") as tmp:
        store = Store()
        with taddons.context(store) as tctx:
            if spec.get("postgres"):
                tctx.configure(store, tapgate_db=str(Path(tmp) / "t.db"), tapgate_postgres=spec["postgres"])
            else:
                tctx.configure(store, tapgate_db=str(Path(tmp) / "t.db"))
            writer = store.writer
            columns = list(__import__("sqlite3").connect(Path(tmp) / "t.db").execute(
                "SELECT name FROM pragma_table_info('requests')").fetchall())
            template = {c[0]: None for c in columns} | {
                "provider": "openai", "endpoint": "chat.completions", "model": "gpt-4o-mini", "status": "ok",
                "status_code": 200, "input_tokens": 14, "output_tokens": 37, "cost_usd": 0.0000243, "mode":
                "passthrough", "request_body": body, "response_body": body, "started_at": "2026-01-01T00:00:00.000Z",
                "metadata": "{}", "duration_ms": 3.2}
            added = calls = 0
            samples = []
            start = time.perf_counter()
            next_sample = start
            while (now := time.perf_counter()) - start < duration:
                due = int((now - start) * rate)
                while calls < due:  # the calls that have ended by now, recorded as the recorder does
                    calls += 1
                    call = f"{calls:032x}"  # not uuid4: os.urandom would hand the GIL over, an event loop does not
                    records = [("requests", {**template, "id": call, "trace_id": call}),
                               ("spans", {"span_id": call[:16], "trace_id": call, "request_id": call, "name": "root",
                                          "attributes": '{"a": 1}'}),
                               ("spans", {"span_id": call[16:], "trace_id": call, "request_id": call,
                                          "name": "upstream", "attributes": '{"b": 2}'})]
                    if hasattr(store, "add_all"):
                        store.add_all(records)
                    else:
                        for table, row in records:
                            store.add(table, row)
                    added += 3
                if now >= next_sample:
                    samples.append((round(now - start, 2), added - writer.written))
                    next_sample += SAMPLE_SECONDS
                # the rest of the loop's time goes on Python work, as a busy event loop's does
                sum(i * i for i in range(200))
            tid = writer.native_id
            thread_cpu = cpu(os.getpid())[1].get(tid, 0.0)
            process_cpu = cpu(os.getpid())[0]
            at_end = added - writer.written
            t = time.perf_counter()
            store.done()
            drain = time.perf_counter() - t
            committed = writer.written
    return {"records_added": added, "records_committed": committed, "added_per_s": added / duration,
            "committed_per_s": (added - at_end) / duration, "backlog_at_end": at_end,
            "max_backlog": max(b for _, b in samples), "drain_s": drain, "writer_cpu_s": thread_cpu,
            "process_cpu_s": process_cpu, "backlog_timeline": samples,
            "writer_cpu_us_per_record": 1e6 * thread_cpu / committed if committed else None}


@contextmanager
def scratch_database(url: str):
    """A new database on the server at `url` for one cell, dropped afterwards."""
    import uuid

    import psycopg
    from psycopg.conninfo import conninfo_to_dict

    name = f"tapgate_bench_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    info = conninfo_to_dict(url)
    try:
        yield (f"postgresql://{info.get('user', 'postgres')}@{info.get('host', '127.0.0.1')}:"
               f"{info.get('port', 5432)}/{name}")
    finally:
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def timeline(samples: list, points: int = 12) -> str:
    """About `points` of the (seconds, waiting) samples, as "2s:1800  3s:950"."""
    return "  ".join(f"{t:.0f}s:{b}" for t, b in samples[:: max(1, len(samples) // points)])


def synthetic_report(name: str, r: dict) -> list[str]:
    return [
        f"{name}: {r['added_per_s']:.0f} records/s recorded, {r['committed_per_s']:.0f}/s committed while the loop "
        f"ran; waiting at the end {r['backlog_at_end']} (max {r['max_backlog']}), committed "
        f"{fmt(r['drain_s'], '.2f')} s "
        f"after the loop stopped; writer thread {r['writer_cpu_s']:.2f} of {r['process_cpu_s']:.2f} CPU s; "
        f"{r['records_committed']} of {r['records_added']} committed",
        f"  records waiting over time: {timeline(r['backlog_timeline'])}",
    ]


def report(name: str, r: dict) -> list[str]:
    return [
        f"{name}: answered {fmt(r['answered_per_s'], '.0f')} calls/s, committed "
        f"{fmt(r['committed_per_s'], '.0f')} rows/s"
        f" during the load; backlog when the load stopped {r['backlog_at_end']} rows (drained in "
        f"{fmt(r['drain_s'], '.2f')} s); writer thread {fmt(r['writer_cpu_s'], '.2f')} of "
        f"{fmt(r['process_cpu_s'], '.2f')} CPU s ({fmt(100 * (r['writer_cpu_share'] or 0), '.1f')}%); "
        f"{r['rows']} rows for {r['answered']} answered calls; errors {r['errors']}; exit code {r['exit_code']}",
        f"  backlog over time (estimated from the answer rate): {timeline(r['backlog_timeline'])}",
    ]


def main(argv: list[str] | None = None) -> int:
    parser = bench_parser(__doc__.splitlines()[0])
    parser.add_argument("--before", metavar="DIR", help="another checkout to measure first (the code before a change)")
    parser.add_argument("--rate", type=int, default=2400,
                        help="calls a second in the loop-at-100%% cell (default 2400: the proxy's maximum, "
                        "see Benchmark)")
    parser.add_argument("--postgres", metavar="URL", help="also measure the PostgreSQL writer, in scratch "
                        "databases on this server (trust or password in the URL)")
    args = parse_bench_args(parser, argv)
    args.duration = max(args.duration, 3.0) if not args.quick else 2.0
    sys.path.insert(0, str(ROOT / "tests" / "e2e"))
    from harness import start_mock

    print(machine_line())
    codes = ([("before", Path(args.before).resolve())] if args.before else []) + [("after", ROOT)]
    print(f"loop at 100%: {args.rate} calls/s (3 records each) for {args.duration:g} s\n", flush=True)
    loop = {}
    for name, code in codes:
        loop[name] = synthetic(code, args)
        for line in synthetic_report(name, loop[name]):
            print(line, flush=True)
    if args.postgres:
        with scratch_database(args.postgres) as url:
            loop["postgresql"] = synthetic(ROOT, args, url)
        for line in synthetic_report("postgresql", loop["postgresql"]):
            print(line, flush=True)
        sq, pg = loop["after"], loop["postgresql"]
        print(f"\npostgresql / sqlite: committed records/s while the loop ran "
              f"{fmt(pg['committed_per_s'] / sq['committed_per_s'], '.2f')}x; writer CPU per record "
              f"{fmt(sq['writer_cpu_us_per_record'], '.1f')} -> {fmt(pg['writer_cpu_us_per_record'], '.1f')} us")
    if "before" in loop:
        b, a = loop["before"], loop["after"]
        speedup = f"{a['committed_per_s'] / b['committed_per_s']:.2f}x" if b["committed_per_s"] else \
            f"{a['committed_per_s']:.0f}/s against none"
        print(f"\nafter / before: committed records/s while the loop ran {speedup}; waiting "
              f"at the end {b['backlog_at_end']} -> {a['backlog_at_end']}; commit after the loop "
              f"{b['drain_s']:.2f} -> {a['drain_s']:.2f} s; writer CPU {b['writer_cpu_s']:.2f} -> "
              f"{a['writer_cpu_s']:.2f} s")

    print(f"\nthrough a gateway: {args.duration:g} s of load after {args.warmup:g} s warm-up: non-stream c16 + "
          "stream c16 at once\n", flush=True)
    mock, mock_port = start_mock()
    results = {}
    try:
        for name, code in codes:
            with tempfile.TemporaryDirectory(prefix="tapgate-bench-writer-") as tmp:
                results[name] = run(code, mock_port, Path(tmp), args)
            for line in report(name, results[name]):
                print(line, flush=True)
        if args.postgres:
            with tempfile.TemporaryDirectory(prefix="tapgate-bench-writer-") as tmp, \
                    scratch_database(args.postgres) as url:
                results["postgresql"] = run(ROOT, mock_port, Path(tmp), args, url)
            for line in report("postgresql", results["postgresql"]):
                print(line, flush=True)
    finally:
        mock.stop()
    if "before" in results:
        b, a = results["before"], results["after"]

        def ratio(key: str) -> str:
            return fmt(a[key] / b[key], ".2f") + "x" if a[key] and b[key] else "—"

        print(f"\nafter / before: answered calls/s {ratio('answered_per_s')}, committed rows/s "
              f"{ratio('committed_per_s')}, backlog at the end {b['backlog_at_end']} -> {a['backlog_at_end']} rows, "
              f"writer CPU share {fmt(100 * (b['writer_cpu_share'] or 0), '.1f')}% -> "
              f"{fmt(100 * (a['writer_cpu_share'] or 0), '.1f')}%")
    complete = all(r["rows"] >= r["answered"] and r["exit_code"] == 0 for r in results.values())
    if args.json:
        Path(args.json).write_text(json.dumps({**machine(), "duration_s": args.duration, "warmup_s": args.warmup,
                                               "rate": args.rate, "loop": loop, "gateway": results}, indent=2))
    return 0 if complete else 1


if __name__ == "__main__":
    if sys.argv[1:2] == [SYNTHETIC_CHILD]:
        sys.path.insert(0, os.getcwd())  # the checkout measured, before this one's editable install
        print(json.dumps(synthetic_child(json.loads(sys.argv[2]))))
    else:
        sys.exit(main())
