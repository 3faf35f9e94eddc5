"""Console: one rich line per recorded call in the mitmdump terminal, in place of mitmproxy's dump."""

from __future__ import annotations

import functools
import logging
import queue
import threading
from typing import Any

from mitmproxy import ctx
from rich.color import ColorSystem
from rich.console import Console as RichConsole
from rich.style import Style

from cli.cells import cost_text, status_text, tokens_text
from core.secrets import redact_url, scrub

# mitmdump prints every flow itself, URL and all (a Gemini `?key=` in full at 125 columns). For the
# calls tapgate records, its own line replaces that dump; other flows to a provider host get a redacted line.
HIDE_RECORDED = '!(~meta "^tapgate(_provider)?:")'
PRINT_SECONDS = 0.1
# mitmproxy logs this for every streamed flow; for recorded calls the tapgate line says it better.
# And every client and server connection opening and closing: noise around the call lines.
PROXY_NOTES = ("Streaming response from ", "Streaming request to ", "client connect", "client disconnect",
               "server connect ", "server disconnect ")


def quiet_proxy_notes(record: logging.LogRecord) -> bool:
    return not (isinstance(record.msg, str) and record.msg.startswith(PROXY_NOTES))


def provider_flow_line(flow) -> str:
    """A flow to a provider host that is not a recorded call, with any key in its URL redacted."""
    req = flow.request
    outcome = str(flow.response.status_code) if flow.response is not None else f"error: {flow.error.msg}" \
        if flow.error is not None else "---"
    return scrub(f"{req.method} {flow.metadata['tapgate_provider']}{redact_url(req.path)} {outcome}")


def call_segments(row: dict[str, Any]) -> list[tuple[str, str | None]]:
    """time provider model status latency ttft tokens cost customer, each with its style."""
    ok = row["status"] == "ok"
    ttft = f"ttft {row['ttft_ms']:.0f}ms" if row["ttft_ms"] is not None else ""
    segments: list[tuple[str, str | None]] = [
        (row["started_at"][11:23] + " ", "dim"),
        (f"{row['provider']:<10} ", "cyan"),
        (f"{(row['response_model'] or row['model'] or '?')[:32]:<32} ", "bold"),
        (f"{status_text(row):<6} ", "green" if ok else "red"),
        (f"{(row['duration_ms'] or 0):>7.0f}ms {ttft:<12} ", None),
        (f"{tokens_text(row):<13} {cost_text(row):<11}", "yellow"),
    ]
    if row.get("cache_hit"):
        segments.append((" cache hit", "green"))
    if row["customer_identifier"]:
        segments.append((f" {row['customer_identifier']}", "magenta"))
    if row["error"] and not ok:
        segments.append((f"  {row['error'][:80]}", "red"))
    return segments


@functools.cache
def _style(name: str) -> Style:
    return Style.parse(name)


def painted(row: dict[str, Any], color_system: ColorSystem | None) -> str:
    """The same line as a string with its ANSI colours (none when not a terminal). About 1 µs against
    rich's ~60 µs render: the console thread shares the GIL with the proxy, so this is latency saved."""
    if color_system is None:
        return "".join(text for text, _ in call_segments(row))
    return "".join(_style(style).render(text, color_system=color_system) if style else text
                   for text, style in call_segments(row))


class Console:
    """Prints on its own thread, so a slow terminal never stalls the proxy. Lines go out in batches
    (one render and one write every PRINT_SECONDS at most): the thread shares the GIL with the
    proxy's event loop, and each wake-up costs the proxy more than the line itself."""

    def __init__(self, file=None, dashboard=None) -> None:
        self._queue: queue.SimpleQueue[dict[str, Any] | str | None] = queue.SimpleQueue()
        self._stopping = threading.Event()
        self._console = RichConsole(file=file, highlight=False, soft_wrap=True)
        self._thread: threading.Thread | None = None
        self._dashboard = dashboard  # the live dashboard, when the gateway has one: it lists calls itself

    def load(self, loader) -> None:
        loader.add_option("tapgate_console", bool, True, "Print one line per recorded LLM call.")

    def running(self) -> None:
        # The record stage hands every row to show(); the dashboard, when there is one, gets it from here.
        if ctx.master.addons.get("dumper") is not None:  # with the console off too: a provider URL may hold a key
            current = ctx.options.dumper_filter
            if not current or HIDE_RECORDED not in current:
                ctx.options.dumper_filter = f"({current}) & {HIDE_RECORDED}" if current else HIDE_RECORDED
        if not ctx.options.tapgate_console:
            return
        logging.getLogger("mitmproxy.proxy.server").addFilter(quiet_proxy_notes)
        self._thread = threading.Thread(target=self._run, name="tapgate-console", daemon=True)
        self._thread.start()

    def response(self, flow) -> None:
        if flow.metadata.get("tapgate_provider") and self._thread is not None and not self._dashboard_on():
            self._queue.put(provider_flow_line(flow))

    error = response

    def _dashboard_on(self) -> bool:
        return self._dashboard is not None and self._dashboard.active

    def show(self, row: dict[str, Any], call=None) -> None:
        if self._dashboard_on():
            # It lists the calls itself (a line per call would scroll through it); a routed call's
            # attempt spans tell it the retries and fallbacks.
            attempts = [s["name"] for s in call.spans if s["name"].startswith("attempt ")] if call else []
            self._dashboard.show(row, attempts)
        elif self._thread is not None:
            self._queue.put(row)

    def done(self) -> None:
        logging.getLogger("mitmproxy.proxy.server").removeFilter(quiet_proxy_notes)
        if self._thread is not None:
            self._stopping.set()
            self._queue.put(None)
            self._thread.join(timeout=5)
            self._thread = None

    def _run(self) -> None:
        while True:
            row = self._queue.get()
            if row is not None:
                self._stopping.wait(PRINT_SECONDS)  # let a batch gather; shutdown cuts it short
            rows, stop = [row] if row is not None else [], row is None
            while True:
                try:
                    row = self._queue.get_nowait()
                except queue.Empty:
                    break
                if row is None:
                    stop = True
                else:
                    rows.append(row)
            if rows:
                color = self._console._color_system  # rich's choice for this output: None on a pipe
                self._console.file.write("".join((r if isinstance(r, str) else painted(r, color)) + "\n"
                                                 for r in rows))
                self._console.file.flush()
            if stop:
                return
