"""scripts/mock_provider.py answers the official SDKs with captured wire bytes and misbehaves on request."""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
import zlib

import anthropic
import brotli
import openai
import pytest
from google import genai
from google.genai import errors as genai_errors
from google.genai import types
from support import DATA, ROOT, fixture_bytes, load_script, until

MOCK = ROOT / "scripts" / "mock_provider.py"
USER = [{"role": "user", "content": "What is the capital of the UK?"}]
TOOLS = [{"type": "function", "function": {"name": "get_capital", "parameters": {"type": "object", "properties": {}}}}]


fx = load_script("mock_fixtures")


def start_mock(*args: str) -> tuple[subprocess.Popen, int]:
    """The mock as a subprocess; its port read from the one MOCK_PORT line (blocks until it listens)."""
    proc = subprocess.Popen([sys.executable, str(MOCK), "--port", "0", *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    line = proc.stdout.readline()
    assert line.startswith("MOCK_PORT="), proc.stderr.read()
    return proc, int(line.strip().partition("=")[2])


@pytest.fixture(scope="module")
def port():
    proc, port = start_mock("--data", str(DATA))
    yield port
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=10) == 0
    assert proc.stdout.read() == ""  # exactly one line on stdout


@pytest.fixture(autouse=True)
def fresh(port, monkeypatch):
    monkeypatch.setenv("NO_PROXY", "127.0.0.1")
    admin(port, "POST", "/_mock/reset")


def admin(port: int, method: str, path: str, doc=None):
    data = json.dumps(doc).encode() if doc is not None else b""
    req = urllib.request.Request(f"http://127.0.0.1:{port}{path}", data=data if method == "POST" else None,
                                 method=method)
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    with opener.open(req, timeout=10) as response:
        return json.loads(response.read())


def oai(port: int) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key="sk-test", max_retries=0)


def ant(port: int) -> anthropic.Anthropic:
    return anthropic.Anthropic(base_url=f"http://127.0.0.1:{port}", api_key="sk-ant-test", max_retries=0)


def gem(port: int, **headers: str) -> genai.Client:
    options = types.HttpOptions(base_url=f"http://127.0.0.1:{port}", headers=headers or None)
    return genai.Client(api_key="gm-test", http_options=options)


# --- fixture variants, rendered once at start-up -----------------------------------------------------------


def test_strip_usage_is_what_openai_sends_without_include_usage():
    events = fx.split_events(fixture_bytes("openai", "chat_completion_stream_tool_call_include_usage.sse"))
    stripped = fx.strip_usage(events)
    assert len(stripped) == len(events) - 1 and stripped[-1] == b"data: [DONE]\n\n"
    assert not any(b'"usage"' in e for e in stripped)
    for before, after in zip(events[:-2], stripped[:-1], strict=False):
        original = json.loads(before.removeprefix(b"data: "))
        assert original.pop("usage") is None
        assert json.loads(after.removeprefix(b"data: ")) == original


def test_split_events_keeps_every_byte_and_framing():
    data = fixture_bytes("gemini", "stream_generate_content_text.sse")
    events = fx.split_events(data)
    assert len(events) == 3 and all(e.endswith(b"}\r\n\r\n") for e in events)
    tail_less = fixture_bytes("anthropic", "messages_stream_text_then_tool_use.sse")  # no blank line at EOF
    assert b"".join(fx.split_events(tail_less)) == tail_less


def test_rendered_stream_is_one_chunk_per_event():
    fixtures = fx.load(DATA)
    fixture = fixtures["anthropic/messages_stream_text.sse"]
    rendered = fx.render(fixture)
    assert rendered.head.startswith(b"HTTP/1.1 200 OK\r\n") and b"transfer-encoding: chunked" in rendered.head
    assert [p.split(b"\r\n", 1)[1][:-2] for p in rendered.pieces] == list(fixture.events)
    assert rendered.whole.endswith(b"0\r\n\r\n")


# --- OpenAI ------------------------------------------------------------------------------------------------


def test_chat_completion_is_the_fixture_byte_for_byte(port):
    raw = oai(port).chat.completions.with_raw_response.create(model="gpt-4o", messages=USER)
    assert raw.http_response.content == fixture_bytes("openai", "chat_completion_text.json")
    assert raw.http_response.headers["content-type"] == "application/json"
    completion = raw.parse()
    assert completion.model == "gpt-4o-2024-08-06" and completion.usage.total_tokens == 51


def test_chat_stream_without_include_usage_has_no_usage_chunk(port):
    chunks = list(oai(port).chat.completions.create(model="gpt-4o", messages=USER, stream=True))
    assert all(c.usage is None and c.choices for c in chunks)
    assert "".join(c.choices[0].delta.content or "" for c in chunks) == "The capital of the UK is London."


def test_chat_stream_with_include_usage_ends_with_usage(port):
    chunks = list(oai(port).chat.completions.create(model="gpt-4o", messages=USER, stream=True,
                                                     stream_options={"include_usage": True}))
    assert chunks[-1].choices == [] and chunks[-1].usage.total_tokens == 87
    assert all(c.usage is None for c in chunks[:-1])


def test_chat_tool_calls(port):
    client = oai(port)
    message = client.chat.completions.create(model="gpt-4o", messages=USER, tools=TOOLS).choices[0].message
    assert message.tool_calls[0].function.name == "Query"
    args = ""
    for chunk in client.chat.completions.create(model="gpt-4o", messages=USER, tools=TOOLS, stream=True):
        for call in (chunk.choices[0].delta.tool_calls or []) if chunk.choices else []:
            args += call.function.arguments or ""
    assert json.loads(args) == {"country": "UK"}


def test_tool_result_as_last_turn_gets_text_so_tool_loops_end(port):
    turns = USER + [{"role": "assistant", "tool_calls": [{"id": "c1", "type": "function", "function": {
        "name": "get_capital", "arguments": "{}"}}]}, {"role": "tool", "tool_call_id": "c1", "content": "London"}]
    message = oai(port).chat.completions.create(model="gpt-4o", messages=turns, tools=TOOLS).choices[0].message
    assert message.tool_calls is None and message.content


def test_responses(port):
    client = oai(port)
    response = client.responses.create(model="gpt-4o-mini", input="hi")
    assert response.output_text.startswith("I can't provide") and response.usage.total_tokens == 64
    with client.responses.stream(model="gpt-4o", input="hi") as stream:
        assert stream.get_final_response().output_text == "The capital of France is Paris."
    events = list(client.responses.create(model="gpt-4o", input="hi", stream=True,
                                          tools=[{"type": "function", "name": "get_capital", "parameters": {}}]))
    assert "response.function_call_arguments.delta" in {e.type for e in events}
    assert events[-1].type == "response.completed"


def test_embeddings_base64_and_float(port):
    client = oai(port)
    base64_vector = client.embeddings.create(model="text-embedding-3-small", input="hi").data[0].embedding
    float_vector = client.embeddings.create(model="text-embedding-3-small", input="hi",
                                            encoding_format="float").data[0].embedding
    assert len(base64_vector) == len(float_vector) == 1536
    assert base64_vector[:3] == pytest.approx(float_vector[:3])


def test_prefixed_paths_azure_and_openrouter(port):
    azure = openai.AzureOpenAI(azure_endpoint=f"http://127.0.0.1:{port}", api_key="az", api_version="2024-10-21",
                               max_retries=0)
    assert azure.chat.completions.create(model="my-deployment", messages=USER).usage.total_tokens == 51
    router = openai.OpenAI(base_url=f"http://127.0.0.1:{port}/api/v1", api_key="or", max_retries=0)
    assert router.chat.completions.create(model="openai/gpt-4o", messages=USER).usage.total_tokens == 51
    seen = [r["path"] for r in admin(port, "GET", "/_mock/requests")]
    assert seen == ["/openai/deployments/my-deployment/chat/completions", "/api/v1/chat/completions"]


@pytest.mark.parametrize("fixture,status,error", [
    ("openai/error_429_rate_limit_tokens.json", None, openai.RateLimitError),
    ("openai/error_401_invalid_api_key.json", None, openai.AuthenticationError),
    ("openai/error_400_context_length_exceeded.json", 400, openai.BadRequestError),
    (None, 404, openai.NotFoundError),
    (None, 503, openai.InternalServerError),
])
def test_openai_errors_raise_the_sdk_classes(port, fixture, status, error):
    headers = {"x-mock-fixture": fixture} if fixture else {}
    if status:
        headers["x-mock-status"] = str(status)
    with pytest.raises(error) as info:
        oai(port).chat.completions.create(model="gpt-4o", messages=USER, stream=True, extra_headers=headers)
    assert info.value.status_code == status or fixture.split("_")[1] == str(info.value.status_code)


def test_error_fixture_carries_its_recorded_headers(port):
    with pytest.raises(openai.RateLimitError) as info:
        oai(port).chat.completions.create(model="gpt-4o", messages=USER,
                                          extra_headers={"x-mock-fixture": "openai/error_429_rate_limit_tokens.json"})
    assert info.value.response.headers["x-ratelimit-reset-requests"] == "17ms"
    assert info.value.code == "rate_limit_exceeded"


# --- Anthropic ---------------------------------------------------------------------------------------------


def test_anthropic_messages(port):
    client = ant(port)
    message = client.messages.create(model="claude-mock", max_tokens=64, messages=USER)
    assert message.content[0].text.startswith("Hello!") and message.usage.output_tokens == 29
    with client.messages.stream(model="claude-mock", max_tokens=64, messages=USER) as stream:
        final = stream.get_final_message()
    assert final.content[0].text == "[12345,67890]" and final.usage.output_tokens == 10


def test_anthropic_tool_use(port):
    client = ant(port)
    tools = [{"name": "get_weather", "input_schema": {"type": "object"}}]
    message = client.messages.create(model="claude-mock", max_tokens=64, messages=USER, tools=tools)
    assert message.stop_reason == "tool_use"
    assert message.content[0].input == {"location": "San Francisco, CA", "units": "f"}
    with client.messages.stream(model="claude-mock", max_tokens=64, messages=USER, tools=tools) as stream:
        final = stream.get_final_message()
    assert final.content[0].type == "tool_use" and final.content[0].name == "get_weather"


@pytest.mark.parametrize("status,error,should_retry", [
    (429, anthropic.RateLimitError, "true"), (529, anthropic.OverloadedError, "true"),
    (400, anthropic.BadRequestError, "false"), (500, anthropic.InternalServerError, None),
])
def test_anthropic_errors(port, status, error, should_retry):
    with pytest.raises(error) as info:
        ant(port).messages.create(model="c", max_tokens=5, messages=USER, extra_headers={"x-mock-status": str(status)})
    assert info.value.status_code == status
    assert info.value.response.headers.get("x-should-retry") == should_retry


# --- Gemini ------------------------------------------------------------------------------------------------


def test_gemini_generate_content_and_stream(port):
    client = gem(port)
    response = client.models.generate_content(model="gemini-2.5-flash", contents="hi")
    assert response.text == "Hello! How can I help you today?" and response.usage_metadata.thoughts_token_count == 34
    chunks = list(client.models.generate_content_stream(model="gemini-2.0-flash", contents="hi"))
    assert "".join(c.text for c in chunks) == "The capital of France is Paris.\n"
    assert chunks[-1].usage_metadata.total_token_count == 21


def test_gemini_function_calls(port):
    client = gem(port)
    config = types.GenerateContentConfig(tools=[types.Tool(function_declarations=[
        types.FunctionDeclaration(name="weather", parameters={"type": "OBJECT", "properties": {}})])])
    response = client.models.generate_content(model="gemini-3-pro-preview", contents="hi", config=config)
    assert response.function_calls[0].name == "weather"
    chunks = list(client.models.generate_content_stream(model="gemini-3-pro-preview", contents="hi", config=config))
    assert [c.function_calls[0].name for c in chunks if c.function_calls] == ["get_country"]


def test_gemini_embeddings_and_errors(port):
    client = gem(port)
    embeddings = client.models.embed_content(model="gemini-embedding-001", contents=["a", "b"]).embeddings
    assert len(embeddings) == 2 and len(embeddings[0].values) == 1536
    limited, unavailable = gem(port, **{"x-mock-status": "429"}), gem(port, **{"x-mock-status": "503"})
    with pytest.raises(genai_errors.ClientError) as info:
        limited.models.generate_content(model="gemini-2.5-flash", contents="hi")
    assert info.value.code == 429 and info.value.status == "RESOURCE_EXHAUSTED"
    with pytest.raises(genai_errors.ServerError) as info:
        unavailable.models.generate_content(model="gemini-2.5-flash", contents="hi")
    assert info.value.code == 503


def test_gemini_stream_without_alt_sse_is_a_json_array(port):
    response = raw_post(port, "/v1beta/models/gemini-2.0-flash:streamGenerateContent", b'{"contents":[]}')
    status, headers = response.head()
    assert status == 200 and headers["content-type"] == "application/json; charset=UTF-8"
    pieces = [piece for _, piece in response.chunks()]
    assert pieces[0].startswith(b"[{") and pieces[1].startswith(b",\r\n{") and pieces[-1] == b"]"
    sse = fx.split_events(fixture_bytes("gemini", "stream_generate_content_text.sse"))
    assert json.loads(b"".join(pieces)) == [json.loads(e.removeprefix(b"data: ")) for e in sse]


# --- compression -------------------------------------------------------------------------------------------


@pytest.mark.parametrize("encoding", ["gzip", "br", "deflate"])
def test_sdks_decode_compressed_bodies_and_streams(port, encoding):
    header = {"x-mock-encoding": encoding}
    completion = oai(port).chat.completions.create(model="gpt-4o", messages=USER, extra_headers=header)
    assert completion.usage.total_tokens == 51
    chunks = list(oai(port).chat.completions.create(model="gpt-4o", messages=USER, stream=True, extra_headers=header))
    assert "".join(c.choices[0].delta.content or "" for c in chunks) == "The capital of the UK is London."
    with ant(port).messages.stream(model="c", max_tokens=5, messages=USER, extra_headers=header) as stream:
        assert stream.get_final_message().content[0].text == "[12345,67890]"
    gemini = gem(port, **header)  # a Client closes its HTTP client when collected, so keep it referenced
    chunks = list(gemini.models.generate_content_stream(model="gemini-2.0-flash", contents="hi"))
    assert "".join(c.text for c in chunks) == "The capital of France is Paris.\n"


@pytest.mark.parametrize("encoding", ["gzip", "br"])
def test_compressed_stream_is_flushed_per_event(port, encoding):
    response = raw_post(port, "/v1/messages", b'{"stream":true}', {"x-mock-encoding": encoding})
    assert response.head()[1]["content-encoding"] == encoding
    decompressor = zlib.decompressobj(31) if encoding == "gzip" else brotli.Decompressor()
    decode = decompressor.decompress if encoding == "gzip" else decompressor.process
    events = fx.split_events(fixture_bytes("anthropic", "messages_stream_text.sse"))
    decoded = [decode(piece) for _, piece in response.chunks()]
    assert decoded[: len(events)] == events  # every chunk decodes to exactly one whole event


# --- faults, delays, echo, programs ------------------------------------------------------------------------


def test_stream_arrives_incrementally(port):
    delay = 0.08
    response = raw_post(port, "/v1/messages", b'{"stream":true}', {"x-mock-chunk-delay-ms": str(int(delay * 1000))})
    assert response.head()[0] == 200
    arrivals = [at for at, _ in response.chunks()]
    events = len(fx.split_events(fixture_bytes("anthropic", "messages_stream_text.sse")))
    assert len(arrivals) == events
    # The first event was in hand long before the last one had been written.
    assert arrivals[-1] - arrivals[0] >= 0.75 * delay * (events - 1)


def test_slow_first_byte_sends_headers_first(port):
    response = raw_post(port, "/v1/messages", b'{"stream":true}', {"x-mock-fault": "slow-first-byte:300"})
    response.head()
    headers_at = time.monotonic()
    first_at, _ = next(response.chunks())
    assert first_at - headers_at >= 0.2


def test_echo_shows_what_the_provider_received(port):
    raw = oai(port).chat.completions.with_raw_response.create(
        model="gpt-4o", messages=USER, extra_headers={"x-mock-echo": "1"}, extra_query={"api-version": "1"})
    echo = raw.http_response.json()
    assert echo["method"] == "POST" and echo["path"] == "/v1/chat/completions" and echo["query"] == "api-version=1"
    assert echo["headers"]["authorization"] == "Bearer sk-test"
    assert json.loads(echo["body"]) == {"model": "gpt-4o", "messages": USER}


def test_nest_wraps_a_body_and_adds_a_deep_event_to_a_stream(port):
    whole = oai(port).chat.completions.with_raw_response.create(
        model="gpt-4o", messages=USER, extra_headers={"x-mock-nest": "3"}).http_response.content
    assert whole.startswith(b'[[[{"id"') and whole.endswith(b"]]]") and json.loads(whole)[0][0][0]["id"]
    events = oai(port).chat.completions.with_raw_response.create(
        model="gpt-4o", messages=USER, stream=True, extra_headers={"x-mock-nest": "3"}).http_response.read()
    assert events.split(b"\n\n")[1] == b"data: [[[]]]" and events.rstrip().endswith(b"data: [DONE]")


def test_the_log_tells_whether_a_connection_is_still_open(port):
    sock = socket.create_connection(("127.0.0.1", port))
    sock.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nx-mock-fault: silent\r\n"
                 b"Content-Length: 2\r\n\r\n{}")
    assert until(lambda: [r["connection_open"] for r in admin(port, "GET", "/_mock/requests")] == [True])
    sock.close()
    assert until(lambda: [r["connection_open"] for r in admin(port, "GET", "/_mock/requests")] == [False])


def test_chunked_and_pipelined_requests(port):
    sock = socket.create_connection(("127.0.0.1", port))
    body = b'{"model":"gpt-4o"}'
    chunked = (b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nx-mock-echo: 1\r\nTransfer-Encoding: chunked\r\n\r\n"
               b"5\r\n" + body[:5] + b"\r\n" + b"%x\r\n" % (len(body) - 5) + body[5:] + b"\r\n0\r\n\r\n")
    plain = b"GET /v1/models HTTP/1.1\r\nHost: x\r\n\r\n"
    sock.sendall(chunked + plain)  # two requests in one write
    response = RawResponse(sock)
    assert response.head()[0] == 200 and json.loads(response.body())["body"] == body.decode()
    assert response.head()[0] == 200 and json.loads(response.body())["object"] == "list"
    sock.close()


def test_reset_is_a_connection_error(port):
    with pytest.raises(openai.APIConnectionError):
        oai(port).chat.completions.create(model="gpt-4o", messages=USER, extra_headers={"x-mock-fault": "reset"})


def test_silent_never_answers(port):
    with pytest.raises(openai.APITimeoutError):
        oai(port).chat.completions.create(model="gpt-4o", messages=USER, timeout=0.3,
                                          extra_headers={"x-mock-fault": "silent"})


def test_cut_stream_is_an_error_or_truncated(port):
    with pytest.raises(openai.APIConnectionError):
        for _ in oai(port).chat.completions.create(model="gpt-4o", messages=USER, stream=True,
                                                   extra_headers={"x-mock-fault": "cut"}):
            pass
    response = raw_post(port, "/v1/messages", b'{"stream":true}', {"x-mock-fault": "cut"})
    response.head()
    with pytest.raises(EOFError):  # half the events, then the connection closes with no zero-length chunk
        list(response.chunks())
    events = len(fx.split_events(fixture_bytes("anthropic", "messages_stream_text.sse")))
    assert response.received == events // 2


def test_program_queue_is_fifo_and_counted(port):
    admin(port, "POST", "/_mock/program", {"path_contains": "/chat/completions", "times": 2, "status": 503,
                                           "headers": {"retry-after": "0"}})
    admin(port, "POST", "/_mock/program", {"path_contains": "/chat/completions",
                                           "fixture": "openai/error_429_insufficient_quota.json"})
    client = oai(port)
    for _ in range(2):
        with pytest.raises(openai.InternalServerError) as info:
            client.chat.completions.create(model="gpt-4o", messages=USER)
        assert info.value.status_code == 503 and info.value.response.headers["retry-after"] == "0"
    with pytest.raises(openai.RateLimitError) as info:
        client.chat.completions.create(model="gpt-4o", messages=USER)
    assert info.value.code == "insufficient_quota"
    assert client.chat.completions.create(model="gpt-4o", messages=USER).usage.total_tokens == 51
    log = admin(port, "GET", "/_mock/requests")
    assert len(log) == 4 and json.loads(log[0]["body"])["model"] == "gpt-4o"
    admin(port, "POST", "/_mock/reset")
    assert admin(port, "GET", "/_mock/requests") == []


def test_bad_controls_are_reported(port):
    with pytest.raises(openai.BadRequestError, match="unknown fixture"):
        oai(port).chat.completions.create(model="gpt-4o", messages=USER, extra_headers={"x-mock-fixture": "nope.json"})
    with pytest.raises(urllib.error.HTTPError):
        admin(port, "POST", "/_mock/program", {"fault": "explode"})


def test_sigint_exits_cleanly_and_data_defaults_to_the_repositorys():
    proc, port = start_mock()
    assert "openai/chat_completion_text.json" in admin(port, "GET", "/_mock/fixtures")
    proc.send_signal(signal.SIGINT)
    assert proc.wait(timeout=10) == 0


# --- raw HTTP/1.1 client, for what the SDKs hide -----------------------------------------------------------


class RawResponse:
    """Reads responses off a socket; chunks() yields (arrival time, payload) per HTTP chunk as it lands."""

    def __init__(self, sock: socket.socket):
        self.sock, self.buf, self.received = sock, b"", 0

    def _need(self, marker: bytes | int) -> None:
        while (marker not in self.buf) if isinstance(marker, bytes) else (len(self.buf) < marker):
            data = self.sock.recv(65536)
            if not data:
                raise EOFError("connection closed")
            self.buf += data

    def head(self) -> tuple[int, dict[str, str]]:
        self._need(b"\r\n\r\n")
        head, self.buf = self.buf.split(b"\r\n\r\n", 1)
        lines = head.decode("latin-1").split("\r\n")
        self.headers = {k.lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
        return int(lines[0].split(" ")[1]), self.headers

    def body(self) -> bytes:
        length = int(self.headers["content-length"])
        self._need(length)
        body, self.buf = self.buf[:length], self.buf[length:]
        return body

    def chunks(self):
        while True:
            self._need(b"\r\n")
            size = int(self.buf.split(b"\r\n", 1)[0], 16)
            start = self.buf.index(b"\r\n") + 2
            self._need(start + size + 2)
            payload, self.buf = self.buf[start : start + size], self.buf[start + size + 2 :]
            if size == 0:
                return
            self.received += 1
            yield time.monotonic(), payload


def raw_post(port: int, path: str, body: bytes, headers: dict[str, str] | None = None) -> RawResponse:
    sock = socket.create_connection(("127.0.0.1", port), timeout=10)
    extra = "".join(f"{k}: {v}\r\n" for k, v in (headers or {}).items())
    sock.sendall(f"POST {path} HTTP/1.1\r\nHost: x\r\n{extra}Content-Length: {len(body)}\r\n\r\n".encode() + body)
    return RawResponse(sock)


def test_late_end_holds_the_end_of_a_stream_after_its_last_event():
    mock = load_script("mock_provider")
    assert mock.parse_controls({"x-mock-fault": "late-end:250"}.get, {}) == mock.Controls(end_delay=0.25)
    assert mock.parse_controls({"x-mock-fault": "stall-midway:300"}.get, {}) == mock.Controls(stall_midway=0.3)
    with pytest.raises(mock.MockError, match="late-end:<ms>"):
        mock.parse_controls({"x-mock-fault": "late"}.get, {})


def test_the_responses_socket_answers_each_turn_with_its_events():
    """scripts/mock_socket.py: frames as RFC 6455 has them (masked from the client, any length), and a
    response.create answered with the recorded Responses stream; a warm-up turn writes nothing."""
    sock = load_script("mock_socket")
    assert sock.handshake({"sec-websocket-key": "dGhlIHNhbXBsZSBub25jZQ=="}).endswith(
        b"Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\n")  # RFC 6455's own example

    def masked(payload: bytes) -> bytes:
        unmasked = sock.frame(sock.TEXT, payload)
        head = 2 if len(payload) < 126 else 4 if len(payload) < 1 << 16 else 10
        mask = b"\x01\x02\x03\x04"
        return (bytes([unmasked[0], unmasked[1] | 0x80]) + unmasked[2:head] + mask
                + bytes(b ^ mask[i % 4] for i, b in enumerate(payload)))

    for size in (5, 300, 70_000):
        buf = bytearray(masked(b"x" * size))
        assert sock.take_frame(buf[:-1]) is None  # incomplete: wait for more
        assert sock.take_frame(buf) == (sock.TEXT, True, b"x" * size) and not buf

    class Transport:
        def __init__(self):
            self.sent = bytearray()

        def write(self, data):
            self.sent += data

        def is_closing(self):
            return False

    events = tuple(fixture_bytes("openai", "responses_stream_text.sse").split(b"\n\n"))
    for generate, expected in ((True, None), (False, ["response.created", "response.completed"])):
        transport = Transport()
        session = sock.Session(transport, lambda body: events)
        session.feed(masked(json.dumps({"type": "response.create", "model": "m", "generate": generate}).encode()))
        kinds, out = [], bytearray(transport.sent)
        while (got := sock.take_frame(out)) is not None:
            kinds.append(json.loads(got[2])["type"])
        assert kinds[-1] == "response.completed", kinds
        assert kinds == expected if expected else len(kinds) > 2, kinds
