"""Make the README's pictures from a real run: the loopback mock provider, a real gateway (mitmdump
with tapgate), calls through it with the official SDKs, then the dashboard and a trace tree exported
by rich as SVG. Nothing leaves the machine.

    python scripts/make_pictures.py [--out docs]    # writes docs/dashboard.svg and docs/trace.svg
"""

from __future__ import annotations

import argparse
import io
import os
import random
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests" / "e2e")]

import anthropic  # noqa: E402
import openai  # noqa: E402
from google import genai  # noqa: E402
from google.genai import types  # noqa: E402
from harness import start_gateway, start_mock, wait_rows  # noqa: E402
from rich.console import Console  # noqa: E402

from cli import queries  # noqa: E402
from cli.snapshot import Tally, snapshot  # noqa: E402
from cli.views import DashboardView, trace_tree  # noqa: E402

MSG = [{"role": "user", "content": "What is the capital of the UK?"}]
TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"  # the W3C example trace id: an agent run of two calls
CALLS = 40


def tags(customer: str, delay_ms: int, **more: str) -> dict[str, str]:
    return {"X-Tapgate-Customer-Identifier": customer, "x-mock-delay-ms": str(delay_ms), **more}


def one_call(n: int, rng: random.Random) -> None:
    """One of a mix of providers, customers, keys, streams and errors, with provider-like latency."""
    customer = rng.choice(["acme", "acme", "globex", "initech", "umbrella"])
    delay = int(rng.lognormvariate(5.5, 0.5))
    kind = n % 8
    try:
        if kind in (0, 1):
            openai.OpenAI(api_key=f"sk-demo-{n % 2}", max_retries=0, default_headers=tags(customer, delay)) \
                .chat.completions.create(model="gpt-4o", messages=MSG)
        elif kind == 2:
            c = openai.OpenAI(api_key="sk-demo-0", max_retries=0,
                              default_headers=tags(customer, delay, **{"x-mock-chunk-delay-ms": "15"}))
            list(c.chat.completions.create(model="gpt-4o-mini", messages=MSG, stream=True))
        elif kind in (3, 4):
            anthropic.Anthropic(api_key="sk-ant-demo", max_retries=0, default_headers=tags(
                customer, delay, **{"x-mock-fixture": "anthropic/messages_prompt_cache_read_and_write.json"})) \
                .messages.create(model="claude-sonnet-4-6", max_tokens=100, messages=MSG)
        elif kind == 5:
            c = anthropic.Anthropic(api_key="sk-ant-demo", max_retries=0,
                                    default_headers=tags(customer, delay, **{"x-mock-chunk-delay-ms": "20"}))
            with c.messages.stream(model="claude-haiku-4-5", max_tokens=100, messages=MSG) as s:
                "".join(s.text_stream)
        elif kind == 6:
            g = genai.Client(api_key="AIza-demo", http_options=types.HttpOptions(headers=tags(customer, delay)))
            g.models.generate_content(model="gemini-2.5-flash", contents="Hi")
        else:  # an overloaded provider now and then
            status = "529" if n % 16 == 7 else "429"
            anthropic.Anthropic(api_key="sk-ant-demo", max_retries=0,
                                default_headers=tags(customer, delay // 4, **{"x-mock-status": status})) \
                .messages.create(model="claude-sonnet-4-6", max_tokens=10, messages=MSG)
    except (openai.APIError, anthropic.APIError):
        pass  # the errors are the point: the gateway records them


def agent_run() -> None:
    """Two calls of one trace (a caller's traceparent): a plan, then a streamed answer."""
    parent = {"traceparent": f"00-{TRACE}-00f067aa0ba902b7-01", "X-Tapgate-Thread-Identifier": "demo-thread"}
    openai.OpenAI(api_key="sk-demo-0", max_retries=0, default_headers=tags("acme", 420, **parent)) \
        .chat.completions.create(model="gpt-4o", messages=MSG)
    time.sleep(0.05)  # the agent thinks between its calls
    c = anthropic.Anthropic(api_key="sk-ant-demo", max_retries=0,
                            default_headers=tags("acme", 180, **parent, **{"x-mock-chunk-delay-ms": "40"}))
    with c.messages.stream(model="claude-sonnet-4-6", max_tokens=100, messages=MSG) as s:
        "".join(s.text_stream)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default=str(ROOT / "docs"), help="folder for dashboard.svg and trace.svg")
    out = Path(ap.parse_args().out)
    out.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix="tapgate-pictures-"))
    mock, mock_port = start_mock()
    gateway = None
    try:
        gateway, port = start_gateway(mock_port, tmp / "conf", tmp / "tapgate.db")
        os.environ.update(HTTPS_PROXY=f"http://127.0.0.1:{port}", NO_PROXY="127.0.0.1,localhost",
                          SSL_CERT_FILE=str(tmp / "conf" / "mitmproxy-ca-cert.pem"))
        for name in ("OPENAI_BASE_URL", "ANTHROPIC_BASE_URL", "GOOGLE_GEMINI_BASE_URL"):
            os.environ.pop(name, None)
        rng = random.Random(7)
        with ThreadPoolExecutor(6) as pool:
            list(pool.map(lambda n: one_call(n, random.Random(rng.random())), range(CALLS)))
        agent_run()
        wait_rows(tmp / "tapgate.db", "SELECT id FROM requests", count=CALLS + 2)

        conn = queries.connect(tmp / "tapgate.db")
        tally = Tally(window_s=300)
        tally.seed(conn, time.time())
        console = Console(record=True, width=100, height=30, file=io.StringIO(), force_terminal=True,
                          color_system="truecolor")
        console.print(DashboardView(snapshot(tally, time.time(), "~/.tapgate/tapgate.db")))
        console.save_svg(str(out / "dashboard.svg"), title="tapgate top")

        spans, requests = queries.trace(conn, queries.resolve_trace(conn, TRACE))
        console = Console(record=True, width=100, file=io.StringIO(), force_terminal=True, color_system="truecolor")
        console.print(trace_tree(TRACE, spans, requests))
        console.save_svg(str(out / "trace.svg"), title=f"tapgate trace {TRACE[:8]}")
        conn.close()
    finally:
        if gateway is not None:
            gateway.stop()
        mock.stop()
    print(f"wrote {out / 'dashboard.svg'} and {out / 'trace.svg'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
