"""The router's own HTTP-level errors (unknown path or method, headers over 8 KB, malformed HTTP), sent
raw: answered in OpenAI's error shape (Anthropic's under /v1/messages) and recorded."""

from __future__ import annotations

import json
import socket
import urllib.error
import urllib.request
from datetime import UTC, datetime
from urllib.parse import urlsplit

from harness import router_url, wait_rows
from specs import ANTHROPIC_ERROR, OPENAI_ERROR, conforms

DIRECT = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # the router is on loopback


def send(url: str, method: str, headers: dict | None = None, body: bytes | None = None):
    try:
        with DIRECT.open(urllib.request.Request(url, body, headers or {}, method=method), timeout=10) as r:
            return r.status, r.headers, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.headers, e.read()


def raw(base: str, data: bytes) -> tuple[int, dict]:
    """Send bytes no HTTP client would, read the answer to the end."""
    parts = urlsplit(base)
    with socket.create_connection((parts.hostname, parts.port), timeout=10) as s:
        s.sendall(data)
        out = b""
        while chunk := s.recv(65536):
            out += chunk
    head, _, body = out.partition(b"\r\n\r\n")
    assert b"application/json" in head.lower(), head
    return int(head.split()[1]), json.loads(body)


def test_unknown_paths_and_methods_in_the_clients_dialect(gateway, customer):
    base = router_url(gateway.process).removesuffix("/v1")
    tag = {"X-Tapgate-Customer-Identifier": customer}
    status, _, body = send(f"{base}/v1/chat/completion", "POST", tag, b"{}")  # a typo
    assert status == 404 and json.loads(body)["error"]["code"] == "unknown_url"
    conforms("openai", OPENAI_ERROR, json.loads(body))
    status, headers, body = send(f"{base}/v1/chat/completions", "GET", tag)
    assert status == 405 and headers["allow"] == "POST" and json.loads(body)["error"]["code"] == "method_not_allowed"
    status, _, body = send(f"{base}/v1/messages/count", "POST", tag, b"{}")
    assert status == 404
    conforms("anthropic", ANTHROPIC_ERROR, json.loads(body))
    rows = gateway.rows(customer, 3)
    assert [(r["mode"], r["status"], r["status_code"]) for r in rows] == [
        ("router", "refused", 404), ("router", "refused", 405), ("router", "refused", 404)]
    assert rows[0]["path"] == "/v1/chat/completion" and "Unknown request URL" in rows[0]["error"]


def test_oversized_headers_and_malformed_http_in_openais_shape(gateway):
    base = router_url(gateway.process).removesuffix("/v1")
    since = datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    status, body = raw(base, b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 9000 + b"\r\n\r\n")
    assert status in (400, 431) and body["error"]["code"] == "request_headers_too_large"
    conforms("openai", OPENAI_ERROR, body)
    status, body = raw(base, b"NOT HTTP AT ALL\r\n\r\n")
    assert status == 400 and body["error"]["code"] == "invalid_http_request"
    rows = wait_rows(gateway.db, "SELECT * FROM requests WHERE mode = 'router' AND started_at >= ? AND status_code "
                     "IN (400, 431) AND error LIKE 'The request%' ORDER BY started_at", (since,), count=2)
    assert [r["status"] for r in rows] == ["refused", "refused"]
    assert "headers are too large" in rows[0]["error"] and "not valid HTTP" in rows[1]["error"]
