"""What routing costs: one OpenAI-shaped chat request sent to the loopback mock direct, through LiteLLM's proxy
and through tapgate's router, measured in one interleaved run.

    python scripts/bench_router.py [--duration 5] [--warmup 1] [--repeat 1] [--quick] [--skip-litellm]
                                   [--json out.json]

All three answer plain HTTP on loopback at POST /v1/chat/completions, so the load generator
(scripts/bench_common.py: N keep-alive connections, requests one after another, its own process per cell)
sends the same bytes to each; only the port, the bearer key and the model name differ. The mock provider is
shared. LiteLLM runs from its own venv, <repo>/.bench/litellm-venv, created on first use (python3.13, else
python3.11) so that it never touches tapgate's: `litellm --config` with one model, a master key, one uvicorn
worker, LITELLM_LOG=ERROR, no database, the bundled cost map (no fetch). tapgate is `mitmdump -s
addons/gateway.py --set tapgate_router=127.0.0.1:0` with a router config naming the mock as openai; if its
router is not listening within 30 s it is reported unavailable and the others still run. The goals (issue):
at concurrency 16 tapgate serves >= 5x LiteLLM's req/s, and what tapgate adds to p50, p99 and time to first
chunk is <= 0.25 of what LiteLLM adds.

The cell "stream, fallback, c1" (issue: the first token reaches the client as soon as the provider sends it,
also when an earlier model failed and a fallback answers) runs for the gateways only, right after "stream,
c1": each names a model whose one deployment the mock always answers 503 (`x-mock-status` sent as a
deployment header) and whose fallback is the plain model. Both gateways get no retries and no cooldown (so
every call pays one failed attempt, then the fallback; the other cells never fail, so neither setting touches
them); before the run the mock's request log shows each makes exactly one failed call and one answered one.
Its TTFC minus the plain stream c1 TTFC is what a fallback adds.
"""

from __future__ import annotations

import http.client
import json
import os
import platform
import shutil
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
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
    proc_stats,
    run_cell,
)

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests" / "e2e"))
from harness import BIN, Process, admin, start_mock  # noqa: E402  (tests/e2e is not a package)

CONFIGS = ("direct", "litellm", "tapgate")
CELLS = (
    Cell("non-stream", False, 1),
    Cell("non-stream", False, 16),
    Cell("stream", True, 1),
    Cell("stream", True, 16),
)
FALLBACK = Cell("stream, fallback", True, 1)
# A round: the fallback cell right after the plain stream c1 cell it is compared with.
ROUND = (*CELLS[:3], FALLBACK, *CELLS[3:])
FAILING_MODEL = "failing-first"  # both gateways' name for the model whose first deployment always fails
LITELLM_VENV = ROOT / ".bench" / "litellm-venv"
LITELLM_PYTHONS = ("python3.13", "python3.11")  # the first that installs litellm[proxy] cleanly
MASTER_KEY = "sk-bench-master"  # both gateways check the same bearer key
MOCK_KEY = "sk-mock"
ROUTER_LINE = r"tapgate router listening at http://127\.0\.0\.1:(\d+)"
ROUTER_TIMEOUT = 30.0
LITELLM_TIMEOUT = 180.0  # it imports a great deal before it listens


@dataclass
class Server:
    """One config under test: where its chat endpoint is and which process to account CPU and RSS to."""

    name: str
    port: int | None = None
    pid: int | None = None
    authorization: str = f"Bearer {MASTER_KEY}"
    model: str = "gpt-4o-mini"
    process: Process | None = None
    unavailable: str | None = None
    fallback_model: str | None = None  # None: the fallback cell is not run for this config
    fallback_unavailable: str | None = None


# -- LiteLLM -----------------------------------------------------------------------------------------


def venv_python(venv: Path) -> Path:
    return venv / "bin" / "python"


def install_litellm(venv: Path = LITELLM_VENV) -> None:
    """Create the venv with the first Python in LITELLM_PYTHONS that installs and imports litellm[proxy]."""
    tried = []
    for name in LITELLM_PYTHONS:
        python = shutil.which(name)
        if python is None:
            tried.append(f"{name}: not found")
            continue
        shutil.rmtree(venv, ignore_errors=True)
        print(f"creating {venv} with {name} and installing litellm[proxy] (once; minutes)",
              flush=True)
        steps = (
            [python, "-m", "venv", str(venv)],
            [str(venv_python(venv)), "-m", "pip", "install", "-q", "--upgrade", "pip"],
            [str(venv_python(venv)), "-m", "pip", "install", "-q", "litellm[proxy]"],
            [str(venv_python(venv)), "-c", "import litellm.proxy.proxy_server"],
        )
        for step in steps:
            out = subprocess.run(step, capture_output=True, text=True)
            if out.returncode != 0:
                tried.append(f"{name}: {' '.join(step[-2:])} failed: {out.stderr.strip().splitlines()[-1:]}")
                break
        else:
            return
    shutil.rmtree(venv, ignore_errors=True)
    raise SystemExit("could not install litellm[proxy]:\n  " + "\n  ".join(tried)
                     + "\n(--skip-litellm runs the benchmark without it)")


def litellm_versions(venv: Path = LITELLM_VENV) -> dict:
    code = "import importlib.metadata as m, platform; print(m.version('litellm'), platform.python_version())"
    litellm, python = subprocess.run([str(venv_python(venv)), "-c", code], capture_output=True, text=True,
                                     check=True).stdout.split()
    return {"litellm": litellm, "litellm_python": python}


def litellm_config(mock_port: int) -> str:
    # JSON is YAML. telemetry is a no-op in current releases, kept for older ones; without a database
    # LiteLLM keeps no spend logs, and general_settings.master_key is its only key check. The second model
    # and router_settings serve the fallback cell: no retries (router and OpenAI client), no cooldown.
    mock = {"model": "openai/gpt-4o-mini", "api_base": f"http://127.0.0.1:{mock_port}/v1", "api_key": MOCK_KEY}
    return json.dumps({
        "model_list": [
            {"model_name": "gpt-4o-mini", "litellm_params": mock},
            {"model_name": FAILING_MODEL,
             "litellm_params": {**mock, "extra_headers": {"x-mock-status": "503"}, "max_retries": 0}},
        ],
        "router_settings": {"fallbacks": [{FAILING_MODEL: ["gpt-4o-mini"]}], "num_retries": 0,
                            "disable_cooldowns": True},
        "litellm_settings": {"telemetry": False, "set_verbose": False},
        "general_settings": {"master_key": MASTER_KEY},
    }, indent=2)


def start_litellm(tmp: Path, mock_port: int) -> Server:
    config = tmp / "litellm.yaml"
    config.write_text(litellm_config(mock_port))
    port = free_port()
    env = {**os.environ, "LITELLM_LOG": "ERROR", "LITELLM_LOCAL_MODEL_COST_MAP": "True", "PYTHONUNBUFFERED": "1"}
    for name in ("DATABASE_URL", "LITELLM_MASTER_KEY", "REDIS_HOST", "REDIS_URL", "VIRTUAL_ENV"):
        env.pop(name, None)
    args = [str(LITELLM_VENV / "bin" / "litellm"), "--config", str(config), "--host", "127.0.0.1",
            "--port", str(port), "--num_workers", "1"]
    process = Process.start(args, env=env, cwd=tmp)
    server = Server("litellm", port, process.proc.pid, process=process, fallback_model=FAILING_MODEL)
    deadline = time.monotonic() + LITELLM_TIMEOUT
    while not answers(port, "GET", "/health/liveliness"):
        if process.proc.poll() is not None or time.monotonic() > deadline:
            server.unavailable = ("exited" if process.proc.poll() is not None else "not listening after "
                                  f"{LITELLM_TIMEOUT:g} s") + ": " + tail(process)
            return server
        time.sleep(0.25)
    return server


# -- tapgate -----------------------------------------------------------------------------------------


def start_tapgate(tmp: Path, mock_port: int, model: str, extra: list[str] = ()) -> Server:
    config = tmp / "tapgate.yaml"
    base_url = f"http://127.0.0.1:{mock_port}/v1"
    # The alias serves the fallback cell; retry and cooldown are global, and only that cell ever fails.
    config.write_text(
        "router:\n"
        "  master_key_env: TAPGATE_MASTER_KEY\n"
        "  providers:\n"
        f'    openai: {{base_url: "{base_url}", api_key_env: OPENAI_API_KEY}}\n'
        "  models:\n"
        f"    {FAILING_MODEL}:\n"
        "      deployments:\n"
        f'        - {{provider: openai, model: gpt-4o-mini, base_url: "{base_url}", api_key_env: OPENAI_API_KEY,\n'
        '           headers: {"x-mock-status": "503"}}\n'
        f"      fallback_models: [{json.dumps(model)}]\n"
        "  retry: {num_retries: 0}\n"
        "  cooldown: {failures: 1000000}\n"
    )
    # No -q: it would hide the info line that says where the router listens (tests/e2e/harness.py also
    # runs mitmdump without it); a thread drains the output.
    args = [str(BIN / "mitmdump"), "-s", str(ROOT / "addons" / "gateway.py"), "--listen-port", "0",
            "--set", f"tapgate_db={tmp / 't.db'}", "--set", f"confdir={tmp / 'conf'}",
            "--set", f"tapgate_config={config}", "--set", "tapgate_router=127.0.0.1:0"]
    for option in extra:
        args += ["--set", option]
    env = {**os.environ, "TAPGATE_MASTER_KEY": MASTER_KEY, "OPENAI_API_KEY": MOCK_KEY, "PYTHONUNBUFFERED": "1"}
    process = Process.start(args, env=env)
    server = Server("tapgate", pid=process.proc.pid, model=model, process=process, fallback_model=FAILING_MODEL)
    try:
        server.port = int(process.wait_for(ROUTER_LINE, timeout=ROUTER_TIMEOUT).group(1))
    except TimeoutError:
        server.unavailable = f"router not listening after {ROUTER_TIMEOUT:g} s: {tail(process)}"
    except RuntimeError:
        server.unavailable = f"mitmdump exited ({process.proc.returncode}): {tail(process)}"
    return server


# -- common ------------------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def tail(process: Process, lines: int = 3) -> str:
    return " | ".join(line.strip() for line in process.lines if line.strip())[-lines * 120:] or "(no output)"


def answers(port: int, method: str, path: str) -> bool:
    try:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
        conn.request(method, path)
        ok = conn.getresponse().status == 200
        conn.close()
        return ok
    except OSError:
        return False


def check(server: Server, model: str | None = None, streams: tuple[bool, ...] = (False, True)) -> str | None:
    """Why the server does not answer one plain and one streamed chat completion correctly, or None."""
    for stream in streams:
        body = json.dumps({"model": model or server.model, "messages": MESSAGES,
                           **({"stream": True} if stream else {})})
        try:
            conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
            conn.request("POST", "/v1/chat/completions", body,
                         {"Authorization": server.authorization, "Content-Type": "application/json"})
            response = conn.getresponse()
            data = response.read()
            conn.close()
        except OSError as e:
            return f"{'stream' if stream else 'non-stream'} check failed: {type(e).__name__}: {e}"
        good = b"data:" in data and b"[DONE]" in data if stream else b'"choices"' in data
        if response.status != 200 or not good:
            return f"{'stream' if stream else 'non-stream'} check answered {response.status}: {data[:300]!r}"
    return None


def check_fallback(server: Server, mock_port: int) -> str | None:
    """Why one streamed call of the failing model does not make exactly one failed upstream call (503)
    and one answered one, or None."""
    admin(mock_port, "POST", "/_mock/reset")
    if why := check(server, server.fallback_model, (True,)):
        return why
    sent = admin(mock_port, "GET", "/_mock/requests")
    failed = sum(1 for r in sent if r["headers"].get("x-mock-status") == "503")
    if (failed, len(sent) - failed) != (1, 1):
        return f"upstream calls: {failed} failed and {len(sent) - failed} answered, expected 1 and 1"
    return None


def spec_for(server: Server, cell: Cell, warmup: float, duration: float) -> dict:
    return {**asdict(cell), "warmup": warmup, "duration": duration, "port": server.port, "ca": None,
            "host": f"127.0.0.1:{server.port}", "authorization": server.authorization,
            "model": server.fallback_model if cell == FALLBACK else server.model}


def added(results: dict, cell: Cell, config: str, key: str) -> float | None:
    a, d = results.get((cell, config), {}).get(key), results.get((cell, "direct"), {}).get(key)
    return None if config == "direct" or a is None or d is None else a - d


def table(results: dict, configs: tuple[str, ...]) -> str:
    head = ("| cell | config | req/s | p50 ms | p99 ms | added p50 ms | added p99 ms | TTFC p50 ms | TTFC p99 ms "
            "| added TTFC p50 ms | server CPU ms/req | server peak RSS MiB | errors |")
    lines = [head, "|" + "---|" * (head.count("|") - 1)]
    for cell in CELLS:
        for config in configs:
            r = results[cell, config]
            s = cell.stream
            lines.append(
                f"| {cell_label(cell)} | {config} | {fmt(r['rps'], '.0f')} | {fmt(r['p50_ms'], '.2f')} "
                f"| {fmt(r['p99_ms'], '.2f')} | {fmt(added(results, cell, config, 'p50_ms'), '+.2f')} "
                f"| {fmt(added(results, cell, config, 'p99_ms'), '+.2f')} "
                f"| {fmt(r['ttft_p50_ms'] if s else None, '.2f')} | {fmt(r['ttft_p99_ms'] if s else None, '.2f')} "
                f"| {fmt(added(results, cell, config, 'ttft_p50_ms') if s else None, '+.2f')} "
                f"| {fmt(r['cpu_ms_per_req'], '.2f')} | {fmt(r['peak_rss_mib'], '.0f')} | {r['errors']} |"
            )
    return "\n".join(lines)


def fallback_ok(server: Server) -> bool:
    return server.fallback_model is not None and server.fallback_unavailable is None


def ratio(a: float | None, b: float | None) -> float | None:
    return None if a is None or b is None or b <= 0 else a / b


def goals(results: dict) -> list[dict]:
    """tapgate against LiteLLM per cell; a verdict where the goal applies (rps only at c16)."""
    rows = []
    for cell in CELLS:
        rps = ratio(results.get((cell, "tapgate"), {}).get("rps"), results.get((cell, "litellm"), {}).get("rps"))
        rows.append({"goal": "tapgate rps / litellm rps", "cell": cell_label(cell), "value": rps,
                     "target": ">= 5", "ok": None if rps is None or cell.concurrency < 16 else rps >= 5})
        keys = [("p50_ms", "p50"), ("p99_ms", "p99")]
        if cell.stream:
            keys += [("ttft_p50_ms", "TTFC p50"), ("ttft_p99_ms", "TTFC p99")]
        for key, name in keys:
            v = ratio(added(results, cell, "tapgate", key), added(results, cell, "litellm", key))
            rows.append({"goal": f"tapgate added {name} / litellm added {name}", "cell": cell_label(cell),
                         "value": v, "target": "<= 0.25", "ok": None if v is None else v <= 0.25})
    return rows


def fallback_rows(results: dict, configs: tuple[str, ...]) -> list[dict]:
    """TTFC of the fallback cell against the plain stream c1 cell, per gateway that ran it."""
    plain = CELLS[2]
    rows = []
    for config in configs:
        f, p = results[FALLBACK, config], results[plain, config]
        rows.append({"config": config, "rps": f["rps"],
                     "ttft_p50_ms": f["ttft_p50_ms"], "ttft_p99_ms": f["ttft_p99_ms"],
                     "plain_ttft_p50_ms": p["ttft_p50_ms"], "plain_ttft_p99_ms": p["ttft_p99_ms"],
                     **{f"added_{k}": None if f[k] is None or p[k] is None else f[k] - p[k]
                        for k in ("ttft_p50_ms", "ttft_p99_ms")},
                     "cpu_ms_per_req": f["cpu_ms_per_req"], "errors": f["errors"]})
    return rows


def fallback_table(rows: list[dict]) -> str:
    head = ("| config | req/s | fallback TTFC p50 ms | fallback TTFC p99 ms | plain TTFC p50 ms | plain TTFC p99 ms "
            "| added by the fallback p50 ms | added p99 ms | server CPU ms/req | errors |")
    lines = [head, "|" + "---|" * (head.count("|") - 1)]
    for r in rows:
        lines.append(
            f"| {r['config']} | {fmt(r['rps'], '.0f')} "
            f"| {fmt(r['ttft_p50_ms'], '.2f')} | {fmt(r['ttft_p99_ms'], '.2f')} "
            f"| {fmt(r['plain_ttft_p50_ms'], '.2f')} | {fmt(r['plain_ttft_p99_ms'], '.2f')} "
            f"| {fmt(r['added_ttft_p50_ms'], '+.2f')} | {fmt(r['added_ttft_p99_ms'], '+.2f')} "
            f"| {fmt(r['cpu_ms_per_req'], '.2f')} | {r['errors']} |"
        )
    return "\n".join(lines)


def fallback_attempts(db: Path) -> dict:
    """tapgate's rows for the failing model by attempts (each should be 2: the 503, then the fallback)."""
    if not db.exists():
        return {}
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        return dict(conn.execute("SELECT attempts, count(*) FROM requests WHERE model = ? GROUP BY 1",
                                 (FAILING_MODEL,)))
    finally:
        conn.close()


def goal_table(rows: list[dict]) -> str:
    names = list(dict.fromkeys(r["goal"] for r in rows))
    cells = [cell_label(c) for c in CELLS]
    by = {(r["goal"], r["cell"]): r for r in rows}
    lines = ["| goal | target | " + " | ".join(cells) + " |", "|" + "---|" * (len(cells) + 2)]
    for name in names:
        target = next(r["target"] for r in rows if r["goal"] == name)
        marks = []
        for c in cells:
            r = by.get((name, c))
            if r is None:
                marks.append("n/a")
                continue
            verdict = "" if r["ok"] is None else " PASS" if r["ok"] else " FAIL"
            marks.append(fmt(r["value"], ".2f") + ("x" if r["value"] is not None and "rps" in name else "") + verdict)
        lines.append(f"| {name} | {target} | " + " | ".join(marks) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = bench_parser(__doc__.splitlines()[0])
    parser.add_argument("--skip-litellm", action="store_true",
                        help=f"leave LiteLLM out (and do not create {LITELLM_VENV.relative_to(ROOT)})")
    parser.add_argument("--tapgate-model", default="openai/gpt-4o-mini",
                        help="the model name sent to tapgate's router (default openai/gpt-4o-mini)")
    parser.add_argument("--tapgate-set", action="append", default=[], metavar="NAME=VALUE",
                        help="a mitmproxy option for the tapgate gateway, e.g. tapgate_console=false (repeatable)")
    args = parse_bench_args(parser, argv)

    from mitmproxy.version import VERSION

    versions = {"python": platform.python_version(), "mitmproxy": VERSION}
    if not args.skip_litellm:
        if not (LITELLM_VENV / "bin" / "litellm").exists():
            install_litellm()
        versions |= litellm_versions()
    started = time.monotonic()
    print(machine_line(f"LiteLLM {versions['litellm']} on Python {versions['litellm_python']}, "
                       if "litellm" in versions else "LiteLLM skipped, "))
    print(f"{args.duration:g} s per cell after {args.warmup:g} s warm-up, {args.repeat} round(s); "
          "configs interleaved per cell\n", flush=True)

    with tempfile.TemporaryDirectory(prefix="tapgate-bench-router-") as tmp_name:
        tmp = Path(tmp_name)
        mock, mock_port = start_mock()
        servers = {"direct": Server("direct", mock_port, mock.proc.pid, f"Bearer {MOCK_KEY}")}
        runs: dict[tuple[Cell, str], list[dict]] = {}
        try:
            if args.skip_litellm:
                servers["litellm"] = Server("litellm", unavailable="skipped (--skip-litellm)")
            else:
                servers["litellm"] = start_litellm(tmp, mock_port)
            servers["tapgate"] = start_tapgate(tmp, mock_port, args.tapgate_model, args.tapgate_set)
            for server in servers.values():
                if server.unavailable is None and (why := check(server)):
                    server.unavailable = why
                if server.unavailable is None and server.fallback_model is not None:
                    server.fallback_unavailable = check_fallback(server, mock_port)
                if server.unavailable is None:  # first requests pay for lazy imports and pools
                    for cell in (CELLS[1], CELLS[3]) + ((FALLBACK,) if fallback_ok(server) else ()):
                        run_cell(spec_for(server, cell, 0.0, max(args.warmup, 0.5)))
                print(f"  {server.name:<8} " + (f"unavailable: {server.unavailable}" if server.unavailable
                                                 else f"ready on port {server.port}")
                      + (f"; fallback cell unavailable: {server.fallback_unavailable}"
                         if server.fallback_unavailable else ""), flush=True)
            configs = tuple(c for c in CONFIGS if servers[c].unavailable is None)
            fallback_configs = tuple(c for c in configs if fallback_ok(servers[c]))
            for round_ in range(args.repeat):
                for i, cell in enumerate(ROUND):
                    cell_configs = fallback_configs if cell == FALLBACK else configs
                    shift = (i + round_) % max(1, len(cell_configs))  # rotate so no config always goes first
                    for config in cell_configs[shift:] + cell_configs[:shift]:
                        server = servers[config]
                        cpu0, _ = proc_stats(server.pid)
                        r = run_cell(spec_for(server, cell, args.warmup, args.duration))
                        cpu1, hwm = proc_stats(server.pid)
                        r["cpu_ms_per_req"] = 1000 * (cpu1 - cpu0) / max(1, r["done"])
                        r["peak_rss_mib"] = hwm
                        runs.setdefault((cell, config), []).append(r)
                        print(f"  {cell_label(cell):<26} {config:<8} {r['rps']:>8.0f} req/s  "
                              f"p50 {fmt(r['p50_ms'], '.2f'):>7} ms  errors {r['errors']}"
                              + (f"  ({r['first_error']})" if r["first_error"] else ""), flush=True)
            # Still one failed call and one answered after the run: no cooldown skipped the failing deployment.
            after = {c: why for c in fallback_configs if (why := check_fallback(servers[c], mock_port))}
        finally:
            for server in servers.values():
                if server.process is not None:
                    server.process.stop()  # SIGINT: tapgate's done() drains the writer thread
            mock.stop()
        attempts = fallback_attempts(tmp / "t.db") if "tapgate" in fallback_configs else {}

    results = {}
    for key, rs in runs.items():
        results[key] = merge_rounds(rs)

    print()
    print(table(results, configs))
    print("\nadded = config minus direct in the same cell; TTFC = request sent to first body chunk; server = the "
          "process answering the load generator (direct: the mock; litellm: its process tree), CPU over the cell "
          "(warm-up included) per request, peak RSS = VmHWM after the cell (cumulative since start).\n")
    for name in CONFIGS:
        if servers[name].unavailable:
            print(f"{name}: unavailable: {servers[name].unavailable}\n")
    fallback = fallback_rows(results, fallback_configs)
    if fallback:
        print(f"{cell_label(FALLBACK)}: the first deployment answers 503, the fallback streams; plain = the "
              f"stream c1 cell above; added = fallback minus plain (the failed attempt's cost).\n")
        print(fallback_table(fallback))
        print(f"\ntapgate rows for {FAILING_MODEL} by attempts: {attempts or '—'}; after the run, "
              + ("; ".join(f"{c}: {why}" for c, why in after.items()) if after
                 else "each still makes one failed and one answered upstream call") + "\n")
    for name in CONFIGS:
        if servers[name].fallback_unavailable:
            print(f"{name}: fallback cell unavailable: {servers[name].fallback_unavailable}\n")
    goal_rows = goals(results)
    print(goal_table(goal_rows))
    verdicts = [r["ok"] for r in goal_rows if r["ok"] is not None]
    print(f"\ngoals: {sum(verdicts)} of {len(verdicts)} PASS"
          + ("" if verdicts else " (needs both litellm and tapgate)"))
    wall = time.monotonic() - started
    print(f"wall clock {wall:.1f} s")
    errors = sum(r["errors"] for r in results.values())

    if args.json:
        doc = {
            **versions, **machine(), "duration_s": args.duration, "warmup_s": args.warmup,
            "repeat": args.repeat, "wall_s": wall, "tapgate_model": args.tapgate_model,
            "unavailable": {name: s.unavailable for name, s in servers.items() if s.unavailable},
            "cells": [{**asdict(cell), "config": config, **results[cell, config], "runs": runs[cell, config]}
                      for cell in CELLS for config in configs]
            + [{**asdict(FALLBACK), "config": config, "model": FAILING_MODEL, **results[FALLBACK, config],
                "runs": runs[FALLBACK, config]} for config in fallback_configs],
            "fallback": fallback, "fallback_unavailable": {name: s.fallback_unavailable for name, s in
                                                           servers.items() if s.fallback_unavailable},
            "tapgate_fallback_attempts": attempts, "fallback_after_run": after,
            "goals": goal_rows,
        }
        Path(args.json).write_text(json.dumps(doc, indent=2))
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
