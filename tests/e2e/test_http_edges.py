"""Passthrough at the HTTP level: bodies over the size limit, smuggling attempts and an upstream that
cannot be reached are answered in the provider's JSON error shape (not mitmproxy's HTML page), and
recorded as what they were."""

from __future__ import annotations

import http.client
import json
import socket
import ssl

import openai
import pytest
from harness import start_gateway, wait_rows
from terminal import free_port

LIMIT = 4_000_000  # small, so a 50 MB upload is far past it
UPLOAD = 50_000_000
MSG = [{"role": "user", "content": "hi"}]


@pytest.fixture(scope="module")
def edge(mock, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("edges")
    process, port = start_gateway(mock, tmp / "conf", tmp / "t.db", "--set", f"tapgate_max_request_bytes={LIMIT}")
    yield process, port, tmp
    assert process.stop() == 0, "\n".join(process.lines[-30:])


def peak_rss(process) -> int:
    """The gateway's high-water mark of resident memory, in bytes."""
    status = open(f"/proc/{process.proc.pid}/status").read()
    return int(next(ln.split()[1] for ln in status.splitlines() if ln.startswith("VmHWM:"))) * 1024


def tls_to(port: int, ca, host: str) -> ssl.SSLSocket:
    """A raw TLS connection to `host` through the proxy, for requests no SDK would send."""
    raw = socket.create_connection(("127.0.0.1", port), timeout=20)
    raw.sendall(f"CONNECT {host}:443 HTTP/1.1\r\nHost: {host}:443\r\n\r\n".encode())
    assert raw.recv(4096).startswith(b"HTTP/1.1 200")
    return ssl.create_default_context(cafile=ca).wrap_socket(raw, server_hostname=host)


def read_all(sock: ssl.SSLSocket) -> bytes:
    out = b""
    while chunk := sock.recv(65536):
        out += chunk
    return out


def test_a_body_over_the_limit_gets_a_413_in_the_providers_shape_unbuffered(edge, customer):
    process, port, tmp = edge
    ca = tmp / "conf" / "mitmproxy-ca-cert.pem"
    before = peak_rss(process)
    client = openai.OpenAI(api_key="sk-x", max_retries=0, default_headers={"X-Tapgate-Customer-Identifier": customer},
                           http_client=openai.DefaultHttpxClient(proxy=f"http://127.0.0.1:{port}",
                                                                 verify=ssl.create_default_context(cafile=ca)))
    with pytest.raises(openai.APIStatusError) as e:  # Content-Length announced: refused before it is read
        client.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "x" * UPLOAD}])
    assert e.value.status_code == 413 and e.value.code == "request_too_large"
    assert e.value.body["type"] == "invalid_request_error"

    # Chunked: no size announced; cut where it passes the limit, the rest read and dropped.
    conn = http.client.HTTPSConnection("api.anthropic.com", context=ssl.create_default_context(cafile=ca))
    conn.set_tunnel("api.anthropic.com")
    conn.sock = tls_to(port, ca, "api.anthropic.com")
    chunks = (b"x" * 1_000_000 for _ in range(UPLOAD // 1_000_000))
    conn.request("POST", "/v1/messages", body=chunks, encode_chunked=True,
                 headers={"x-api-key": "sk-ant-x", "content-type": "application/json",
                          "X-Tapgate-Customer-Identifier": customer})
    reply = conn.getresponse()
    assert reply.status == 413
    assert json.loads(reply.read())["error"]["type"] == "request_too_large"  # Anthropic's shape

    rows = wait_rows(tmp / "t.db", "SELECT * FROM requests WHERE customer_identifier = ? ORDER BY started_at",
                     (customer,), count=2)
    assert [(r["provider"], r["status"], r["status_code"]) for r in rows] == [
        ("openai", "refused", 413), ("anthropic", "refused", 413)]
    assert all("tapgate_max_request_bytes" in r["error"] for r in rows)
    assert peak_rss(process) - before < 3 * LIMIT  # neither upload was held whole (50 MB each)


def test_a_smuggling_attempt_is_refused_and_recorded_as_one(edge, customer):
    process, port, tmp = edge
    body = json.dumps({"model": "gpt-4o", "messages": MSG}).encode()
    tls = tls_to(port, tmp / "conf" / "mitmproxy-ca-cert.pem", "api.openai.com")
    tls.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: api.openai.com\r\nAuthorization: Bearer sk-x\r\n"
                b"X-Tapgate-Customer-Identifier: " + customer.encode() + b"\r\nContent-Type: application/json\r\n"
                b"Content-Length: %d\r\nTransfer-Encoding: chunked\r\n\r\n" % len(body) + body)
    head, _, answer = read_all(tls).partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 400") and b"application/json" in head
    assert "request smuggling" in json.loads(answer)["error"]["message"]
    [row] = wait_rows(tmp / "t.db", "SELECT * FROM requests WHERE customer_identifier = ?", (customer,))
    assert (row["status"], row["status_code"]) == ("refused", 400) and "request smuggling" in row["error"]


def test_an_unreachable_upstream_answers_in_the_providers_shape(mock, tmp_path, customer):
    dead = free_port()  # nothing listens there: the connection is refused
    # DeepSeek is not among the hosts the harness sends to the mock: this sends it nowhere.
    process, port = start_gateway(mock, tmp_path / "conf", tmp_path / "t.db", "--set", "tapgate_router=",
                                  "--map-remote", f"@^https://api.deepseek.com@http://127.0.0.1:{dead}")
    try:
        ca = ssl.create_default_context(cafile=tmp_path / "conf" / "mitmproxy-ca-cert.pem")
        client = openai.OpenAI(api_key="sk-x", max_retries=0, base_url="https://api.deepseek.com/v1",
                               default_headers={"X-Tapgate-Customer-Identifier": customer},
                               http_client=openai.DefaultHttpxClient(proxy=f"http://127.0.0.1:{port}", verify=ca))
        with pytest.raises(openai.APIStatusError) as e:
            client.chat.completions.create(model="deepseek-chat", messages=MSG)
        assert e.value.status_code == 502 and e.value.code == "upstream_error"
        assert e.value.body["type"] == "server_error"  # OpenAI's shape, as DeepSeek speaks it
        [row] = wait_rows(tmp_path / "t.db", "SELECT * FROM requests WHERE customer_identifier = ?", (customer,))
        assert (row["provider"], row["status"], row["status_code"]) == ("deepseek", "upstream_error", 502)
        assert "could not reach the provider" in row["error"]
    finally:
        assert process.stop() == 0, "\n".join(process.lines[-30:])
