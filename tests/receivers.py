"""Loopback alert receivers for the tests: an HTTP server that records JSON posts and answers as told
(Slack and generic webhooks), and an aiosmtpd SMTP server that records messages."""

from __future__ import annotations

import email
import email.policy
import json
import queue
import socket
import threading
from dataclasses import dataclass
from email.message import EmailMessage
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult


@dataclass
class Post:
    path: str
    body: dict
    status: int  # what the receiver answered


class HttpReceiver:
    """Every POST is put on `posts` before it is answered; `fail[path]` lists statuses to answer
    first (then 200); while `hold` is set, answers wait for `release`."""

    def __init__(self) -> None:
        self.posts: queue.Queue[Post] = queue.Queue()
        self.fail: dict[str, list[int]] = {}
        self.hold = threading.Event()
        self.release = threading.Event()
        self.arrived = threading.Event()  # set on every request, before any hold
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                receiver.arrived.set()
                if receiver.hold.is_set():
                    receiver.release.wait(30)
                statuses = receiver.fail.get(self.path, [])
                status = statuses.pop(0) if statuses else 200
                receiver.posts.put(Post(self.path, body, status))
                self.send_response(status)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, *args) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True)

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}{path}"

    def __enter__(self) -> HttpReceiver:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.release.set()
        self.server.shutdown()
        self.server.server_close()

    def next(self, timeout: float = 10) -> Post:
        return self.posts.get(timeout=timeout)

    def drain(self) -> list[Post]:
        """Everything received so far and not yet taken (call once senders have stopped)."""
        out = []
        while not self.posts.empty():
            out.append(self.posts.get_nowait())
        return out


class SmtpReceiver:
    """aiosmtpd on a free loopback port; messages are put on `messages`, logins on `logins`."""

    def __init__(self, password: str | None = None) -> None:
        self.messages: queue.Queue[EmailMessage] = queue.Queue()
        self.logins: queue.Queue[tuple[str, str]] = queue.Queue()
        self.password = password
        with socket.socket() as s:  # aiosmtpd's Controller needs a port number before it starts
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        kwargs = {"authenticator": self._authenticate, "auth_require_tls": False} if password else {}
        self.controller = Controller(self, hostname="127.0.0.1", port=self.port, **kwargs)

    def _authenticate(self, server, session, envelope, mechanism, auth_data) -> AuthResult:
        login, password = auth_data.login.decode(), auth_data.password.decode()
        self.logins.put((login, password))
        return AuthResult(success=password == self.password, handled=False)  # handled=False: aiosmtpd answers 535

    async def handle_DATA(self, server, session, envelope) -> str:
        self.messages.put(email.message_from_bytes(envelope.content, policy=email.policy.default))
        return "250 OK"

    def __enter__(self) -> SmtpReceiver:
        self.controller.start()
        return self

    def __exit__(self, *exc) -> None:
        self.controller.stop()

    def next(self, timeout: float = 10) -> EmailMessage:
        return self.messages.get(timeout=timeout)
