"""The router through the real openai SDK (sync and async, streamed and not) against loopback
OpenAI, Anthropic and Gemini mocks told to fail: the fault table's wire cases, errors, tagging and
recording. The whole fault table (every status, timeout and deadline case) runs as unit tests on a fake
upstream and a virtual clock, tests/test_fault_table.py; here are the cases whose wire matters."""

from __future__ import annotations

import asyncio
import json
import socket
import threading
import uuid

import anthropic
import openai
import pytest
from harness import admin, configured_gateway, query, router_url, start_gateway, store_files, wait_rows
from specs import (
    ANTHROPIC_ERROR,
    ANTHROPIC_MESSAGE,
    ANTHROPIC_STREAM_EVENT,
    OPENAI_CHAT,
    OPENAI_CHAT_CHUNK,
    OPENAI_ERROR,
    OPENAI_MODELS,
    conforms,
)
from support import until

MASTER = "sk-tapgate-master-test"
MSG = [{"role": "user", "content": "hi"}]


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def config(mock: int, dead: int) -> str:
    base = f"http://127.0.0.1:{mock}"
    return f"""
router:
  master_key_env: TG_TEST_MASTER
  connect_timeout: 0.5
  first_byte_timeout: 0.5
  timeout: 20
  retry: {{num_retries: 2, retry_after: 0.01, max_backoff: 2}}
  cooldown: {{failures: 1000, seconds: 1, error_rate: null}}  # each case sees its own retries and fallbacks
  providers:
    openai: {{base_url: "{base}/v1", api_key_env: TG_TEST_OPENAI_KEY}}
    anthropic: {{base_url: "{base}"}}
    gemini: {{base_url: "{base}"}}
  models:
    oai-first:
      deployments: [{{provider: openai, model: gpt-4o-mini}}]
      fallback_models: [anthropic/claude-sonnet-4-5]
    claude-first:
      deployments: [{{provider: anthropic, model: claude-sonnet-4-5}}]
      fallback_models: [gemini/gemini-2.5-flash]
    dead-first:
      deployments: [{{provider: openai, model: gpt-4o-mini, base_url: "http://127.0.0.1:{dead}/v1"}}]
      fallback_models: [anthropic/claude-sonnet-4-5]
"""


@pytest.fixture(scope="module")
def router(mock, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("router")
    process, _ = configured_gateway(mock, tmp, config(mock, closed_port()),
                                    env={"TG_TEST_MASTER": MASTER, "TG_TEST_OPENAI_KEY": "sk-provider-secret-openai"})
    yield router_url(process), tmp / "t.db", process
    assert process.stop() == 0, "\n".join(process.lines[-30:])


@pytest.fixture(autouse=True)
def clean_mock(mock):
    admin(mock, "POST", "/_mock/reset")


def client(router, **kw) -> openai.OpenAI:
    return openai.OpenAI(base_url=router[0], api_key=MASTER, max_retries=0, **kw)


def aclient(router) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(base_url=router[0], api_key=MASTER, max_retries=0)


def row(router, customer: str) -> dict:
    return wait_rows(router[1], "SELECT * FROM requests WHERE customer_identifier = ?", (customer,))[0]


def fail(mock: int, path: str, times: int = 1, **program) -> None:
    admin(mock, "POST", "/_mock/program", {"path_contains": path, "times": times, **program})


def run(router, model: str, stream: bool, customer: str, use_async: bool = False, **extra):
    """One call; returns (text, chunks or completion). Stream chunks are checked against the spec."""
    body = dict(model=model, messages=MSG, extra_body={"customer_identifier": customer}, **extra)
    if use_async:
        return asyncio.run(_arun(router, body, stream))
    c = client(router)
    if not stream:
        completion = c.chat.completions.create(**body)
        return completion.choices[0].message.content or "", completion
    chunks = list(c.chat.completions.create(stream=True, **body))
    for chunk in chunks:
        conforms("openai", OPENAI_CHAT_CHUNK, chunk.model_dump(exclude_unset=True))
    return "".join(ch.choices[0].delta.content or "" for ch in chunks if ch.choices), chunks


async def _arun(router, body, stream):
    async with aclient(router) as c:  # closed in this loop: a client left to the GC breaks later async tests
        if not stream:
            completion = await c.chat.completions.create(**body)
            return completion.choices[0].message.content or "", completion
        chunks = [ch async for ch in await c.chat.completions.create(stream=True, **body)]
        return "".join(ch.choices[0].delta.content or "" for ch in chunks if ch.choices), chunks


# fault on the first deployment -> (model, what fails, expected routed_to, expected attempts). Each is here for
# its wire: a Retry-After header read off HTTP and waited in real time; a cross-provider fallback (OpenAI to
# Anthropic, translated) with its attempts as spans in the store; a port that refuses; a server that never
# answers; headers on time and a body too late. 429 without Retry-After, 500 once, 529, insufficient_quota,
# every deployment failing (429, 502, 503, 504), client errors and the deadline: tests/test_fault_table.py.
FAULTS = {
    "429 with Retry-After, then ok": ("oai-first", dict(path="/chat/completions", times=1, status=429,
                                                        headers={"retry-after": "1"}), "openai/gpt-4o-mini", 2),
    "500 always, fallback": ("oai-first", dict(path="/chat/completions", times=3, status=500),
                             "anthropic/claude-sonnet-4-5", 4),
    "refused connection": ("dead-first", None, "anthropic/claude-sonnet-4-5", 4),
    "silent upstream": ("oai-first", dict(path="/chat/completions", times=3, fault="silent"),
                        "anthropic/claude-sonnet-4-5", 4),
    "slow first byte": ("oai-first", dict(path="/chat/completions", times=3, fault="slow-first-byte:1500"),
                        "anthropic/claude-sonnet-4-5", 4),
}


# Every fault whole and streamed through the sync client; the async client on the fallback case only.
WIRE_CASES = [(fault, stream, False) for fault in FAULTS for stream in (False, True)] + [
    ("500 always, fallback", stream, True) for stream in (False, True)]


@pytest.mark.parametrize("fault, stream, use_async", WIRE_CASES,
                         ids=[f"{f}-{'stream' if s else 'whole'}-{'async' if a else 'sync'}" for f, s, a in WIRE_CASES])
def test_fault_table(router, mock, customer, fault, stream, use_async):
    model, program, routed_to, attempts = FAULTS[fault]
    if program:
        program = dict(program)
        fail(mock, program.pop("path"), **program)
    text, _ = run(router, model, stream, customer, use_async)
    assert text  # the client got an answer and never saw the fault
    r = row(router, customer)
    assert (r["routed_to"], r["attempts"], r["status"], r["mode"]) == (routed_to, attempts, "ok", "router")
    assert r["model"] == model and r["input_tokens"] and r["output_tokens"] and r["cost_usd"] > 0
    spans = query(router[1], "SELECT * FROM spans WHERE request_id = ? AND name LIKE 'attempt %' ORDER BY rowid",
                  (r["id"],))
    assert len(spans) == attempts
    assert [s["status"] for s in spans] == ["error"] * (attempts - 1) + ["ok"]
    if fault in ("silent upstream", "slow first byte"):
        assert "first byte timeout" in json.loads(spans[0]["attributes"])["error"]


@pytest.mark.parametrize("stream", [False, True], ids=["whole", "stream"])
def test_cut_mid_stream(router, mock, customer, stream):
    """A stream cut after bytes reached the client is not retried: the client gets an error event;
    a whole answer cut short is retried, since nothing reached the client."""
    fail(mock, "/chat/completions", fault="cut", chunk_delay_ms=5)
    if stream:
        with pytest.raises(openai.APIError, match="stream broke"):
            run(router, "oai-first", True, customer)
        r = row(router, customer)
        assert (r["status"], r["attempts"], r["routed_to"]) == ("upstream_error", 1, "openai/gpt-4o-mini")
        assert r["output_tokens"]  # what was passed on is charged (estimated)
    else:
        text, _ = run(router, "oai-first", False, customer)
        r = row(router, customer)
        assert text and (r["status"], r["attempts"], r["routed_to"]) == ("ok", 2, "openai/gpt-4o-mini")


def test_every_deployment_rate_limited_gives_429_with_retry_after(router, mock, customer):
    """The error's wire: its Retry-After header, OpenAI's error shape, no secret; 502, 503 and 504, and the
    streamed case, are unit tests (tests/test_fault_table.py)."""
    fail(mock, "/chat/completions", times=3, status=429)
    fail(mock, "/v1/messages", times=3, status=429)
    with pytest.raises(openai.RateLimitError) as e:
        run(router, "oai-first", False, customer)
    assert e.value.response.headers["retry-after"]
    body = e.value.response.json()
    conforms("openai", OPENAI_ERROR, body)
    assert body["error"]["message"].count("attempt ") == 6 and "sk-provider-secret" not in e.value.response.text
    assert row(router, customer)["status"] == "error"


def test_client_errors_are_never_retried(router, mock, customer):
    """The provider's own 401 reaches the SDK as its 401, after one request; 400, 403, 404: unit tests."""
    status = 401
    fail(mock, "/chat/completions", times=1, status=status)
    with pytest.raises(openai.APIStatusError) as e:
        run(router, "oai-first", False, customer)
    assert e.value.status_code == status
    r = row(router, customer)
    assert r["attempts"] == 1 and len(admin(mock, "GET", "/_mock/requests")) == 1


def test_a_fallback_streams_to_the_client_event_by_event(router, mock, customer):
    """The wire of a stream answered by a fallback after the first model failed: the SDK reads it as
    chunks, one per event. That each goes on as soon as it arrives is timed on a virtual clock in
    tests/test_fault_table.py::test_first_token_after_a_fallback_is_not_held_back."""
    fail(mock, "/chat/completions", times=3, status=503)
    fail(mock, "/v1/messages", chunk_delay_ms=20)  # events as separate sends, as a provider streams them
    c = client(router)
    deltas = [chunk.choices[0].delta.content for chunk in c.chat.completions.create(
        model="oai-first", messages=MSG, stream=True, extra_body={"customer_identifier": customer})
        if chunk.choices and chunk.choices[0].delta.content]
    assert len(deltas) >= 2  # one chunk per event, not the answer in one piece
    r = row(router, customer)
    assert r["routed_to"] == "anthropic/claude-sonnet-4-5" and r["output_tokens"] > 0
    assert r["ttft_ms"] is not None and r["ttft_ms"] <= r["duration_ms"]
    sent = admin(mock, "GET", "/_mock/requests")
    assert [s["path"] for s in sent].count("/v1/messages") == 1 and len(sent) == 4  # 3 failed, 1 answered


def test_responses_conform_to_the_openai_spec(router, customer):
    for model in ("openai/gpt-4o-mini", "anthropic/claude-sonnet-4-5", "gemini/gemini-2.5-flash"):
        _, completion = run(router, model, False, customer)
        conforms("openai", OPENAI_CHAT, completion.model_dump(exclude_unset=True))
        _, chunks = run(router, model, True, customer, stream_options={"include_usage": True})
        assert chunks[-1].usage is not None and chunks[-1].choices == []
        _, chunks = run(router, model, True, customer)
        assert all(ch.usage is None for ch in chunks) and all(ch.choices for ch in chunks)


def test_models_list(router):
    models = client(router).models.list()
    conforms("openai", OPENAI_MODELS, {"object": "list", "data": [m.model_dump() for m in models.data]})
    assert {"oai-first", "claude-first", "openai/gpt-4o-mini"} <= {m.id for m in models.data}


def test_tagging_fields_are_recorded_and_never_reach_the_provider(router, mock, customer):
    c = client(router)
    c.chat.completions.create(
        model="openai/gpt-4o-mini", messages=MSG,
        extra_headers={"X-Tapgate-Thread-Identifier": "th-1"},
        extra_body={"customer_identifier": customer, "metadata": {"team": "search"}, "disable_log": False,
                    "customer_params": {"period_budget": 100}, "fallback_models": ["anthropic/claude-sonnet-4-5"],
                    "retry_params": {"num_retries": 1}})
    r = row(router, customer)
    assert (r["thread_identifier"], json.loads(r["metadata"])) == ("th-1", {"team": "search"})
    (sent,) = admin(mock, "GET", "/_mock/requests")
    body = json.loads(sent["body"])
    assert not {"customer_identifier", "metadata", "disable_log", "customer_params", "fallback_models",
                "retry_params"} & set(body)
    assert not any(h.lower().startswith("x-tapgate") for h in sent["headers"])
    assert sent["headers"]["authorization"] == "Bearer sk-provider-secret-openai"  # the gateway's key, not the client's


@pytest.mark.parametrize("call, status, code, param", [
    (lambda c: c.chat.completions.create(model="no-such-model", messages=MSG), 404, "model_not_found", "model"),
    (lambda c: c.chat.completions.create(model="openai/gpt-4o-mini", messages="hi"), 400, "invalid_request",
     "messages"),
    (lambda c: c.chat.completions.create(model="openai/gpt-4o-mini", messages=MSG, extra_body={"metadata": 3}),
     400, "invalid_request", "metadata"),
    (lambda c: c.chat.completions.create(model="openai/gpt-4o-mini", messages=MSG,
                                         extra_body={"retry_params": {"num_retries": -1}}),
     400, "invalid_request", "retry_params.num_retries"),
    (lambda c: c.chat.completions.create(model="openai/gpt-4o-mini", messages=MSG,
                                         extra_body={"padding": "x" * (17 * 1024 * 1024)}),
     413, "request_too_large", None),
])
def test_bad_requests_get_openai_errors_and_the_router_keeps_serving(router, call, status, code, param):
    with pytest.raises(openai.APIStatusError) as e:
        call(client(router))
    assert e.value.status_code == status
    body = e.value.response.json()
    conforms("openai", OPENAI_ERROR, body)
    assert (body["error"]["code"], body["error"]["param"]) == (code, param)
    assert "Traceback" not in e.value.response.text
    assert run(router, "openai/gpt-4o-mini", False, f"after-{uuid.uuid4().hex[:6]}")[0]


def test_wrong_or_missing_key_is_401(router):
    for key in ("sk-wrong", ""):
        c = openai.OpenAI(base_url=router[0], api_key=key or "x", max_retries=0,
                          default_headers={"authorization": ""} if not key else None)
        with pytest.raises(openai.AuthenticationError) as e:
            c.chat.completions.create(model="openai/gpt-4o-mini", messages=MSG)
        conforms("openai", OPENAI_ERROR, e.value.response.json())
        assert e.value.response.json()["error"]["code"] == "invalid_api_key"


def test_provider_keys_never_reach_the_store_or_the_terminal(router, customer):
    run(router, "openai/gpt-4o-mini", False, customer)
    row(router, customer)
    db = router[1]
    for path in store_files(db):  # the store, its WAL and journal
        assert b"sk-provider-secret" not in path.read_bytes() and MASTER.encode() not in path.read_bytes()
    assert not any("sk-provider-secret" in line or MASTER in line for line in router[2].lines)


def test_embeddings_and_responses_go_to_openai_compatible_deployments(router, customer):
    c = client(router)
    tag = {"customer_identifier": customer}
    emb = c.embeddings.create(model="openai/text-embedding-3-small", input="hi", extra_body=tag)
    assert emb.data and emb.usage.prompt_tokens
    answer = c.responses.create(model="openai/gpt-4o-mini", input="hi", extra_body=tag)
    assert answer.output_text
    events = list(c.responses.create(model="openai/gpt-4o-mini", input="hi", stream=True, extra_body=tag))
    assert events[-1].type == "response.completed"
    rows = wait_rows(router[1], "SELECT * FROM requests WHERE customer_identifier = ? ORDER BY started_at",
                     (customer,), 3)
    assert [(r["endpoint"], r["stream"], r["status"]) for r in rows] == [
        ("embeddings", 0, "ok"), ("responses", 0, "ok"), ("responses", 1, "ok")]
    assert all(r["input_tokens"] and r["cost_usd"] is not None for r in rows)
    with pytest.raises(openai.BadRequestError, match="OpenAI-compatible deployments only"):
        c.embeddings.create(model="anthropic/claude-sonnet-4-5", input="hi")


@pytest.mark.parametrize("stream", [False, True], ids=["whole", "stream"])
@pytest.mark.parametrize("model", ["openai/gpt-4o-mini", "anthropic/claude-sonnet-4-5", "gemini/gemini-2.5-flash",
                                   "oai-first"])
def test_anthropic_sdk_on_v1_messages_reaches_any_provider(router, mock, customer, model, stream):
    if model == "oai-first":  # with a fallback: the first deployment is overloaded
        fail(mock, "/chat/completions", times=3, status=503)
    c = anthropic.Anthropic(base_url=router[0].removesuffix("/v1"), api_key=MASTER, max_retries=0)
    kw = dict(model=model, max_tokens=100, messages=MSG, extra_body={"customer_identifier": customer})
    if stream:
        with c.messages.stream(**kw) as s:
            events = list(s)
            message = s.get_final_message()
        for event in events:
            if event.type in ("message_start", "message_delta", "message_stop", "content_block_start",
                              "content_block_delta", "content_block_stop"):
                conforms("anthropic", ANTHROPIC_STREAM_EVENT, event.model_dump(exclude_unset=True))
    else:
        message = c.messages.create(**kw)
        conforms("anthropic", ANTHROPIC_MESSAGE, message.model_dump())
    assert message.content and message.usage.output_tokens > 0 and message.stop_reason
    r = row(router, customer)
    assert (r["endpoint"], r["mode"], r["status"]) == ("messages", "router", "ok")
    assert r["routed_to"] == ("anthropic/claude-sonnet-4-5" if model == "oai-first" else model)


def test_anthropic_shaped_errors_on_v1_messages(router):
    c = anthropic.Anthropic(base_url=router[0].removesuffix("/v1"), api_key=MASTER, max_retries=0)
    with pytest.raises(anthropic.NotFoundError) as e:
        c.messages.create(model="no-such-model", max_tokens=10, messages=MSG)
    body = e.value.response.json()
    conforms("anthropic", ANTHROPIC_ERROR, body)
    assert body["error"]["type"] == "not_found_error"
    bad = anthropic.Anthropic(base_url=router[0].removesuffix("/v1"), api_key="sk-wrong", max_retries=0)
    with pytest.raises(anthropic.AuthenticationError):
        bad.messages.create(model="openai/gpt-4o-mini", max_tokens=10, messages=MSG)


def test_dropped_parameters_are_noted_and_disable_log_keeps_no_bodies(router, mock, customer):
    c = client(router)
    c.chat.completions.create(model="anthropic/claude-sonnet-4-5", messages=MSG, logprobs=True,
                              extra_body={"customer_identifier": customer, "disable_log": True})
    r = row(router, customer)
    assert r["request_body"] is None and r["response_body"] is None and r["output_tokens"]
    (root,) = query(router[1], "SELECT * FROM spans WHERE request_id = ? AND parent_span_id IS NULL", (r["id"],))
    assert any("logprobs" in note for note in json.loads(root["attributes"])["notes"])
    (sent,) = admin(mock, "GET", "/_mock/requests")
    assert "logprobs" not in json.loads(sent["body"])


TOOLS = [{"type": "function", "function": {
    "name": "get_weather", "description": "Weather for a place",
    "parameters": {"type": "object", "properties": {"location": {"type": "string"}}, "required": ["location"]}}}]
# Where each dialect's request carries the tool the OpenAI client declared.
TOOL_IN_REQUEST = {
    "openai/gpt-4o-mini": lambda b: b["tools"][0]["function"]["name"],
    "anthropic/claude-sonnet-4-5": lambda b: b["tools"][0]["name"] if "input_schema" in b["tools"][0] else None,
    "gemini/gemini-2.5-flash": lambda b: b["tools"][0]["functionDeclarations"][0]["name"],
}


@pytest.mark.parametrize("stream", [False, True], ids=["whole", "stream"])
@pytest.mark.parametrize("model", list(TOOL_IN_REQUEST))
def test_tools_are_translated_and_tool_calls_come_back_in_openai_shape(router, mock, customer, model, stream):
    c = client(router)
    kw = dict(model=model, tools=TOOLS, tool_choice="auto", extra_body={"customer_identifier": customer},
              messages=[{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Weather in Paris?"}])
    if stream:
        calls: dict[int, dict] = {}
        finish = None
        for chunk in c.chat.completions.create(stream=True, **kw):
            conforms("openai", OPENAI_CHAT_CHUNK, chunk.model_dump(exclude_unset=True))
            for choice in chunk.choices:
                finish = choice.finish_reason or finish
                for tc in choice.delta.tool_calls or []:
                    acc = calls.setdefault(tc.index, {"name": "", "arguments": ""})
                    acc["name"] += tc.function.name or "" if tc.function else ""
                    acc["arguments"] += tc.function.arguments or "" if tc.function else ""
        got = list(calls.values())
    else:
        done = c.chat.completions.create(**kw)
        conforms("openai", OPENAI_CHAT, done.model_dump(exclude_unset=True))
        finish = done.choices[0].finish_reason
        got = [{"name": t.function.name, "arguments": t.function.arguments} for t in done.choices[0].message.tool_calls]
    assert finish == "tool_calls" and got
    assert all(g["name"] and isinstance(json.loads(g["arguments"]), dict) for g in got)
    (sent,) = admin(mock, "GET", "/_mock/requests")
    assert TOOL_IN_REQUEST[model](json.loads(sent["body"])) == "get_weather"


def test_a_busy_router_port_leaves_the_proxy_running(mock, tmp_path):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        process, _ = start_gateway(mock, tmp_path / "conf", tmp_path / "t.db", "--set", f"tapgate_router=127.0.0.1:{port}")
        try:
            process.wait_for(rf"the router cannot listen on 127.0.0.1:{port}")
            assert process.proc.poll() is None
        finally:
            assert process.stop() == 0


def test_a_stop_cancels_routed_calls_in_flight_instead_of_waiting_for_them(mock, tmp_path, customer):
    """Ctrl-C with a call still waiting on its provider: the gateway exits within seconds (aiohttp's
    own shutdown would wait a minute for the call) and records the call as stopped by the gateway."""
    process, _ = configured_gateway(mock, tmp_path, f'router:\n  providers:\n    openai: {{base_url: '
                                                     f'"http://127.0.0.1:{mock}/v1"}}\n')
    fail(mock, "/chat/completions", delay_ms=60_000)  # the status line a minute away
    answered: list = []

    def call() -> None:
        try:
            client((router_url(process), None), timeout=90).chat.completions.create(
                model="gpt-4o-mini", messages=MSG, extra_body={"customer_identifier": customer})
            answered.append("answer")
        except openai.APIError as e:
            answered.append(e)

    caller = threading.Thread(target=call, daemon=True)
    caller.start()
    until(lambda: admin(mock, "GET", "/_mock/requests"), 15, "the call to reach the provider")
    code = process.stop()  # the harness kills what has not exited 20 s after the signal: code -9
    assert code == 0, "\n".join(process.lines[-30:])
    caller.join(10)
    assert answered and answered[0] != "answer"  # its connection closed, no answer
    r = wait_rows(tmp_path / "t.db", "SELECT * FROM requests WHERE customer_identifier = ?", (customer,))[0]
    assert r["status"] == "error" and "gateway stopped" in r["error"]


@pytest.mark.parametrize("stream", [False, True], ids=["whole", "stream"])
def test_v1_messages_to_anthropic_goes_untranslated(router, mock, customer, stream):
    """Claude Code's way: an Anthropic client to an Anthropic deployment keeps cache_control, thinking
    and its betas (translated to OpenAI and back they would be dropped)."""
    c = anthropic.Anthropic(base_url=router[0].removesuffix("/v1"), api_key=MASTER, max_retries=0,
                            default_headers={"anthropic-beta": "interleaved-thinking-2025-05-14"})
    kw = dict(model="anthropic/claude-sonnet-4-5", max_tokens=2000, thinking={"type": "enabled", "budget_tokens": 1024},
              system=[{"type": "text", "text": "Be brief.", "cache_control": {"type": "ephemeral"}}],
              messages=MSG, extra_body={"customer_identifier": customer})
    if stream:
        with c.messages.stream(**kw) as s:
            message = s.get_final_message()
    else:
        message = c.messages.create(**kw)
    assert message.content and message.usage.output_tokens
    (sent,) = admin(mock, "GET", "/_mock/requests")
    body = json.loads(sent["body"])
    assert body["system"][0]["cache_control"] == {"type": "ephemeral"}
    assert body["thinking"] == {"type": "enabled", "budget_tokens": 1024} and body["model"] == "claude-sonnet-4-5"
    assert sent["headers"]["anthropic-beta"] == "interleaved-thinking-2025-05-14"
    assert "customer_identifier" not in body
    r = row(router, customer)
    assert (r["routed_to"], r["status"], r["endpoint"]) == ("anthropic/claude-sonnet-4-5", "ok", "messages")
    assert r["input_tokens"] and r["output_tokens"] and r["cost_usd"] > 0
    (root,) = query(router[1], "SELECT attributes FROM spans WHERE request_id = ? AND parent_span_id IS NULL",
                    (r["id"],))
    assert "notes" not in json.loads(root["attributes"])  # nothing was dropped


def test_v1_messages_to_another_provider_notes_what_it_dropped(router, mock, customer):
    c = anthropic.Anthropic(base_url=router[0].removesuffix("/v1"), api_key=MASTER, max_retries=0)
    c.messages.create(model="openai/gpt-4o-mini", max_tokens=100, messages=MSG, extra_body={"customer_identifier": customer},
                      system=[{"type": "text", "text": "Be brief.", "cache_control": {"type": "ephemeral"}}])
    r = row(router, customer)
    (root,) = query(router[1], "SELECT attributes FROM spans WHERE request_id = ? AND parent_span_id IS NULL",
                    (r["id"],))
    assert any("cache_control" in note for note in json.loads(root["attributes"])["notes"])
