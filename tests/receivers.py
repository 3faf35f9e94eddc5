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


class OtlpReceiver:
    """A loopback OTLP/HTTP collector: each POST /v1/traces is decoded with the official protobuf types
    (opentelemetry-proto) and its spans put on `spans` with the export's headers; while `hold` is set,
    answers wait for `release` (a collector that does not answer)."""

    def __init__(self) -> None:
        from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
            ExportTraceServiceRequest,
            ExportTraceServiceResponse,
        )

        self.spans: queue.Queue = queue.Queue()
        self.headers: list[dict[str, str]] = []
        self.hold, self.release, self.arrived = threading.Event(), threading.Event(), threading.Event()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                data = self.rfile.read(int(self.headers["Content-Length"]))
                receiver.arrived.set()
                if receiver.hold.is_set():
                    receiver.release.wait(60)
                export = ExportTraceServiceRequest.FromString(data)
                receiver.headers.append({k.lower(): v for k, v in self.headers.items()})
                for resource_spans in export.resource_spans:
                    for scope_spans in resource_spans.scope_spans:
                        for span in scope_spans.spans:
                            receiver.spans.put((resource_spans.resource, span))
                body = ExportTraceServiceResponse().SerializeToString()
                self.send_response(200 if self.path == "/v1/traces" else 404)
                self.send_header("Content-Type", "application/x-protobuf")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def __enter__(self) -> OtlpReceiver:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.release.set()
        self.server.shutdown()
        self.server.server_close()

    def span(self, predicate, timeout: float = 30):
        """The first span received (in order) for which predicate(span) holds; others are kept aside."""
        import time

        deadline, aside, found = time.monotonic() + timeout, [], None
        try:
            while found is None:
                resource, span = self.spans.get(timeout=max(deadline - time.monotonic(), 0.01))
                if predicate(span):
                    found = (resource, span)
                else:
                    aside.append((resource, span))
        finally:
            for item in aside:
                self.spans.put(item)
        return found


def attrs(span) -> dict:
    """An OTLP span's attributes as plain values."""
    out = {}
    for kv in span.attributes:
        kind = kv.value.WhichOneof("value")
        value = getattr(kv.value, kind)
        out[kv.key] = [getattr(v, v.WhichOneof("value")) for v in value.values] if kind == "array_value" else value
    return out
