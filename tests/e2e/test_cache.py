"""The response cache through real SDKs, in passthrough and router mode: hits in every stream/whole
combination for each dialect, TTL expiry, tenant and customer isolation, is_cached_by_model, a
stampede of identical calls, errors never stored, bypass and refresh, and entries kept across a restart."""

from __future__ import annotations

import asyncio
import io
import json
import ssl
import time
import uuid
from contextlib import redirect_stdout

import anthropic
import openai
import pytest
from google import genai
from google.genai import types
from harness import admin, query, router_url, start_gateway, wait_rows

from cli.main import main

MASTER = "sk-cache-master"
CACHE_ON = {"X-Tapgate-Cache-Enabled": "true"}


def config(mock: int) -> str:
    base = f"http://127.0.0.1:{mock}"
    return f"""
cache:
  persist: true
router:
  master_key: {MASTER}
  providers:
    openai: {{base_url: "{base}/v1"}}
    anthropic: {{base_url: "{base}"}}
    gemini: {{base_url: "{base}"}}
"""


@pytest.fixture(scope="module")
def gw(mock, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("cache")
    (tmp / "tapgate.yaml").write_text(config(mock))
    args = (mock, tmp / "conf", tmp / "t.db", "--set", f"tapgate_config={tmp / 'tapgate.yaml'}")
    process, port = start_gateway(*args)
    keys = {}
    for name in ("x", "y"):
        with redirect_stdout(io.StringIO()) as printed:
            assert main(["keys", "create", "--db", str(tmp / "t.db"), "--name", name, "--json"]) == 0
        made = json.loads(printed.getvalue())
        keys[name] = made["secret"]
    process.wait_for(r"tapgate: 2 gateway keys")
    state = {"process": process, "port": port, "tmp": tmp, "keys": keys, "router": router_url(process),
             "args": args}
    yield state
    assert state["process"].stop() == 0, "\n".join(state["process"].lines[-30:])


@pytest.fixture(autouse=True)
def clean_mock(mock):
    admin(mock, "POST", "/_mock/reset")


def upstream_calls(mock: int) -> int:
    return len(admin(mock, "GET", "/_mock/requests"))


def prompt() -> list[dict]:
    """A message no other test sends, so each test starts with an empty cache for it."""
    return [{"role": "user", "content": f"hi {uuid.uuid4().hex}"}]


def verify(gw) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=gw["tmp"] / "conf" / "mitmproxy-ca-cert.pem")


def oai(gw, api_key: str = "sk-tenant-a", **headers) -> openai.OpenAI:
    return openai.OpenAI(api_key=api_key, max_retries=0, default_headers={**CACHE_ON, **headers},
                         http_client=openai.DefaultHttpxClient(proxy=f"http://127.0.0.1:{gw['port']}",
                                                               verify=verify(gw)))


def ant(gw, **headers) -> anthropic.Anthropic:
    return anthropic.Anthropic(api_key="sk-ant-a", max_retries=0, default_headers={**CACHE_ON, **headers},
                               http_client=openai.DefaultHttpxClient(proxy=f"http://127.0.0.1:{gw["port"]}",
                                                                        verify=verify(gw)))


def rows(gw, msgs: list[dict], n: int) -> list[dict]:
    """The n calls made with this test's prompt, in order (once all of them are recorded)."""
    marker = msgs[0]["content"].split()[-1]
    return wait_rows(gw["tmp"] / "t.db", "SELECT * FROM requests WHERE request_body LIKE ? ORDER BY rowid",
                     (f"%{marker}%",), n)


# -- passthrough: every dialect, every combination of stream and whole ---------------------------------

def openai_call(gw, msgs, stream, usage=True):
    c = oai(gw)
    if stream:
        chunks = list(c.chat.completions.create(model="gpt-4o-mini", messages=msgs, stream=True,
                                                **({"stream_options": {"include_usage": True}} if usage else {})))
        return "".join(ch.choices[0].delta.content or "" for ch in chunks if ch.choices), chunks[-1].usage
    done = c.chat.completions.create(model="gpt-4o-mini", messages=msgs)
    return done.choices[0].message.content, done.usage


def anthropic_call(gw, msgs, stream):
    c = ant(gw)
    if stream:
        with c.messages.stream(model="claude-sonnet-4-6", max_tokens=100, messages=msgs) as s:
            message = s.get_final_message()
    else:
        message = c.messages.create(model="claude-sonnet-4-6", max_tokens=100, messages=msgs)
    return "".join(b.text for b in message.content if b.type == "text"), message.usage


def gemini_call(gw, msgs, stream, monkeypatch):
    monkeypatch.setenv("HTTPS_PROXY", f"http://127.0.0.1:{gw['port']}")
    monkeypatch.setenv("SSL_CERT_FILE", str(gw["tmp"] / "conf" / "mitmproxy-ca-cert.pem"))
    g = genai.Client(api_key="AIza-a", http_options=types.HttpOptions(headers=CACHE_ON))
    text = msgs[0]["content"]
    if stream:
        parts = list(g.models.generate_content_stream(model="gemini-2.5-flash", contents=text))
        return "".join(p.text or "" for p in parts), parts[-1].usage_metadata
    answer = g.models.generate_content(model="gemini-2.5-flash", contents=text)
    return answer.text, answer.usage_metadata


@pytest.mark.parametrize("second", [False, True], ids=["then-whole", "then-stream"])
@pytest.mark.parametrize("first", [False, True], ids=["whole", "stream"])
@pytest.mark.parametrize("dialect", ["openai", "openai-usage-unasked", "anthropic", "gemini"])
def test_passthrough_hit_in_every_combination(gw, mock, monkeypatch, dialect, first, second):
    """Whatever shape the hit is served in, its row has the original call's usage (never an
    estimate, even for a stream whose client did not ask for usage) and saves exactly its cost."""
    msgs = prompt()
    call = {"openai": openai_call, "openai-usage-unasked": lambda g, m, s: openai_call(g, m, s, usage=False),
            "anthropic": anthropic_call, "gemini": lambda g, m, s: gemini_call(g, m, s, monkeypatch)}[dialect]
    text1, usage1 = call(gw, msgs, first)
    text2, usage2 = call(gw, msgs, second)
    assert text2 == text1 and text1
    if dialect != "openai-usage-unasked":
        assert usage2 == usage1  # the hit reports what the original call used
    assert upstream_calls(mock) == 1
    miss, hit = rows(gw, msgs, 2)
    assert (miss["cache_hit"], hit["cache_hit"]) == (0, 1)
    assert (miss["usage_estimated"], miss["error"]) == (0, None)
    assert (hit["input_tokens"], hit["output_tokens"]) == (miss["input_tokens"], miss["output_tokens"])
    assert (hit["usage_estimated"], hit["error"]) == (0, None)
    assert hit["cost_usd"] == 0 and hit["cost_saved_usd"] == miss["cost_usd"] > 0
    assert hit["status"] == "ok" and hit["stream"] == int(second)
    spans = query(gw["tmp"] / "t.db", "SELECT name, attributes FROM spans WHERE request_id = ?", (hit["id"],))
    assert any(s["name"] == "cache lookup" and json.loads(s["attributes"])["hit"] for s in spans)
    assert not any(s["name"].startswith("upstream") for s in spans)


def test_hit_is_marked_with_a_header(gw):
    msgs = prompt()
    c = oai(gw)
    first = c.chat.completions.with_raw_response.create(model="gpt-4o-mini", messages=msgs)
    second = c.chat.completions.with_raw_response.create(model="gpt-4o-mini", messages=msgs)
    assert (first.headers["x-tapgate-cache"], second.headers["x-tapgate-cache"]) == ("MISS", "HIT")
    assert second.parse().choices[0].message.content == first.parse().choices[0].message.content


def test_ttl_expiry(gw, mock):
    msgs = prompt()
    c = oai(gw, **{"X-Tapgate-Cache-Ttl": "1"})
    c.chat.completions.create(model="gpt-4o-mini", messages=msgs)
    stored = time.monotonic()
    c.chat.completions.create(model="gpt-4o-mini", messages=msgs)
    assert upstream_calls(mock) == 1
    while upstream_calls(mock) == 1:  # hits until the entry's second is over, then a miss
        assert time.monotonic() - stored < 10, "the entry never expired"
        time.sleep(0.1)
        c.chat.completions.create(model="gpt-4o-mini", messages=msgs)


def test_tenants_never_share_entries(gw, mock):
    """Without gateway keys the tenant is the provider key's fingerprint; with them, the gateway key."""
    msgs = prompt()
    oai(gw, "sk-tenant-a").chat.completions.create(model="gpt-4o-mini", messages=msgs)
    oai(gw, "sk-tenant-b").chat.completions.create(model="gpt-4o-mini", messages=msgs)
    assert upstream_calls(mock) == 2
    x, y = gw["keys"]["x"], gw["keys"]["y"]
    oai(gw, **{"X-Tapgate-Key": x}).chat.completions.create(model="gpt-4o-mini", messages=msgs)
    oai(gw, **{"X-Tapgate-Key": y}).chat.completions.create(model="gpt-4o-mini", messages=msgs)
    assert upstream_calls(mock) == 4
    oai(gw, "sk-tenant-z", **{"X-Tapgate-Key": x}).chat.completions.create(model="gpt-4o-mini", messages=msgs)
    assert upstream_calls(mock) == 4  # key x's own entry, whatever provider key its app holds


def test_cache_by_customer(gw, mock):
    msgs = prompt()
    opts = {"X-Tapgate-Cache-Options": json.dumps({"cache_by_customer": True})}
    for customer in ("cust-a", "cust-b", "cust-a"):
        oai(gw, **opts, **{"X-Tapgate-Customer-Identifier": customer}).chat.completions.create(
            model="gpt-4o-mini", messages=msgs)
    assert upstream_calls(mock) == 2  # a's entry never served to b; a's second call is a hit


@pytest.mark.parametrize("by_model, upstream", [(True, 2), (False, 1)])
def test_is_cached_by_model(gw, mock, by_model, upstream):
    msgs = prompt()
    params = {"X-Tapgate-Params": json.dumps({"cache_options": {"is_cached_by_model": by_model}})}
    oai(gw, **params).chat.completions.create(model="gpt-4o", messages=msgs)
    oai(gw, **params).chat.completions.create(model="gpt-4o-mini", messages=msgs)
    assert upstream_calls(mock) == upstream


def test_a_stampede_of_identical_calls_goes_upstream_once(gw, mock):
    msgs = prompt()

    async def burst():
        async with openai.AsyncOpenAI(api_key="sk-tenant-a", max_retries=0,
                                      default_headers={**CACHE_ON, "x-mock-delay-ms": "300"},
                                      http_client=openai.DefaultAsyncHttpxClient(
                                          proxy=f"http://127.0.0.1:{gw['port']}", verify=verify(gw))) as c:
            return await asyncio.gather(*(c.chat.completions.create(model="gpt-4o-mini", messages=msgs)
                                          for _ in range(50)))

    answers = asyncio.run(burst())
    assert upstream_calls(mock) == 1
    assert len({a.choices[0].message.content for a in answers}) == 1
    assert sum(r["cache_hit"] for r in rows(gw, msgs, 50)) == 49


def test_errors_and_sampled_calls_are_never_stored(gw, mock):
    msgs = prompt()
    with pytest.raises(openai.InternalServerError):
        oai(gw, **{"x-mock-status": "500"}).chat.completions.create(model="gpt-4o-mini", messages=msgs)
    oai(gw).chat.completions.create(model="gpt-4o-mini", messages=msgs)
    assert upstream_calls(mock) == 2  # the error was not served from the cache
    hot = prompt()
    for _ in range(2):
        oai(gw).chat.completions.create(model="gpt-4o-mini", messages=hot, temperature=0.9)
    assert upstream_calls(mock) == 4


def test_bypass_and_refresh(gw, mock):
    msgs = prompt()
    oai(gw).chat.completions.create(model="gpt-4o-mini", messages=msgs)
    oai(gw, **{"X-Tapgate-Cache": "bypass"}).chat.completions.create(model="gpt-4o-mini", messages=msgs)
    assert upstream_calls(mock) == 2
    oai(gw, **{"X-Tapgate-Cache": "refresh"}).chat.completions.create(model="gpt-4o-mini", messages=msgs)
    assert upstream_calls(mock) == 3
    oai(gw).chat.completions.create(model="gpt-4o-mini", messages=msgs)
    assert upstream_calls(mock) == 3


def test_a_bad_cache_header_is_a_400_in_the_providers_shape(gw):
    with pytest.raises(openai.BadRequestError) as e:
        oai(gw, **{"X-Tapgate-Cache-Ttl": "soon"}).chat.completions.create(model="gpt-4o-mini", messages=prompt())
    assert e.value.body["param"] == "cache_ttl"


# -- router mode ---------------------------------------------------------------------------------------

def router(gw, key: str = MASTER) -> openai.OpenAI:
    return openai.OpenAI(base_url=gw["router"], api_key=key, max_retries=0)


def routed(c, model, msgs, stream, usage=True, **extra):
    body = dict(model=model, messages=msgs, extra_body={"cache_enabled": True, **extra.pop("extra_body", {})},
                **extra)
    if stream:
        chunks = list(c.chat.completions.create(
            stream=True, **({"stream_options": {"include_usage": True}} if usage else {}), **body))
        return "".join(ch.choices[0].delta.content or "" for ch in chunks if ch.choices), chunks[-1].usage
    done = c.chat.completions.create(**body)
    return done.choices[0].message.content, done.usage


@pytest.mark.parametrize("second", [False, True], ids=["then-whole", "then-stream"])
@pytest.mark.parametrize("first", [False, True], ids=["whole", "stream"])
@pytest.mark.parametrize("model", ["openai/gpt-4o-mini", "anthropic/claude-sonnet-4-5", "gemini/gemini-2.5-flash"])
@pytest.mark.parametrize("usage", [True, False], ids=["usage", "usage-unasked"])
def test_router_hit_in_every_combination(gw, mock, model, first, second, usage):
    msgs = prompt()
    text1, usage1 = routed(router(gw), model, msgs, first, usage)
    text2, usage2 = routed(router(gw), model, msgs, second, usage)
    assert text1 and text2 == text1
    if usage:
        assert (usage2.prompt_tokens, usage2.completion_tokens) == (usage1.prompt_tokens, usage1.completion_tokens)
    assert upstream_calls(mock) == 1
    miss, hit = rows(gw, msgs, 2)
    assert (hit["cache_hit"], hit["cost_usd"], hit["mode"], hit["routed_to"]) == (1, 0, "router", model)
    assert (hit["input_tokens"], hit["output_tokens"]) == (miss["input_tokens"], miss["output_tokens"])
    assert (hit["usage_estimated"], hit["error"]) == (0, None)
    assert hit["cost_saved_usd"] == miss["cost_usd"] > 0


def test_router_keys_and_customers_are_isolated(gw, mock):
    msgs = prompt()
    routed(router(gw, gw["keys"]["x"]), "openai/gpt-4o-mini", msgs, False)
    routed(router(gw, gw["keys"]["y"]), "openai/gpt-4o-mini", msgs, False)
    assert upstream_calls(mock) == 2
    opts = {"cache_options": {"cache_by_customer": True}}
    for customer in ("a", "b", "a"):
        routed(router(gw), "openai/gpt-4o-mini", msgs, False, extra_body={"customer_identifier": customer, **opts})
    assert upstream_calls(mock) == 4


def test_router_stampede_goes_upstream_once(gw, mock):
    msgs = prompt()
    admin(mock, "POST", "/_mock/program", {"path_contains": "/chat/completions", "delay_ms": 300})

    async def burst():
        async with openai.AsyncOpenAI(base_url=gw["router"], api_key=MASTER, max_retries=0) as c:
            return await asyncio.gather(*(c.chat.completions.create(model="openai/gpt-4o-mini", messages=msgs,
                                                                     extra_body={"cache_enabled": True})
                                          for _ in range(50)))

    answers = asyncio.run(burst())
    assert upstream_calls(mock) == 1 and len({a.choices[0].message.content for a in answers}) == 1


def test_entries_survive_a_restart(gw, mock):
    msgs = prompt()
    oai(gw).chat.completions.create(model="gpt-4o-mini", messages=msgs)
    assert gw["process"].stop() == 0
    process, port = start_gateway(*gw["args"])
    gw.update(process=process, port=port, router=router_url(process))
    process.wait_for(r"tapgate: [1-9]\d* cache entries loaded")
    oai(gw).chat.completions.create(model="gpt-4o-mini", messages=msgs)
    assert upstream_calls(mock) == 1


def test_a_cut_stream_is_never_stored(gw, mock):
    msgs = prompt()
    c = oai(gw, **{"x-mock-fault": "cut"})
    with pytest.raises(openai.APIError):
        list(c.chat.completions.create(model="gpt-4o-mini", messages=msgs, stream=True))
    list(oai(gw).chat.completions.create(model="gpt-4o-mini", messages=msgs, stream=True))
    assert upstream_calls(mock) == 2


def test_a_stream_read_to_its_final_event_is_ok_and_cached_though_the_client_left_first(gw, mock):
    """The openai SDK closes its connection as soon as it reads `data: [DONE]`; here the provider's end
    of body comes a second later, so the gateway sees the client leave (issue 11)."""
    msgs = prompt()
    late = oai(gw, **{"x-mock-fault": "late-end:1000"})
    chunks = list(late.chat.completions.create(model="gpt-4o-mini", messages=msgs, stream=True,
                                               stream_options={"include_usage": True}))
    assert chunks[-1].usage is not None
    (row,) = rows(gw, msgs, 1)
    assert (row["status"], row["error"], row["usage_estimated"]) == ("ok", None, 0)
    assert row["output_tokens"] == chunks[-1].usage.completion_tokens and row["cache_hit"] == 0
    again = oai(gw).chat.completions.with_raw_response.create(model="gpt-4o-mini", messages=msgs, stream=True,
                                                              stream_options={"include_usage": True})
    assert again.headers["x-tapgate-cache"] == "HIT"
    assert [c.usage for c in again.parse()][-1] == chunks[-1].usage
    assert upstream_calls(mock) == 1


@pytest.mark.parametrize("second", [False, True], ids=["then-whole", "then-stream"])
@pytest.mark.parametrize("first", [False, True], ids=["whole", "stream"])
def test_router_v1_messages_hits_from_an_untranslated_anthropic_answer(gw, mock, first, second):
    msgs = prompt()
    c = anthropic.Anthropic(base_url=gw["router"].removesuffix("/v1"), api_key=MASTER, max_retries=0)

    def ask(stream):
        kw = dict(model="anthropic/claude-sonnet-4-5", max_tokens=100, messages=msgs,
                  extra_body={"cache_enabled": True})
        if stream:
            with c.messages.stream(**kw) as s:
                return s.get_final_message()
        return c.messages.create(**kw)

    one, two = ask(first), ask(second)
    assert [b.text for b in two.content if b.type == "text"] == [b.text for b in one.content if b.type == "text"]
    assert two.usage.output_tokens == one.usage.output_tokens
    assert upstream_calls(mock) == 1
    miss, hit = rows(gw, msgs, 2)
    assert (hit["cache_hit"], hit["cost_usd"]) == (1, 0) and hit["cost_saved_usd"] == miss["cost_usd"] > 0
    assert (hit["input_tokens"], hit["output_tokens"]) == (miss["input_tokens"], miss["output_tokens"])
    assert (hit["usage_estimated"], hit["error"]) == (0, None)
