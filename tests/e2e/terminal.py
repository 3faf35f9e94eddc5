"""Real terminals for the dashboard tests: a private tmux server whose panes run a command at a fixed
size, and are read back as text (what a user would see)."""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import time
import uuid

TMUX = shutil.which("tmux")
# The shell of a test has the gateway's proxy set; the programs in the panes must not inherit it.
UNPROXIED = {k: v for k, v in os.environ.items() if k.upper() not in ("HTTPS_PROXY", "HTTP_PROXY", "NO_PROXY")}


class Terminals:
    """One tmux server on its own socket (never the user's), ended with `close()`."""

    def __init__(self) -> None:
        self.socket = f"tapgate-test-{uuid.uuid4().hex[:8]}"
        # -f /dev/null: none of the user's tmux config; an idle session keeps the server up, and
        # remain-on-exit keeps a finished program's pane readable.
        self.tmux("-f", "/dev/null", "new-session", "-d", "-s", "idle")
        self.tmux("set-option", "-g", "remain-on-exit", "on")

    def tmux(self, *args: str) -> str:
        done = subprocess.run([TMUX, "-L", self.socket, *args], capture_output=True, text=True, env=UNPROXIED,
                              timeout=10)
        assert done.returncode == 0, f"tmux {' '.join(args)}: {done.stderr}"
        return done.stdout

    def run(self, name: str, argv: list[str], width: int, height: int) -> str:
        """Start argv in a new pane of width x height; the pane's name. A shell around it prints the
        exit status: tmux 3.3 can miss the exit of a program that ends at once (it stays a zombie
        and the pane never reads as dead). `trap : INT` lets the shell outlive a Ctrl-C to say so,
        while the program still gets the signal's default handling."""
        wrapper = 'trap : INT; "$@"; echo "[exited $?]"'
        self.tmux("new-session", "-d", "-s", name, "-x", str(width), "-y", str(height), "--",
                  "sh", "-c", wrapper, "sh", *argv)
        return name

    def text(self, name: str, history: bool = False) -> str:
        """The screen; with history, also what scrolled off it, wrapped lines joined."""
        return self.tmux("capture-pane", "-p", "-t", name, *(("-J", "-S", "-") if history else ()))

    def exit_status(self, name: str) -> int | None:
        """None while the program runs."""
        m = re.search(r"^\[exited (\d+)\]$", self.text(name, history=True), re.M)
        return int(m.group(1)) if m else None

    def wait(self, name: str, check, timeout: float = 20, history: bool = False) -> str:
        """The pane's text once `check(text)` is true. The pane is read every 0.1 s: tmux has no event
        for "the screen now shows X", so this polls, with a deadline."""
        deadline = time.monotonic() + timeout
        while True:
            text = self.text(name, history)
            if check(text):
                return text
            if time.monotonic() > deadline:
                raise AssertionError(f"pane {name!r} never showed what was expected; it shows:\n{text}")
            time.sleep(0.1)

    def send(self, name: str, *keys: str) -> None:
        self.tmux("send-keys", "-t", name, *keys)

    def close(self) -> None:
        subprocess.run([TMUX, "-L", self.socket, "kill-server"], capture_output=True, timeout=10)


def free_port() -> int:
    """A loopback port free a moment ago: a gateway in a pane cannot report the one it got."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
