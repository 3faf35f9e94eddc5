"""Calls recorded in PostgreSQL (`tapgate_postgres`) through a real gateway: router and passthrough calls
land with their model, tokens and cost, the URL's password is never printed, PostgreSQL stopped for
10 s mid-load loses no call once it is back, and a gateway killed at load loses none nor writes one
twice (its journal is replayed into rows it had partly committed)."""

from __future__ import annotations

import signal
import ssl
import threading
import uuid

import openai
import psycopg
import pytest
from harness import configured_gateway, query, router_url
from services import as_url, fresh_database, own_postgres
from support import until

MSG = [{"role": "user", "content": "hi"}]
SECRET = "hunter2-pg-secret"  # trust auth ignores it; it must still never be printed


def config(mock: int) -> str:
    return f"""
router:
  providers:
    openai: {{base_url: "http://127.0.0.1:{mock}/v1"}}
"""


def pg_rows(url: str, sql: str, params: tuple = ()) -> list[tuple]:
    with psycopg.connect(url, connect_timeout=5) as conn:
        return conn.execute(sql, params).fetchall()


def with_password(url: str) -> str:
    return url.replace("postgresql://postgres@", f"postgresql://postgres:{SECRET}@")


def clients(process, port: int, tmp) -> tuple[openai.OpenAI, openai.OpenAI]:
    """(passthrough through HTTPS proxying, the router)."""
    verify = ssl.create_default_context(cafile=tmp / "conf" / "mitmproxy-ca-cert.pem")
    proxied = openai.DefaultHttpxClient(proxy=f"http://127.0.0.1:{port}", verify=verify)
    return (openai.OpenAI(api_key="sk-pg-e2e", max_retries=0, http_client=proxied),
            openai.OpenAI(api_key="sk-any", base_url=router_url(process), max_retries=0))


def test_router_and_passthrough_calls_land_in_postgres(mock, tmp_path):
    with fresh_database() as conninfo:
        url = with_password(as_url(conninfo))
        process, port = configured_gateway(mock, tmp_path, config(mock), "--set", f"tapgate_postgres={url}",
                                           "--set", "tapgate_retention_days=30")
        try:
            passthrough, routed = clients(process, port, tmp_path)
            thread = uuid.uuid4().hex
            headers = {"X-Tapgate-Thread-Identifier": thread}
            reply = passthrough.chat.completions.create(model="gpt-4o", messages=MSG, extra_headers=headers)
            streamed = list(passthrough.chat.completions.create(model="gpt-4o-mini", messages=MSG, stream=True,
                                                                extra_headers=headers))
            routed_reply = routed.chat.completions.create(model="openai/gpt-4o-mini", messages=MSG,
                                                          extra_headers=headers)
            assert reply.usage.prompt_tokens > 0 and streamed and routed_reply.usage.prompt_tokens > 0
            sql = ("SELECT mode, model, input_tokens, output_tokens, cost_usd, stream, status FROM requests "
                   "WHERE thread_identifier = %s ORDER BY started_at")
            found = until(lambda: (r := pg_rows(url, sql, (thread,))) and len(r) == 3 and r, 15,
                          "three calls in PostgreSQL")
            assert [(r[0], r[1], r[5], r[6]) for r in found] == [
                ("passthrough", "gpt-4o", 0, "ok"), ("passthrough", "gpt-4o-mini", 1, "ok"),
                ("router", "openai/gpt-4o-mini", 0, "ok")]
            assert found[0][2:4] == (reply.usage.prompt_tokens, reply.usage.completion_tokens)
            assert found[2][2:4] == (routed_reply.usage.prompt_tokens, routed_reply.usage.completion_tokens)
            assert all(r[2] > 0 and r[3] > 0 and r[4] > 0 for r in found)
            (spans,) = pg_rows(url, "SELECT count(*) FROM spans s JOIN requests r ON r.id = s.request_id "
                                    "WHERE r.thread_identifier = %s", (thread,))[0]
            assert spans >= 3
            # Nothing went to the SQLite file, and the day's partition holds the calls.
            assert query(tmp_path / "t.db", "SELECT count(*) AS n FROM requests") == [{"n": 0}]
            assert pg_rows(url, "SELECT count(*) FROM requests_default") == [(0,)]
        finally:
            assert process.stop() == 0, "\n".join(process.lines[-30:])
        printed = "\n".join(process.lines)
        assert SECRET not in printed and "postgres:***@" in printed


def test_postgres_stopped_for_10_s_mid_load_loses_no_call(mock, tmp_path):
    with own_postgres() as server:
        url = with_password(server.url)
        process, port = configured_gateway(mock, tmp_path, config(mock), "--set", f"tapgate_postgres={url}")
        answered: list[str] = []
        failed: list[Exception] = []
        stop = threading.Event()
        passthrough, routed = clients(process, port, tmp_path)

        def load(call) -> None:
            while not stop.is_set():
                thread = uuid.uuid4().hex
                try:
                    call(thread)
                except Exception as e:  # noqa: BLE001 - every call must succeed: collected and asserted below
                    failed.append(e)
                    continue
                answered.append(thread)

        def proxied_call(thread: str) -> None:
            passthrough.chat.completions.create(model="gpt-4o", messages=MSG,
                                                extra_headers={"X-Tapgate-Thread-Identifier": thread})

        def routed_call(thread: str) -> None:
            list(routed.chat.completions.create(model="openai/gpt-4o-mini", messages=MSG, stream=True,
                                                extra_headers={"X-Tapgate-Thread-Identifier": thread}))

        threads = [threading.Thread(target=load, args=(c,)) for c in (proxied_call, routed_call) * 2]
        try:
            for t in threads:
                t.start()
            until(lambda: pg_rows(url, "SELECT count(*) FROM requests")[0][0] >= 20, 30, "calls in PostgreSQL")
            stored = pg_rows(url, "SELECT count(*) FROM requests")[0][0]
            server.stop()
            before = len(answered)
            stop.wait(10)  # the outage: calls go on for 10 s
            during = len(answered) - before
            server.start()
            until(lambda: pg_rows(url, "SELECT count(*) FROM requests")[0][0] > stored, 30,
                  "the writer back on PostgreSQL, while calls go on")
        finally:
            stop.set()
            for t in threads:
                t.join()
        try:
            assert not failed, f"{len(failed)} calls failed: {failed[:3]}"
            assert during > 20, "the load went on while PostgreSQL was down"
            until(lambda: pg_rows(url, "SELECT count(*) FROM requests")[0][0] >= len(answered), 60,
                  "every answered call in PostgreSQL")
            recorded = pg_rows(url, "SELECT thread_identifier, count(*) FROM requests GROUP BY 1")
            assert len(recorded) == len(answered) and {n for _, n in recorded} == {1}  # no duplicates
            assert {t for t, _ in recorded} == set(answered)
            assert any("records wait in the journal" in line for line in process.lines)
        finally:
            assert process.stop() == 0, "\n".join(process.lines[-30:])
        assert SECRET not in "\n".join(process.lines)


def test_a_gateway_killed_at_load_loses_no_call_and_duplicates_none(mock, tmp_path):
    with fresh_database() as conninfo:
        url = as_url(conninfo)
        extra = ("--set", f"tapgate_postgres={url}")
        process, port = configured_gateway(mock, tmp_path, config(mock), *extra)
        answered: list[str] = []
        stop, loaded = threading.Event(), threading.Event()
        passthrough, routed = clients(process, port, tmp_path)

        def load(call) -> None:
            while not stop.is_set():
                thread = uuid.uuid4().hex
                try:
                    call(model="gpt-4o-mini" if call is passthrough.chat.completions.create else "openai/gpt-4o-mini",
                         messages=MSG, extra_headers={"X-Tapgate-Thread-Identifier": thread})
                except Exception:  # noqa: BLE001 - the kill cuts calls off: those were not answered
                    continue
                answered.append(thread)
                if len(answered) >= 600:
                    loaded.set()

        threads = [threading.Thread(target=load, args=(c,))
                   for c in (passthrough.chat.completions.create, routed.chat.completions.create) * 2]
        for t in threads:
            t.start()
        try:
            assert loaded.wait(120), "\n".join(process.lines[-30:])
            process.stop(signal.SIGKILL)
        finally:
            stop.set()
            for t in threads:
                t.join()
        process, _ = configured_gateway(mock, tmp_path, config(mock), *extra)
        try:
            until(lambda: pg_rows(url, "SELECT count(*) FROM requests")[0][0] >= len(answered), 30,
                  "every answered call in PostgreSQL after the restart")
            recorded = dict(pg_rows(url, "SELECT thread_identifier, count(*) FROM requests GROUP BY 1"))
            assert set(answered) <= set(recorded) and set(recorded.values()) == {1}
            # The dead process's segment (committed rows and all) was replayed: idempotency, not luck.
            process.wait_for(r"committed \d+ records a gateway that stopped without committing them", 10)
        finally:
            assert process.stop() == 0, "\n".join(process.lines[-30:])


@pytest.mark.parametrize("bad", ["mysql://u:hunter2-pg-secret@127.0.0.1/x", "postgresql://u:hunter2-pg-secret@[x/"])
def test_a_bad_url_is_refused_at_start_without_its_password(mock, tmp_path, bad):
    from harness import Process, gateway_command

    (tmp_path / "tapgate.yaml").write_text(config(mock))
    process = Process.start(gateway_command(mock, tmp_path / "conf", tmp_path / "t.db", "--set",
                                            f"tapgate_postgres={bad}"))
    process.wait_for(r"tapgate_postgres: .*", 30)
    process.stop()
    printed = "\n".join(process.lines)
    assert SECRET not in printed and "***" in printed
