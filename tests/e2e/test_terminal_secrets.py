"""The gateway's terminal at 200 columns (tmux): flows to provider hosts that are not recorded calls (a
Gemini model list with `?key=`, an unknown path) are printed redacted, recorded ones too, and
mitmproxy's connection lines stay out of it."""

from __future__ import annotations

import json
import re
import ssl
import urllib.error
import urllib.request

import pytest
from harness import gateway_command, wait_rows
from terminal import TMUX, Terminals, free_port

pytestmark = pytest.mark.skipif(TMUX is None, reason="tmux is not installed (apt-get install tmux); "
                                                     "these tests read the gateway from a real terminal")
KEY = "AIzaTERMINALsecretKey0123456789abcdefghi"  # 39 characters, as Google's are


@pytest.fixture
def terminals():
    t = Terminals()
    yield t
    t.close()


def test_no_key_reaches_the_gateways_terminal(gateway, mock, terminals, tmp_path, customer):
    port, db = free_port(), tmp_path / "terminal.db"
    pane = terminals.run("gateway", gateway_command(mock, gateway.ca.parent, db, "--set", "tapgate_router=",
                                                    port=port), 200, 50)
    terminals.wait(pane, lambda text: "tapgate ready" in text)

    proxied = urllib.request.build_opener(
        urllib.request.ProxyHandler({"https": f"http://127.0.0.1:{port}"}),
        urllib.request.HTTPSHandler(context=ssl.create_default_context(cafile=gateway.ca)))

    def send(url: str, body: dict | None = None, headers: dict | None = None) -> int:
        data = json.dumps(body).encode() if body is not None else None
        try:
            with proxied.open(urllib.request.Request(url, data, {"content-type": "application/json",
                                                                  **(headers or {})}), timeout=10) as r:
                return r.status
        except urllib.error.HTTPError as e:
            return e.code

    gemini = "https://generativelanguage.googleapis.com/v1beta"
    assert send(f"{gemini}/models?key={KEY}&pageSize=50") == 200  # not a call: not recorded
    send(f"https://api.openai.com/v1/not-an-endpoint?api_key={KEY}", {})
    assert send(f"{gemini}/models/gemini-2.5-flash:generateContent?key={KEY}",
                {"contents": [{"parts": [{"text": "hi"}]}]}, {"X-Tapgate-Customer-Identifier": customer}) == 200
    wait_rows(db, "SELECT * FROM requests WHERE customer_identifier = ?", (customer,))

    text = terminals.wait(pane, lambda t: customer in t and "not-an-endpoint" in t and "/v1beta/models?" in t,
                          history=True)
    assert KEY not in text.replace("\n", "")  # nor split across a wrapped line
    assert re.search(r"GET generativelanguage\.googleapis\.com/v1beta/models\?key=\S*REDACTED\S* 200", text)
    assert not re.search(r"(client|server) (connect|disconnect)", text)
