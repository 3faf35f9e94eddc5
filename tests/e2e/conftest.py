"""Session-wide real processes: one mock provider and one mitmdump with tapgate in front of it."""

from __future__ import annotations

import gc
import uuid
from dataclasses import dataclass
from pathlib import Path

import pytest
from harness import Process, query, start_gateway, start_mock, wait_rows


@dataclass
class Gateway:
    process: Process
    port: int
    db: Path
    ca: Path
    mock_port: int

    @property
    def proxy(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def rows(self, customer: str, count: int = 1) -> list[dict]:
        return wait_rows(
            self.db, "SELECT * FROM requests WHERE customer_identifier = ? ORDER BY started_at", (customer,), count
        )

    def spans(self, trace_id: str) -> list[dict]:
        return query(self.db, "SELECT * FROM spans WHERE trace_id = ? ORDER BY started_at", (trace_id,))


@pytest.fixture(scope="session")
def mock():
    process, port = start_mock()
    yield port
    process.stop()


@pytest.fixture(scope="session")
def gateway(mock, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("gateway")
    process, port = start_gateway(mock, tmp / "conf", tmp / "tapgate.db")
    gw = Gateway(process, port, tmp / "tapgate.db", tmp / "conf" / "mitmproxy-ca-cert.pem", mock)
    yield gw
    assert process.stop() == 0, "\n".join(process.lines[-30:])


@pytest.fixture(autouse=True)
def through_the_gateway(gateway, monkeypatch):
    """What a user's shell-init sets: the proxy, and trust in the mitmproxy CA."""
    monkeypatch.setenv("HTTPS_PROXY", gateway.proxy)
    monkeypatch.setenv("HTTP_PROXY", gateway.proxy)
    monkeypatch.setenv("SSL_CERT_FILE", str(gateway.ca))
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    for name in ("OPENAI_BASE_URL", "ANTHROPIC_BASE_URL", "GOOGLE_GEMINI_BASE_URL", "OPENAI_API_KEY"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def customer():
    """A customer id unique to the test, to find its rows."""
    return f"cust-{uuid.uuid4().hex[:10]}"


@pytest.fixture(autouse=True)
def collect_leaked_clients():
    """After each test, outside any event loop: an async SDK client a test left unclosed is collected
    here, where its close has no loop to run on, rather than later in another test's loop, whose
    exception handler would then fail that test with "Event loop is closed"."""
    yield
    gc.collect()
