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
import subprocess
import sys
import tempfile
from pathlib import Path

BIN = Path(sys.executable).parent
GATEWAY = Path(__file__).resolve().parents[1] / "addons" / "gateway.py"


def haproxy_config(listen: str, ports: list[int]) -> str:
    """TCP mode: a client's connection (its CONNECT tunnel, its proxy credentials) stays on one process."""
    servers = "\n".join(f"    server gw{i} 127.0.0.1:{port} check" for i, port in enumerate(ports))
    return f"""global
    maxconn 20000
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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("processes", type=int, help="how many gateway processes (one per core)")
    parser.add_argument("--listen", default="127.0.0.1:8080", help="the proxy address clients use (HAProxy)")
    parser.add_argument("--router", default="127.0.0.1:4000", help="the router address every process shares")
    parser.add_argument("--redis", required=True, help="redis:// URL the processes share budgets through")
    parser.add_argument("--first-port", type=int, default=18080, help="the processes' own proxy ports start here")
    parser.add_argument("mitmdump", nargs="*", help="more mitmdump options, after --")
    args = parser.parse_args(argv)
    ports = [args.first_port + i for i in range(args.processes)]
    children = [subprocess.Popen([str(BIN / "mitmdump"), "-s", str(GATEWAY), "--listen-port", str(port),
                                  "--set", f"tapgate_router={args.router}", "--set", "tapgate_reuse_port=true",
                                  "--set", f"tapgate_redis={args.redis}", *args.mitmdump]) for port in ports]
    config = haproxy_config(args.listen, ports)
    if haproxy := shutil.which("haproxy"):
        path = Path(tempfile.mkdtemp(prefix="tapgate-haproxy-")) / "haproxy.cfg"
        path.write_text(config)
        children.append(subprocess.Popen([haproxy, "-db", "-f", str(path)]))
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
        for child in children:
            child.wait()
    return 0


if __name__ == "__main__":
    sys.exit(main())
