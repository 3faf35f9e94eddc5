"""The pieces the benchmarks share: an HTTP/1.1 load generator (and wrk, where installed), nearest-rank
percentiles, /proc CPU and RSS.

The load generator runs in its own process per cell (`python scripts/bench_common.py SPEC`, started by
run_cell) so that its event loop never shares a GIL with the orchestrator's output-draining threads. A spec
is JSON: port, concurrency, stream, warmup, duration, and optionally ca (CONNECT + TLS through a proxy to
api.openai.com), host, path, authorization, model, chunk_delay_ms, include_usage.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import platform
import re
import shutil
import ssl
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

MESSAGES = [{"role": "user", "content": "What is the capital of the UK?"}]


@dataclass(frozen=True)
class Cell:
    name: str
    stream: bool
    concurrency: int
    chunk_delay_ms: int = 0


def cell_label(cell: Cell) -> str:
    return f"{cell.name}, c{cell.concurrency}"


# -- load generator ----------------------------------------------------------------------------------


def request_bytes(spec: dict) -> bytes:
    doc = {"model": spec.get("model", "gpt-4o-mini"), "messages": MESSAGES, **spec.get("body", {})}
    if spec["stream"]:
        doc["stream"] = True
        if spec.get("include_usage"):
            doc["stream_options"] = {"include_usage": True}
    body = json.dumps(doc, separators=(",", ":")).encode()
    delay = spec.get("chunk_delay_ms")
    extra = f"x-mock-chunk-delay-ms: {delay}\r\n" if delay else ""
    extra += "".join(f"{name}: {value}\r\n" for name, value in spec.get("headers", {}).items())
    head = (
        f"POST {spec.get('path', '/v1/chat/completions')} HTTP/1.1\r\nHost: {spec.get('host', 'api.openai.com')}\r\n"
        f"Authorization: {spec.get('authorization', 'Bearer sk-bench')}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n{extra}\r\n"
    )
    return head.encode() + body


async def open_connection(spec: dict, tls: ssl.SSLContext | None):
    reader, writer = await asyncio.open_connection("127.0.0.1", spec["port"])
    if tls is not None:
        writer.write(b"CONNECT api.openai.com:443 HTTP/1.1\r\nHost: api.openai.com:443\r\n\r\n")
        head = await reader.readuntil(b"\r\n\r\n")
        if not head.startswith((b"HTTP/1.1 200", b"HTTP/1.0 200")):
            writer.close()
            raise ConnectionError(f"CONNECT answered {head.splitlines()[0]!r}")
        await writer.start_tls(tls, server_hostname="api.openai.com")
    return reader, writer


async def read_response(reader: asyncio.StreamReader) -> tuple[int, float | None, bool]:
    """(status, perf_counter at the first body bytes, keep-alive) after reading one whole response."""
    head = await reader.readuntil(b"\r\n\r\n")
    status = int(head[9:12])
    headers = {}
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        headers[name.strip().lower()] = value.strip().lower()
    first = None
    keep = headers.get(b"connection") != b"close"
    if b"chunked" in headers.get(b"transfer-encoding", b""):
        while True:
            size = int((await reader.readline()).split(b";")[0], 16)
            if size == 0:
                while (await reader.readline()) not in (b"\r\n", b""):  # trailers, then the empty line
                    pass
                break
            await reader.readexactly(size + 2)
            if first is None:
                first = time.perf_counter()
    elif b"content-length" in headers:
        length = int(headers[b"content-length"])
        if length:
            got = len(await reader.read(length))
            first = time.perf_counter()
            if got < length:
                await reader.readexactly(length - got)
    else:  # neither: the body runs to the end of the connection (RFC 9112 section 6.3)
        if await reader.read(65536):
            first = time.perf_counter()
            while await reader.read(65536):
                pass
        keep = False
    return status, first, keep


async def load(spec: dict) -> dict:
    tls = ssl.create_default_context(cafile=spec["ca"]) if spec.get("ca") else None
    payload = request_bytes(spec)
    now = time.perf_counter()
    measure_from, end = now + spec["warmup"], now + spec["warmup"] + spec["duration"]
    lat: list[float] = []
    ttft: list[float] = []
    counts = {"sent": 0, "done": 0, "errors": 0}
    last_end = [measure_from]
    first_error: list[str] = []

    async def worker() -> None:
        conn = None
        while time.perf_counter() < end:
            try:
                if conn is None:
                    conn = await open_connection(spec, tls)
                reader, writer = conn
                t0 = time.perf_counter()
                writer.write(payload)
                counts["sent"] += 1
                status, first, keep = await asyncio.wait_for(read_response(reader), 30)
                t1 = time.perf_counter()
                counts["done"] += 1
                if status != 200:
                    raise ConnectionError(f"HTTP {status}")
                if t0 >= measure_from:
                    lat.append(t1 - t0)
                    if first is not None:
                        ttft.append(first - t0)
                    last_end[0] = max(last_end[0], t1)
                if not keep:
                    writer.close()
                    conn = None
            except Exception as e:  # counted and reported; the connection is replaced
                counts["errors"] += 1
                first_error[:] = first_error or [f"{type(e).__name__}: {e}"]
                if conn is not None:
                    conn[1].close()
                conn = None
                await asyncio.sleep(0.01)
        if conn is not None:
            conn[1].close()

    await asyncio.gather(*(worker() for _ in range(spec["concurrency"])))
    elapsed = last_end[0] - measure_from
    return {
        "requests": len(lat),
        "elapsed_s": elapsed,
        "rps": len(lat) / elapsed if elapsed > 0 else 0.0,
        "p50_ms": pct(lat, 0.50),
        "p99_ms": pct(lat, 0.99),
        "ttft_p50_ms": pct(ttft, 0.50),
        "ttft_p99_ms": pct(ttft, 0.99),
        **counts,
        "first_error": first_error[0] if first_error else None,
    }


def run_cell(spec: dict) -> dict:
    """One cell's results, measured by a fresh load generator process."""
    out = subprocess.run(
        [sys.executable, __file__, json.dumps(spec)],
        capture_output=True, text=True, timeout=spec["warmup"] + spec["duration"] + 120,
    )
    if out.returncode != 0:
        raise RuntimeError(f"load generator failed:\n{out.stderr}")
    return json.loads(out.stdout)



def wrk_available() -> bool:
    return shutil.which("wrk") is not None


def run_wrk(spec: dict) -> dict:
    """One plain-HTTP cell measured by wrk (Debian's `wrk`): the same request, keep-alive connections and
    result keys as run_cell, from a load generator in C that spends a fraction of the CPU of the Python
    one (0.13 ms a call), which on a two-core machine is CPU the gateways under test do not get."""
    head, _, body = request_bytes(spec).partition(b"\r\n\r\n")
    headers = [line.split(": ", 1) for line in head.decode().split("\r\n")[1:]]
    lua = "wrk.method = 'POST'\n" + f"wrk.body = {json.dumps(body.decode())}\n" + "".join(
        f"wrk.headers[{json.dumps(name)}] = {json.dumps(value)}\n" for name, value in headers
        if name.lower() not in ("content-length", "host"))
    url = f"http://127.0.0.1:{spec['port']}{spec.get('path', '/v1/chat/completions')}"
    with tempfile.NamedTemporaryFile("w", suffix=".lua") as script:
        script.write(lua)
        script.flush()

        def wrk(seconds: float, latency: bool) -> str:
            args = ["wrk", "-t1", f"-c{spec['concurrency']}", f"-d{max(1, round(seconds))}s", "-s", script.name, url]
            out = subprocess.run(args + (["--latency"] if latency else []), capture_output=True, text=True,
                                 timeout=seconds + 60)
            if out.returncode != 0:
                raise RuntimeError(f"wrk failed:\n{out.stderr}")
            return out.stdout

        if spec["warmup"]:
            wrk(spec["warmup"], False)
        text = wrk(spec["duration"], True)
    def ms(label: str) -> float | None:
        found = re.search(rf"^\s+{label}\s+([\d.]+)(us|ms|s)\s*$", text, re.M)
        return float(found.group(1)) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[found.group(2)] if found else None

    requests = re.search(r"(\d+) requests in", text)
    rps = re.search(r"Requests/sec:\s+([\d.]+)", text)
    bad = sum(int(n) for n in re.findall(r"Non-2xx or 3xx responses: (\d+)", text))
    bad += sum(int(n) for n in re.findall(r"(?:connect|read|write|timeout) (\d+)", text))
    done = int(requests.group(1)) if requests else 0
    return {"requests": done, "done": done, "rps": float(rps.group(1)) if rps else 0.0,
            "p50_ms": ms("50%"), "p99_ms": ms("99%"), "errors": bad, "loadgen": "wrk"}


# -- numbers -----------------------------------------------------------------------------------------


def bench_parser(description: str) -> argparse.ArgumentParser:
    """The options every benchmark takes: cell length, warm-up, rounds, --quick and --json."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--duration", type=float, default=5.0, help="measured seconds per cell (default 5)")
    parser.add_argument("--warmup", type=float, default=1.0, help="unmeasured seconds before each cell (default 1)")
    parser.add_argument("--repeat", type=int, default=1, help="rounds; each metric is the median (default 1)")
    parser.add_argument("--quick", action="store_true", help="smoke run: 1 s cells, 0.3 s warm-up, one round")
    parser.add_argument("--json", metavar="PATH", help="also write the results as JSON")
    return parser


def parse_bench_args(parser: argparse.ArgumentParser, argv: list[str] | None) -> argparse.Namespace:
    args = parser.parse_args(argv)
    if args.quick:
        args.duration, args.warmup, args.repeat = 1.0, 0.3, 1
    return args


def machine() -> dict:
    """What the JSON reports say the run was made on."""
    from mitmproxy.version import VERSION

    return {"python": platform.python_version(), "mitmproxy": VERSION, "nproc": len(os.sched_getaffinity(0))}


def machine_line(middle: str = "") -> str:
    """Python, mitmproxy, (what `middle` adds), cores and load: the first line of every report."""
    from mitmproxy.version import VERSION

    load = " ".join(f"{x:.2f}" for x in os.getloadavg())
    return (f"Python {platform.python_version()}, mitmproxy {VERSION}, {middle}"
            f"nproc {len(os.sched_getaffinity(0))}, load average {load}")


def merge_rounds(rs: list[dict]) -> dict:
    """One cell's rounds as one result: the median of each figure, the peak memory, every error."""
    merged = {k: median([r.get(k) for r in rs]) for k in
              ("rps", "p50_ms", "p99_ms", "ttft_p50_ms", "ttft_p99_ms", "cpu_ms_per_req")}
    merged["peak_rss_mib"] = max((r.get("peak_rss_mib") or 0 for r in rs), default=0) or None
    merged["errors"] = sum(r["errors"] for r in rs)
    return merged


def pct(values: list[float], q: float) -> float | None:
    """Nearest-rank percentile, in milliseconds."""
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, math.ceil(q * len(ordered)) - 1))] * 1000


def median(values):
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


def fmt(value, spec: str = ".1f") -> str:
    return "—" if value is None else format(value, spec)


def process_tree(pid: int) -> list[int]:
    """pid and its living descendants, found through the parent field of /proc/*/stat."""
    parents: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                ppid = int((entry / "stat").read_text().rpartition(")")[2].split()[1])
            except (OSError, IndexError, ValueError):  # exited while we looked
                continue
            parents.setdefault(ppid, []).append(int(entry.name))
    tree, todo = [], [pid]
    while todo:
        tree.append(p := todo.pop())
        todo.extend(parents.get(p, ()))
    return tree


def cpu_seconds(stat: str) -> float:
    """utime + stime of a /proc/<pid>/stat line, in seconds (the fields after the command's ")")."""
    fields = stat.rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def proc_stats(pid: int) -> tuple[float, float]:
    """(CPU seconds so far, peak RSS in MiB) of a process and its living children, from /proc: the sum of
    each one's VmHWM, which is exact for one process and an upper bound for several."""
    cpu = hwm = 0.0
    for p in process_tree(pid):
        try:
            stat = Path(f"/proc/{p}/stat").read_text()
            status = Path(f"/proc/{p}/status").read_text().splitlines()
        except OSError:
            continue
        cpu += cpu_seconds(stat)
        hwm += next((int(line.split()[1]) for line in status if line.startswith("VmHWM")), 0) / 1024
    return cpu, hwm


def cpu_by_command(*names: str) -> dict[str, float]:
    """CPU seconds so far of every process whose command name starts with one of names, summed per name:
    the servers a benchmark shares the machine with (redis-server, postgres), whoever started them."""
    totals = dict.fromkeys(names, 0.0)
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:  # exited while we looked
                continue
            comm = stat.partition(" (")[2].rpartition(")")[0]
            if name := next((n for n in names if comm.startswith(n)), None):
                totals[name] += cpu_seconds(stat)
    return totals


def machine_busy() -> float:
    """CPU seconds every core has spent busy since boot (user, nice, system, interrupts; not idle, not
    waiting on disk, not stolen by the host), from /proc/stat."""
    user, nice, system, _idle, _iowait, irq, softirq = (int(x) for x in Path("/proc/stat").read_text().split()[1:8])
    return (user + nice + system + irq + softirq) / os.sysconf("SC_CLK_TCK")


if __name__ == "__main__":  # the load generator process: one JSON spec in, one JSON result out
    spec = json.loads(sys.argv[1])
    started = time.time()
    result = asyncio.run(load(spec))
    result["window"] = [started + spec["warmup"], time.time()]  # the wall-clock span it measured
    print(json.dumps(result))
