"""The store under faults, through a real gateway (issue 10): a SIGKILL at full load loses no answered
call nor its spend; a foreign write lock held past busy_timeout loses nothing and shows as a stall; a
store deleted while the gateway runs is recreated with an error in the log, and later calls land in it."""

from __future__ import annotations

import os
import shutil
import signal
import sqlite3
import ssl
import subprocess
import threading
import time
import uuid

import anthropic
import openai
import pytest
from harness import BIN, query, router_url, start_gateway, wait_rows

from core.call import iso

MSG = [{"role": "user", "content": "hi"}]


def config(mock: int) -> str:
    base = f"http://127.0.0.1:{mock}"
    return f"""
budgets:
  - {{unit: usd, period: month, cap: 1000}}
router:
  providers:
    openai: {{base_url: "{base}/v1", api_key_env: TG_DURABLE_OPENAI_KEY}}
    anthropic: {{base_url: "{base}", api_key_env: TG_DURABLE_ANTHROPIC_KEY}}
"""


@pytest.fixture
def gateway_args(mock, tmp_path, monkeypatch):
    monkeypatch.setenv("TG_DURABLE_OPENAI_KEY", "sk-durable")
    monkeypatch.setenv("TG_DURABLE_ANTHROPIC_KEY", "sk-ant-durable")
    (tmp_path / "tapgate.yaml").write_text(config(mock))
    config_file = tmp_path / "tapgate.yaml"
    return mock, tmp_path / "conf", tmp_path / "store" / "t.db", "--set", f"tapgate_config={config_file}"


def proxied(port: int, tmp_path) -> openai.DefaultHttpxClient:
    verify = ssl.create_default_context(cafile=tmp_path / "conf" / "mitmproxy-ca-cert.pem")
    return openai.DefaultHttpxClient(proxy=f"http://127.0.0.1:{port}", verify=verify)


def callers(port: int, router: str, tmp_path):
    """One call each way a client reaches the gateway; each returns once the whole answer is read."""
    oai = openai.OpenAI(api_key="sk-x", max_retries=0, http_client=proxied(port, tmp_path))
    ant = anthropic.Anthropic(api_key="sk-ant-x", max_retries=0, http_client=proxied(port, tmp_path))
    routed = openai.OpenAI(api_key="sk-any", base_url=router, max_retries=0)

    def whole(thread: str) -> None:
        oai.chat.completions.create(model="gpt-4o", messages=MSG, extra_headers={"X-Tapgate-Thread-Identifier": thread})

    def stream(thread: str) -> None:
        chunks = list(oai.chat.completions.create(model="gpt-4o", messages=MSG, stream=True,
                                                  extra_headers={"X-Tapgate-Thread-Identifier": thread}))
        assert chunks

    def anthropic_stream(thread: str) -> None:
        with ant.messages.stream(model="claude-sonnet-4-5", max_tokens=50, messages=MSG,
                                 extra_headers={"X-Tapgate-Thread-Identifier": thread}) as s:
            s.get_final_message()

    def router_whole(thread: str) -> None:
        routed.chat.completions.create(model="openai/gpt-4o-mini", messages=MSG,
                                       extra_headers={"X-Tapgate-Thread-Identifier": thread})

    def router_stream(thread: str) -> None:
        chunks = list(routed.chat.completions.create(model="anthropic/claude-sonnet-4-5", messages=MSG, stream=True,
                                                     extra_headers={"X-Tapgate-Thread-Identifier": thread}))
        assert chunks

    return [whole, stream, anthropic_stream, router_whole, router_stream]


def test_sigkill_at_full_load_loses_no_answered_call_nor_its_spend(gateway_args):
    mock, conf, db, *extra = gateway_args
    process, port = start_gateway(*gateway_args)
    answered: list[str] = []  # thread ids of calls whose whole answer the client read
    stop, loaded = threading.Event(), threading.Event()

    def load(call) -> None:
        while not stop.is_set():
            thread = uuid.uuid4().hex
            try:
                call(thread)
            except Exception:  # noqa: BLE001 - the kill cuts calls off (SDK and transport errors alike): not answered
                continue
            answered.append(thread)  # read whole, so sent before the kill whenever the read ended
            if len(answered) >= 1500:  # full load for a while: the writer has a backlog to lose
                loaded.set()

    threads = [threading.Thread(target=load, args=(call,))
               for call in callers(port, router_url(process), db.parent.parent) * 2]
    for t in threads:
        t.start()
    assert loaded.wait(120) and process.proc.poll() is None, "\n".join(process.lines[-30:])
    process.stop(signal.SIGKILL)
    stop.set()
    for t in threads:
        t.join()

    restarted = iso(time.time())
    process, port = start_gateway(*gateway_args)
    try:
        rows = {r["thread_identifier"]: r for r in query(db, "SELECT thread_identifier, status FROM requests")}
        missing = [t for t in answered if t not in rows]
        assert not missing, f"{len(missing)} of {len(answered)} answered calls lost"
        assert {rows[t]["status"] for t in answered} == {"ok"}
        total = query(db, "SELECT sum(cost_usd) AS usd FROM requests WHERE status IS NOT 'refused'")[0]["usd"]
        (budget,) = wait_rows(db, "SELECT spent, reserved FROM budgets WHERE scope = 'global' AND updated_at >= ?",
                              (restarted,))
        assert budget["spent"] == pytest.approx(total, rel=1e-9) and budget["reserved"] == 0
    finally:
        assert process.stop() == 0, "\n".join(process.lines[-30:])


@pytest.fixture
def recording(gateway_args, tmp_path):
    """A gateway that has recorded one call ("before"), and a way to make more: (process, call, db)."""
    db = gateway_args[2]
    process, port = start_gateway(*gateway_args)
    whole = callers(port, router_url(process), tmp_path)[0]
    whole("before")
    wait_rows(db, "SELECT 1 FROM requests WHERE thread_identifier = 'before'")
    yield process, whole, db
    assert process.stop() == 0, "\n".join(process.lines[-30:])


def test_a_foreign_write_lock_past_busy_timeout_loses_nothing(recording):
    process, whole, db = recording
    holder = sqlite3.connect(db, isolation_level=None)
    try:
        holder.execute("BEGIN IMMEDIATE")  # a sqlite3 shell left in a transaction, a backup, a VACUUM
        threads = [f"locked-{n}" for n in range(40)]
        for thread in threads:
            whole(thread)
        process.wait_for(r"tapgate: cannot write to .* records wait in the journal and are retried", timeout=20)
        shown = top(db)
        assert "STALLED" in shown and "records pending" in shown, shown
    finally:
        holder.close()  # rolls the transaction back
    process.wait_for(r"tapgate: writing to .* again after", timeout=20)
    rows = wait_rows(db, "SELECT thread_identifier FROM requests WHERE thread_identifier LIKE 'locked-%'", count=40)
    assert sorted(r["thread_identifier"] for r in rows) == sorted(threads)
    assert "LOST" not in top(db) and not any("lost" in line for line in process.lines)


def test_a_store_directory_deleted_mid_run_is_recreated_loudly(recording):
    process, whole, db = recording
    while db.parent.exists():  # rm -rf, again if the writer put its status file in meanwhile
        shutil.rmtree(db.parent, ignore_errors=True)
    threads = [f"after-{n}" for n in range(20)]
    for thread in threads:
        whole(thread)
    process.wait_for(rf"tapgate: the store {db} was deleted while the gateway ran", timeout=20)
    rows = wait_rows(db, "SELECT thread_identifier FROM requests", count=20)
    assert sorted(r["thread_identifier"] for r in rows) == sorted(threads)  # the old file's row went with it
    assert oct(os.stat(db).st_mode & 0o777) == "0o600" and oct(os.stat(db.parent).st_mode & 0o777) == "0o700"


def top(db) -> str:
    """`tapgate top --once`, as another terminal would run it while the gateway writes."""
    done = subprocess.run([str(BIN / "tapgate"), "top", "--once", "--db", str(db)], capture_output=True, text=True,
                          env={**os.environ, "COLUMNS": "160", "LINES": "40"}, timeout=30)
    assert done.returncode == 0, done.stderr
    return done.stdout
