"""A start by the README's own run command never has a non-loopback listening socket, at any moment:
the process's sockets are watched from the moment it is spawned until it is ready."""

from __future__ import annotations

import ctypes
import os
import re
import shlex
import socket

from harness import BIN, ROOT, Process

# pidfd_getfd(2): the same number on every Linux architecture (the generic syscall table).
SYS_PIDFD_GETFD = 438
_libc = ctypes.CDLL(None, use_errno=True)


def readme_run_command() -> list[str]:
    """The mitmdump command of the README's "Install and run" block, as a user would paste it."""
    section = (ROOT / "README.md").read_text().split("## Install and run\n", 1)[1]
    block = re.search(r"```sh\n(.+?)\n```", section, re.S).group(1)
    line = next(ln for ln in block.splitlines() if "mitmdump" in ln)
    words = shlex.split(line, comments=True)
    start = next(i for i, w in enumerate(words) if w.endswith("bin/mitmdump"))
    end = next((i for i, w in enumerate(words) if i > start and w in ("&&", ";", "|")), len(words))
    return words[start:end]


class SocketWatch:
    """The listening sockets a process holds, seen through its fd table. Reading /proc/net/tcp takes
    ~10 ms on a busy machine, longer than a wildcard listener lives, so each new socket fd is copied
    into this process (pidfd_getfd) and asked its address directly: the copy outlives the original."""

    def __init__(self, pid: int) -> None:
        self.pid, self.pidfd = pid, os.pidfd_open(pid)
        self.listening: dict[str, str] = {}  # socket inode -> address

    def poll(self) -> None:
        try:
            fds = os.listdir(f"/proc/{self.pid}/fd")
        except FileNotFoundError:
            return
        for fd in fds:
            try:
                target = os.readlink(f"/proc/{self.pid}/fd/{fd}")
            except OSError:
                continue
            if target.startswith("socket:[") and target not in self.listening:
                self._inspect(int(fd), target)

    def _inspect(self, fd: int, inode: str) -> None:
        copy = _libc.syscall(SYS_PIDFD_GETFD, self.pidfd, fd, 0)
        if copy < 0:
            return  # gone already, or not a socket any more
        try:
            sock = socket.socket(fileno=copy)
        except OSError:
            os.close(copy)
            return
        with sock:
            if sock.type == socket.SOCK_STREAM and sock.getsockopt(socket.SOL_SOCKET, socket.SO_ACCEPTCONN):
                host, port = sock.getsockname()[:2]
                self.listening[inode] = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"

    def close(self) -> None:
        os.close(self.pidfd)


def loopback(addr: str) -> bool:
    host = addr.rpartition(":")[0].strip("[]")
    return host.startswith("127.") or host in ("::1",) or host.startswith("::ffff:127.")


def test_the_readmes_run_command_never_listens_beyond_loopback(tmp_path):
    command = readme_run_command()
    assert command[:3] == [".venv/bin/mitmdump", "-s", "addons/gateway.py"]
    # This checkout's venv; a fresh HOME for ~/.mitmproxy and ~/.tapgate; free ports, since tests run in parallel.
    argv = [str(BIN / "mitmdump"), *command[1:], "--listen-port", "0", "--set", "tapgate_router=127.0.0.1:0"]
    env = {**os.environ, "HOME": str(tmp_path), "PYTHONUNBUFFERED": "1"}
    process = Process.start(argv, env=env, cwd=ROOT)
    watch = SocketWatch(process.proc.pid)
    try:
        polls = 0
        while not any("tapgate ready" in ln for ln in process.lines):
            assert process.proc.poll() is None, "\n".join(process.lines[-20:])
            watch.poll()
            polls += 1
        for _ in range(50):  # and a little after
            watch.poll()
    finally:
        watch.close()
        assert process.stop() == 0, "\n".join(process.lines[-20:])
    seen = set(watch.listening.values())
    # mitmproxy's own word on each bind as well: the watch shares two cores with the rest of the suite and
    # may be off the CPU for the few milliseconds a wildcard listener lives.
    reported = re.findall(r"proxy listening at (\S+):(\d+)", "\n".join(process.lines))
    assert any(a.endswith(f":{reported[-1][1]}") for a in seen), f"the watch never saw the proxy's socket: {seen}"
    assert all(loopback(a) for a in seen), f"non-loopback listeners during start-up: {seen} ({polls} polls)"
    assert all(loopback(f"{host}:{port}") for host, port in reported), f"mitmdump reported {reported}"
