"""Safe defaults: loopback only, other hosts tunnelled untouched, no secret in the store, the
console line in place of mitmproxy's dump, and a clean shutdown that loses nothing."""

import datetime
import re
import socket
import ssl
import threading
from pathlib import Path

import anthropic
import openai
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from google import genai
from google.genai import types
from harness import query, start_gateway, store_files

SECRETS = ("sk-proj-SAFETY-secret-openai-999", "sk-ant-SAFETY-secret-anthropic-999", "AIzaSAFETYsecretgemini999")


def test_the_proxy_listens_on_loopback_only(gateway):
    listening = [line for line in gateway.process.lines if "proxy listening at" in line]
    assert listening[-1].endswith(f"127.0.0.1:{gateway.port}.")


def self_signed(tmp_path: Path) -> tuple[Path, Path, bytes]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "not-a-provider.test")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(1).not_valid_before(now).not_valid_after(now + datetime.timedelta(days=1))
            .sign(key, hashes.SHA256()))
    cert_path, key_path = tmp_path / "cert.pem", tmp_path / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return cert_path, key_path, cert.public_bytes(serialization.Encoding.DER)


def peer_cert_through_proxy(proxy_port: int, host: str, port: int) -> bytes:
    with socket.create_connection(("127.0.0.1", proxy_port), timeout=10) as raw:
        raw.sendall(f"CONNECT {host}:{port} HTTP/1.1\r\nHost: {host}:{port}\r\n\r\n".encode())
        assert raw.recv(4096).startswith(b"HTTP/1.1 200")
        ctx = ssl.create_default_context()
        ctx.check_hostname, ctx.verify_mode = False, ssl.CERT_NONE
        with ctx.wrap_socket(raw, server_hostname=host) as tls:
            return tls.getpeercert(binary_form=True)


def test_hosts_that_are_not_providers_are_tunnelled_not_decrypted(gateway, tmp_path):
    cert_path, key_path, der = self_signed(tmp_path)
    server_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_ctx.load_cert_chain(cert_path, key_path)
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]

    def serve():
        conn, _ = listener.accept()
        with server_ctx.wrap_socket(conn, server_side=True) as tls:
            try:
                tls.recv(1)  # until the client hangs up
            except OSError:
                pass  # a reset is how the client's close can arrive; nothing to check here

    threading.Thread(target=serve, daemon=True).start()
    try:
        assert peer_cert_through_proxy(gateway.port, "127.0.0.1", port) == der  # the server's own certificate
    finally:
        listener.close()
    # A provider host is decrypted: its certificate is issued by the mitmproxy CA.
    issued = x509.load_der_x509_certificate(peer_cert_through_proxy(gateway.port, "api.openai.com", 443))
    assert "mitmproxy" in issued.issuer.rfc4514_string()


def test_no_secret_reaches_the_store_or_the_terminal(gateway, customer):
    msg = [{"role": "user", "content": "hi"}]
    openai.OpenAI(api_key=SECRETS[0], max_retries=0, default_headers={
        "X-Tapgate-Customer-Identifier": customer}).chat.completions.create(model="gpt-4o", messages=msg)
    anthropic.Anthropic(api_key=SECRETS[1], max_retries=0, default_headers={
        "X-Tapgate-Customer-Identifier": customer}).messages.create(
        model="claude-sonnet-4-6", max_tokens=10, messages=msg)
    g = genai.Client(api_key=SECRETS[2], http_options=types.HttpOptions(
        headers={"X-Tapgate-Customer-Identifier": customer}))
    g.models.generate_content(model="gemini-2.5-flash", contents="hi")
    rows = gateway.rows(customer, 3)
    assert len({r["key_id"] for r in rows}) == 3 and all(r["key_id"].startswith("fp_") for r in rows)
    for path in store_files(gateway.db):  # the db, its WAL and shared memory, its journal
        data = path.read_bytes()
        for secret in SECRETS:
            assert secret.encode() not in data, f"{secret} found in {path.name}"
    output = "\n".join(gateway.process.lines)
    assert not any(secret in output for secret in SECRETS)


def test_each_call_prints_one_tapgate_line_instead_of_mitmproxys_dump(gateway, customer):
    openai.OpenAI(api_key="sk-x", max_retries=0, default_headers={"X-Tapgate-Customer-Identifier": customer}) \
        .chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "hi"}])
    gateway.rows(customer)
    line = gateway.process.wait_for(re.escape(customer))
    text = line.string
    assert "openai" in text and "gpt-4o-2024-08-06" in text and "200" in text and "14→37" in text
    assert not any(re.search(r"POST \S+/v1/chat/completions", ln) for ln in gateway.process.lines)


def test_a_clean_shutdown_flushes_every_record(mock, tmp_path):
    db = tmp_path / "t.db"
    process, port = start_gateway(mock, tmp_path / "conf", db)
    c = openai.OpenAI(api_key="sk-x", max_retries=0, base_url="https://api.openai.com/v1",
                      http_client=openai.DefaultHttpxClient(proxy=f"http://127.0.0.1:{port}",
                                                            verify=ssl.create_default_context(
                                                                cafile=tmp_path / "conf" / "mitmproxy-ca-cert.pem")))
    for _ in range(25):
        c.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "hi"}])
    assert process.stop() == 0  # SIGINT straight after the last reply
    assert query(db, "SELECT count(*) AS n, sum(input_tokens) AS t FROM requests") == [{"n": 25, "t": 25 * 14}]
