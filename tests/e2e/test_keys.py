"""Gateway keys through a real gateway: keys made with `tapgate keys` name the caller by proxy
authentication or X-Tapgate-Key, bad keys are refused in the caller's dialect, changes apply while the
gateway runs, and 200 concurrent calls on a key never spend past its cap.

The gateway here is this module's own, with `require_key: true`, so its budgets and refusals stay out
of the session gateway's store (which other tests read whole)."""

import asyncio
import base64
import io
import json
import re
import socket
import ssl
import urllib.request
from contextlib import closing, redirect_stdout
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import anthropic
import openai
import pytest
from harness import Process, query, start_gateway, wait_rows

from cli import keyadmin
from cli.main import main
from core.schema import open_db

KEY = "sk-test-e2e-SECRET-openai-0123456789"
MSG = [{"role": "user", "content": "hi"}]
CALL_USD = 14 * 2.5e-6 + 37 * 10e-6  # the mock's gpt-4o reply: 14 input and 37 output tokens
CHANGED = r"tapgate: \d+ gateway keys?"  # the KeyRing's line once it has re-read a change
# Spend reserves a call's worst case before it goes upstream: ceil(prompt_chars / 2) input tokens
# (prompt_chars = the JSON of `messages`) plus max_tokens output, at gpt-4o's prices. With max_tokens=37
# that is at least what the call costs, so settled spend only ever falls short of what was reserved.
WORST_USD = -(-len(json.dumps(MSG)) // 2) * 2.5e-6 + 37 * 10e-6
# Room for exactly 10 calls: ten cost 10 × CALL_USD, and the tenth's worst case fits beside nine settled
# calls; an eleventh never fits.
CAP_USD = round(9 * CALL_USD + WORST_USD, 9)

# Each test's key, with the flags it is created with. All are made at once, so the gateway is waited
# for once: its key ring re-reads the store about every second.
KEYS = {
    "plain": (),
    "revoke": (),
    "rotate": ("--budget", "100requests/day"),
    "models": ("--models", "gpt-4o-mini*", "--models", "o3"),
    "ten": ("--budget", "10requests/day"),
    "usd": ("--budget", f"{CAP_USD}usd/day"),
    "update": ("--budget", "100requests/day"),
}


@dataclass
class Keyed:
    process: Process
    port: int
    db: Path
    ca: Path
    mock_port: int
    made: dict[str, tuple[str, str]]  # name -> (key id, secret)

    def verify(self) -> ssl.SSLContext:
        return ssl.create_default_context(cafile=self.ca)

    def rows(self, sql_where: str, params: tuple, count: int = 1) -> list[dict]:
        return wait_rows(self.db, f"SELECT * FROM requests WHERE {sql_where} ORDER BY started_at", params, count)


@pytest.fixture(scope="module")
def gw(mock, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("keyed")
    (tmp / "tapgate.yaml").write_text("require_key: true\n")
    process, port = start_gateway(mock, tmp / "conf", tmp / "t.db", "--set", f"tapgate_config={tmp / 'tapgate.yaml'}")
    made = {}
    for name, flags in KEYS.items():
        with redirect_stdout(io.StringIO()) as printed:
            assert main(["keys", "create", "--db", str(tmp / "t.db"), "--name", name, "--json", *flags]) == 0
        key = json.loads(printed.getvalue())
        made[name] = key["id"], key["secret"]
    with closing(open_db(tmp / "t.db")) as db:  # the CLI refuses a past expiry: a key made two hours ago for one hour
        key, secret = keyadmin.create_key(db, "old", [], expires="1h", now=datetime.now(UTC) - timedelta(hours=2))
    made["expired"] = key.id, secret
    wait_for_keys(process, tmp / "t.db")
    yield Keyed(process, port, tmp / "t.db", tmp / "conf" / "mitmproxy-ca-cert.pem", mock, made)
    assert process.stop() == 0, "\n".join(process.lines[-30:])


def wait_for_keys(process: Process, db: Path) -> None:
    """Until the gateway's key ring holds every key in the store (keys are never deleted, so the count
    names this state)."""
    (count,) = query(db, "SELECT count(*) AS n FROM keys")
    process.wait_for(rf"tapgate: {count['n']} gateway keys? ")


def keys(gw: Keyed, *argv: str):
    """Run `tapgate keys ...` on the gateway's store, and wait until the gateway has read the change."""
    mark = len(gw.process.lines)
    with redirect_stdout(io.StringIO()) as printed:
        assert main(["keys", *argv, "--db", str(gw.db)]) == 0
    gw.process.wait_for(CHANGED, start=mark)
    out = printed.getvalue()
    return json.loads(out) if out.startswith("{") else out


def client(gw: Keyed, secret: str | None = None, header: str | None = None) -> openai.OpenAI:
    """An openai client through the gateway; `secret` goes in the proxy URL, `header` in X-Tapgate-Key."""
    proxy = f"http://{secret + '@' if secret else ''}127.0.0.1:{gw.port}"
    return openai.OpenAI(api_key=KEY, max_retries=0,
                         http_client=openai.DefaultHttpxClient(proxy=proxy, verify=gw.verify()),
                         default_headers={"X-Tapgate-Key": header} if header else None)


def chat(c: openai.OpenAI, model: str = "gpt-4o", **kwargs):
    return c.chat.completions.create(model=model, messages=MSG, **kwargs)


def mock_saw(gw: Keyed, user: str) -> dict:
    """The request the mock received for the call whose body named this user."""
    with urllib.request.urlopen(f"http://127.0.0.1:{gw.mock_port}/_mock/requests") as r:
        return next(req for req in json.load(r) if json.loads(req["body"] or "{}").get("user") == user)


def test_proxy_auth_and_header_name_the_key_and_never_go_upstream(gw, customer):
    key_id, secret = gw.made["plain"]
    assert chat(client(gw, secret), user=customer).usage.prompt_tokens == 14
    assert chat(client(gw, header=secret), user=f"{customer}-h").usage.prompt_tokens == 14
    rows = gw.rows("key_id = ?", (key_id,), 2)
    assert [(r["status"], r["customer_identifier"]) for r in rows] == [("ok", customer), ("ok", f"{customer}-h")]
    for user in (customer, f"{customer}-h"):
        seen = mock_saw(gw, user)
        assert "proxy-authorization" not in seen["headers"] and "x-tapgate-key" not in seen["headers"]
        assert secret not in json.dumps(seen)
    assert not query(gw.db, "SELECT id FROM requests WHERE request_body LIKE ?", (f"%{secret}%",))
    assert secret not in "\n".join(gw.process.lines)


def test_unknown_keys_are_refused_in_each_dialect(gw, customer):
    with pytest.raises(openai.APIConnectionError) as e:
        chat(client(gw, "tg-not-a-key"))
    cause = e.value.__cause__  # the SDK's HTTP library's ProxyError
    assert type(cause).__name__ == "ProxyError" and "407" in str(cause)

    with pytest.raises(openai.AuthenticationError) as e:
        chat(client(gw, header="tg-not-a-key"), user=customer)
    assert e.value.body == {"message": "The gateway key in X-Tapgate-Key is not known to this gateway.",
                            "type": "authentication_error", "param": "X-Tapgate-Key", "code": "invalid_gateway_key"}
    a = anthropic.Anthropic(api_key="sk-ant", max_retries=0, default_headers={"X-Tapgate-Key": "tg-not-a-key"},
                            http_client=openai.DefaultHttpxClient(proxy=f"http://127.0.0.1:{gw.port}",
                                                                  verify=gw.verify()))
    with pytest.raises(anthropic.AuthenticationError) as e:
        a.messages.create(model="claude-sonnet-4-6", max_tokens=10, messages=MSG)
    assert e.value.body["type"] == "error" and e.value.body["error"]["type"] == "authentication_error"
    assert "not known" in e.value.body["error"]["message"]
    (row,) = gw.rows("customer_identifier = ?", (customer,))
    assert (row["status_code"], row["status"]) == (401, "refused")


def test_revoke_while_running(gw):
    key_id, secret = gw.made["revoke"]
    pooled = client(gw, secret)
    chat(pooled)
    chat(client(gw, header=secret))
    assert keys(gw, "revoke", key_id).startswith(f"revoked key {key_id}")
    with pytest.raises(openai.AuthenticationError, match="was revoked"):
        chat(client(gw, header=secret))
    with pytest.raises(openai.AuthenticationError, match="was revoked"):
        chat(pooled)  # its tunnel authenticated before the revoke: refused all the same
    with pytest.raises(openai.APIConnectionError):
        chat(client(gw, secret))  # a new tunnel: 407 to the CONNECT
    assert [r["status"] for r in gw.rows("key_id = ?", (key_id,), 4)] == ["ok", "ok", "refused", "refused"]


def test_rotate_keeps_the_id_and_retires_the_old_secret(gw):
    key_id, old = gw.made["rotate"]
    chat(client(gw, header=old))
    rotated = keys(gw, "rotate", key_id, "--json")
    assert rotated["id"] == key_id and rotated["secret"] != old
    with pytest.raises(openai.AuthenticationError, match="not known"):
        chat(client(gw, header=old))
    chat(client(gw, header=rotated["secret"]))
    chat(client(gw, rotated["secret"]))
    assert [r["status"] for r in gw.rows("key_id = ?", (key_id,), 3)] == ["ok", "ok", "ok"]  # the refusal names no key


def test_update_applies_to_the_running_gateway(gw):
    """`keys update` on a key in use: a lowered budget refuses the next call, its removal lets calls
    through again, and a models change applies as well; spend so far counts against the new cap."""
    key_id, secret = gw.made["update"]
    c = client(gw, header=secret)
    chat(c)
    chat(c)  # two of a hundred a day
    updated = keys(gw, "update", key_id, "--budget", "2requests/day", "--rpm", "30", "--json")
    assert (updated["budgets"], updated["rate_limit"]) == (["2requests/day"], {"rpm": 30})
    with pytest.raises(openai.RateLimitError) as e:
        chat(c)
    assert e.value.code == "budget_exceeded" and key_id in e.value.message
    keys(gw, "update", key_id, "--budget", "none")
    chat(c)
    assert keys(gw, "update", key_id, "--models", "o3", "--json")["models"] == ["o3"]
    with pytest.raises(openai.PermissionDeniedError):
        chat(c)
    assert [r["status"] for r in gw.rows("key_id = ?", (key_id,), 5)] == ["ok", "ok", "refused", "ok", "refused"]


def test_an_expired_key_is_refused(gw):
    key_id, secret = gw.made["expired"]
    with pytest.raises(openai.AuthenticationError, match="expired at"):
        chat(client(gw, header=secret))
    with pytest.raises(openai.APIConnectionError):
        chat(client(gw, secret))
    (row,) = gw.rows("key_id = ?", (key_id,))
    assert row["status"] == "refused"


def test_model_globs(gw):
    key_id, secret = gw.made["models"]
    with pytest.raises(openai.PermissionDeniedError) as e:
        chat(client(gw, secret))
    assert e.value.code == "model_not_allowed" and e.value.body["param"] == "model"
    chat(client(gw, secret), model="gpt-4o-mini")
    assert [r["status"] for r in gw.rows("key_id = ?", (key_id,), 2)] == ["refused", "ok"]


def test_require_key(gw):
    bare = client(gw)
    with pytest.raises(openai.AuthenticationError) as e:
        chat(bare, user="no-key")
    assert e.value.code == "gateway_key_required"
    (row,) = gw.rows("customer_identifier = ?", ("no-key",))
    assert row["status"] == "refused" and row["key_id"].startswith("fp_")  # the provider key's fingerprint
    # A tunnel to a host the gateway does not decrypt (here the loopback mock) needs the key at CONNECT.
    target = f"127.0.0.1:{gw.mock_port}"
    assert raw_connect(gw.port, target).startswith("HTTP/1.1 407")
    assert raw_connect(gw.port, target, gw.made["plain"][1]) == "HTTP/1.1 200 Connection established"


def raw_connect(port: int, target: str, secret: str | None = None) -> str:
    """The status line a CONNECT gets."""
    auth = f"Proxy-Authorization: Basic {base64.b64encode(f'{secret}:'.encode()).decode()}\r\n" if secret else ""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall(f"CONNECT {target} HTTP/1.1\r\nHost: {target}\r\n{auth}\r\n".encode())
        return s.recv(4096).decode("latin-1").split("\r\n", 1)[0]


async def concurrently(gw: Keyed, secret: str, calls: int = 200) -> list:
    # 200 tunnels at once: the SDK's 5 s connect timeout is too short on a loaded machine (here a
    # timed-out client is an error of the test, not of the gateway).
    c = openai.AsyncOpenAI(api_key=KEY, max_retries=0, default_headers={"X-Tapgate-Key": secret},
                           http_client=openai.DefaultAsyncHttpxClient(proxy=f"http://127.0.0.1:{gw.port}",
                                                                      verify=gw.verify(), timeout=120.0))
    try:
        return await asyncio.gather(*(c.chat.completions.create(model="gpt-4o", messages=MSG, max_tokens=37)
                                      for _ in range(calls)), return_exceptions=True)
    finally:
        await c.close()


def outcomes(results: list) -> tuple[int, list[openai.RateLimitError]]:
    refused = [r for r in results if isinstance(r, Exception)]
    assert all(isinstance(r, openai.RateLimitError) and r.code == "budget_exceeded" for r in refused), refused[:3]
    return len(results) - len(refused), refused


@pytest.mark.anyio
async def test_200_concurrent_calls_never_spend_past_the_cap(gw):
    assert WORST_USD >= CALL_USD and 10 * CALL_USD <= CAP_USD < 11 * CALL_USD
    key_id, secret = gw.made["usd"]
    ok, refused = outcomes(await concurrently(gw, secret))
    assert 1 <= ok <= 10
    for e in refused:
        assert re.search(rf"key {key_id}: \$[\d.]+ of \${CAP_USD:g} per day .* resets at \d{{4}}-\d\d-\d\dT", e.message)
    rows = gw.rows("key_id = ?", (key_id,), 200)
    assert sum(r["status"] == "ok" for r in rows) == ok and sum(r["status"] == "refused" for r in rows) == 200 - ok
    assert sum(r["cost_usd"] for r in rows if r["status"] == "ok") <= CAP_USD


@pytest.mark.anyio
async def test_200_concurrent_calls_on_ten_requests_a_day(gw):
    key_id, secret = gw.made["ten"]
    ok, refused = outcomes(await concurrently(gw, secret))
    assert ok == 10 and len(refused) == 190
    assert "10 requests of 10 requests per day" in refused[0].message
    assert sum(r["status"] == "ok" for r in gw.rows("key_id = ?", (key_id,), 200)) == 10
