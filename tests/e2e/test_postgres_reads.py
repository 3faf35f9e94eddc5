"""A gateway whose store is PostgreSQL (tapgate_postgres) reads it while it runs: keys made and
revoked with `tapgate keys --db postgresql://...` apply within a second, and the spend a budget starts
from is PostgreSQL's (rows put there by hand, and rows its writer recorded, which `tapgate logs` and
`tapgate spend` on the URL read back)."""

import io
import json
import ssl
import uuid
from contextlib import redirect_stdout
from datetime import UTC, datetime

import openai
import psycopg
import pytest
from harness import configured_gateway, router_url, start_gateway
from services import fresh_database
from support import until

from cli.main import main
from core.database import iso

KEY = "sk-test-e2e-pg-openai-0123456789"
MSG = [{"role": "user", "content": "hi"}]
PASSWORD = "pg-s3cret-pw"


def keys(url: str, *argv: str) -> dict | str:
    with redirect_stdout(io.StringIO()) as printed:
        assert main(["keys", *argv, "--db", url]) == 0
    out = printed.getvalue()
    return json.loads(out) if out.startswith("{") else out


@pytest.fixture(scope="module")
def pg_gateway(mock, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("pg-reads")
    with fresh_database() as bare:
        url = bare.replace("://postgres@", f"://postgres:{PASSWORD}@")  # trust auth takes any password
        assert PASSWORD in url
        first = keys(url, "create", "--name", "first", "--json")
        capped = keys(url, "create", "--name", "capped", "--budget", "2requests/day", "--json")
        with psycopg.connect(url, autocommit=True) as conn:  # two calls on the capped key today: its budget is spent
            for n in range(2):
                conn.execute("INSERT INTO requests (id, trace_id, span_id, started_at, mode, provider, model, status,"
                             " status_code, cost_usd, key_id) VALUES (%s, %s, %s, %s, 'passthrough', 'openai', 'gpt-4o',"
                             " 'ok', 200, 0.001, %s)", (f"{n:032x}", f"{n:032x}", f"{n:016x}",
                                                        iso(datetime.now(UTC)), capped["id"]))
        (tmp / "tapgate.yaml").write_text("require_key: true\n")
        process, port = start_gateway(mock, tmp / "conf", tmp / "t.db", "--set", f"tapgate_config={tmp / 'tapgate.yaml'}",
                                      "--set", f"tapgate_postgres={url}")
        process.wait_for(r"tapgate: 2 gateway keys \(2 usable\) from postgresql://postgres:\*\*\*@")
        yield url, port, tmp / "conf" / "mitmproxy-ca-cert.pem", first, capped, process
        assert process.stop() == 0, "\n".join(process.lines[-30:])


def client(port: int, ca, secret: str) -> openai.OpenAI:
    return openai.OpenAI(api_key=KEY, max_retries=0, default_headers={"X-Tapgate-Key": secret},
                         http_client=openai.DefaultHttpxClient(proxy=f"http://127.0.0.1:{port}",
                                                               verify=ssl.create_default_context(cafile=ca)))


def answered(port: int, ca, secret: str):
    """The call's answer, or the error the gateway refused it with."""
    try:
        return client(port, ca, secret).chat.completions.create(model="gpt-4o", messages=MSG)
    except openai.APIStatusError as e:
        return e


def test_keys_created_and_revoked_in_postgresql_apply_within_a_second(pg_gateway):
    url, port, ca, first, _, process = pg_gateway
    assert answered(port, ca, first["secret"]).usage.prompt_tokens == 14
    made = keys(url, "create", "--name", "later", "--json")
    until(lambda: not isinstance(answered(port, ca, made["secret"]), openai.APIStatusError),
          what="the key created in PostgreSQL admitted")
    keys(url, "revoke", first["id"])
    refused = until(lambda: isinstance(e := answered(port, ca, first["secret"]), openai.AuthenticationError) and e,
                    timeout=1.0, what="the key revoked in PostgreSQL refused")
    assert "was revoked" in refused.message
    assert PASSWORD not in "\n".join(process.lines)


def test_a_budget_starts_from_the_spend_in_postgresql(pg_gateway):
    _, port, ca, _, capped, _ = pg_gateway
    refused = answered(port, ca, capped["secret"])
    assert isinstance(refused, openai.RateLimitError) and refused.code == "budget_exceeded"
    assert capped["id"] in refused.message


def test_calls_the_gateway_wrote_to_postgresql_are_read_back_and_restart_its_budgets(mock, tmp_path):
    """The whole loop: a gateway records calls in PostgreSQL; `tapgate logs` and `spend` on the URL show
    them; a gateway started again on it (a new SQLite file beside it) starts its budgets from them."""
    customer = f"cust-{uuid.uuid4().hex[:8]}"
    config = (f'router:\n  providers:\n    openai: {{base_url: "http://127.0.0.1:{mock}/v1"}}\n'
              f"customers:\n  {customer}:\n    budgets: [{{unit: requests, period: day, cap: 3}}]\n")
    for sub in ("one", "two"):
        (tmp_path / sub).mkdir()
    with fresh_database() as url:
        first, _ = configured_gateway(mock, tmp_path / "one", config, "--set", f"tapgate_postgres={url}")
        try:
            routed = openai.OpenAI(api_key="sk-any", base_url=router_url(first), max_retries=0)
            for _ in range(3):
                routed.chat.completions.create(model="gpt-4o", messages=MSG, user=customer)
            until(lambda: len(pg_ids(url, customer)) == 3, timeout=15, what="three calls in PostgreSQL")
        finally:
            assert first.stop() == 0
        with redirect_stdout(io.StringIO()) as printed:
            assert main(["logs", "--json", "--customer", customer, "--db", url]) == 0
        logged = [json.loads(line) for line in printed.getvalue().splitlines()]
        assert sorted(r["id"] for r in logged) == sorted(pg_ids(url, customer))
        assert {(r["mode"], r["status"], r["model"]) for r in logged} == {("router", "ok", "gpt-4o")}
        with redirect_stdout(io.StringIO()) as printed:
            assert main(["spend", "--by", "customer", "--json", "--db", url]) == 0
        (spend,) = [json.loads(line) for line in printed.getvalue().splitlines()]
        assert (spend["customer"], spend["requests"]) == (customer, 3) and spend["cost_usd"] > 0
        with psycopg.connect(url) as conn:  # numbered as they arrived: what `tapgate top` follows
            assert conn.execute("SELECT count(*) FROM requests WHERE rowid IS NULL").fetchone()[0] == 0
        with redirect_stdout(io.StringIO()) as printed:
            assert main(["top", "--once", "--db", url]) == 0
        assert customer in printed.getvalue() and "postgresql:" in printed.getvalue()

        second, _ = configured_gateway(mock, tmp_path / "two", config, "--set", f"tapgate_postgres={url}")
        try:
            routed = openai.OpenAI(api_key="sk-any", base_url=router_url(second), max_retries=0)
            with pytest.raises(openai.RateLimitError) as e:  # its three calls of today are spent
                routed.chat.completions.create(model="gpt-4o", messages=MSG, user=customer)
            assert e.value.code == "budget_exceeded"
        finally:
            assert second.stop() == 0


def pg_ids(url: str, customer: str) -> list[str]:
    with psycopg.connect(url) as conn:
        return [r[0] for r in conn.execute("SELECT id FROM requests WHERE customer_identifier = %s", (customer,))]
