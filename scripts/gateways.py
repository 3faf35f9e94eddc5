"""N gateway processes behind one address, with one command: every process shares the router's port
(SO_REUSEPORT: the kernel spreads connections) and Redis (tapgate_redis) and the store; the proxy port,
which mitmproxy cannot share, is HAProxy in TCP mode in front of one port per process.

    python scripts/gateways.py 2 --redis redis://127.0.0.1:6379/0 [-- more mitmdump options]

Ctrl-C stops them all. Without haproxy on PATH the processes still run and its config is printed.
docs/scaleout.md has the arithmetic for choosing N."""

from __future__ import annotations

import argparse
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

BIN = Path(sys.executable).parent
GATEWAY = Path(__file__).resolve().parents[1] / "addons" / "gateway.py"


def haproxy_config(listen: str, ports: list[int]) -> str:
    """TCP mode: a client's connection (its CONNECT tunnel, its proxy credentials) stays on one process."""
    servers = "\n".join(f"    server gw{i} 127.0.0.1:{port} check" for i, port in enumerate(ports))
    return f"""global
    maxconn 4000
defaults
    mode tcp
    timeout connect 5s
    timeout client 10m
    timeout server 10m
frontend tapgate_proxy
    bind {listen}
    default_backend gateways
backend gateways
    balance leastconn
{servers}
"""


def free_ports(n: int) -> list[int]:
    """n loopback ports nothing listens on now (--first-port 0: tests run several at once)."""
    socks = [socket.socket() for _ in range(n)]
    for s in socks:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in socks]
    for s in socks:
        s.close()
    return ports


def listening(host: str, ports: list[int], children: list[subprocess.Popen], timeout: float = 120) -> bool:
    """Every process accepts connections on its port (so HAProxy starts with all of them up); False
    when one exits first."""
    deadline = time.monotonic() + timeout
    waiting = list(ports)
    while waiting and time.monotonic() < deadline:
        if any(child.poll() is not None for child in children):
            return False
        try:
            socket.create_connection((host, waiting[0]), timeout=1).close()
            waiting.pop(0)
        except OSError:
            time.sleep(0.1)
    return not waiting


def wait_all(children: list[subprocess.Popen], names: list[str], every: float = 5.0) -> None:
    """Wait for every child to exit, naming the ones still running every `every` seconds: a stop that
    lags says which process it waits for."""
    started = time.monotonic()
    for child in children:
        while True:
            try:
                child.wait(every)
                break
            except subprocess.TimeoutExpired:
                running = [name for c, name in zip(children, names, strict=True) if c.poll() is None]
                print(f"gateways: still waiting for {', '.join(running)} {time.monotonic() - started:.0f} s "
                      "after the stop", file=sys.stderr, flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("processes", type=int, help="how many gateway processes (one per core)")
    parser.add_argument("--listen", default="127.0.0.1:8080", help="the proxy address clients use (HAProxy)")
    parser.add_argument("--router", default="127.0.0.1:4000", help="the router address every process shares")
    parser.add_argument("--redis", required=True, help="redis:// URL the processes share budgets through")
    parser.add_argument("--first-port", type=int, default=18080,
                        help="the processes' own proxy ports start here (0: any free ports)")
    argv = sys.argv[1:] if argv is None else argv
    # What follows `--` goes to every mitmdump as is (argparse would take it for this script's own).
    cut = argv.index("--") if "--" in argv else len(argv)
    args = parser.parse_args(argv[:cut])
    args.mitmdump = argv[cut + 1:]
    ports = ([args.first_port + i for i in range(args.processes)] if args.first_port
             else free_ports(args.processes))
    host = args.listen.rpartition(":")[0] or "127.0.0.1"  # each process's own port on the balancer's interface
    children = [subprocess.Popen([str(BIN / "mitmdump"), "-s", str(GATEWAY), "--listen-host", host,
                                  "--listen-port", str(port),
                                  "--set", f"tapgate_router={args.router}", "--set", "tapgate_reuse_port=true",
                                  "--set", f"tapgate_redis={args.redis}", *args.mitmdump]) for port in ports]
    if not listening(host, ports, children):
        print("gateways: a gateway process exited before it listened; stopping", file=sys.stderr)
        for child in children:
            child.poll() is None and child.send_signal(signal.SIGINT)
        return 1
    names = [f"gateway {i} (pid {child.pid}, proxy port {port})"
             for i, (child, port) in enumerate(zip(children, ports, strict=True))]
    config = haproxy_config(args.listen, ports)
    if haproxy := shutil.which("haproxy"):
        path = Path(tempfile.mkdtemp(prefix="tapgate-haproxy-")) / "haproxy.cfg"
        path.write_text(config)
        children.append(subprocess.Popen([haproxy, "-db", "-f", str(path)]))
        names.append(f"haproxy (pid {children[-1].pid})")
        print(f"gateways: {args.processes} processes (proxy ports {ports}) behind HAProxy at {args.listen}; "
              f"router at {args.router}", flush=True)
    else:
        print(f"haproxy is not on PATH: the router is shared at {args.router}; for one proxy address run "
              f"HAProxy with:\n{config}", file=sys.stderr)

    def stop(*_):
        for child in children:
            if child.poll() is None:
                child.send_signal(signal.SIGINT)

    signal.signal(signal.SIGTERM, stop)
    try:
        for child in children:
            child.wait()
    except KeyboardInterrupt:
        stop()
        wait_all(children, names)
    return 0


if __name__ == "__main__":
    sys.exit(main())
