"""What the mock provider answers: the captured fixture that fits a request, pre-rendered into the bytes to write.

Split from serving (mock_provider.py, HTTP and faults) so its hot path only looks bytes up: `Catalog.choose`
picks a fixture by path and body, `Catalog.render` caches the response bytes. Fixture bodies are never
re-serialized: a stream is the fixture's own events, one HTTP chunk each, and the response `model` is the
fixture's, not the request's (byte-for-byte wire realism beats echoing). The few derived variants are
built textually at start-up and named `<fixture>#<variant>`:

- `#no-usage`  OpenAI chat stream as served without `stream_options.include_usage` (spec: no usage):
               `"usage":null` removed from every chunk, the final `"choices":[]` usage chunk dropped.
- `#array`     Gemini `streamGenerateContent` without `?alt=sse`: the same payloads as one streamed JSON
               array `[{…},\\r\\n{…}]`, one element per chunk.
- `#float`     embeddings with `encoding_format` other than base64: the fixture's vector decoded to floats.

Bodies with no capture to copy (model lists, token counts, legacy completions, Gemini embeddings, error
statuses with no captured body) are synthesized under `mock/…` by `synthesized()` and `error_fixture()`.
"""

from __future__ import annotations

import base64
import http
import json
import re
import struct
import zlib
from dataclasses import dataclass, replace
from pathlib import Path

import brotli  # a mitmproxy dependency, so always present next to it

FIXTURE_DIRS = ("openai", "anthropic", "gemini", "openai-compatible")
# Framing is the mock's own; `date` is dropped so a recorded 2023 date does not age a cached response.
DROPPED_HEADERS = {"content-length", "transfer-encoding", "connection", "keep-alive", "content-encoding", "date"}
# Content types as the captures' .headers.json record them, for fixtures that have no .headers.json.
CONTENT_TYPES = {
    ("openai", False): "application/json",
    ("openai", True): "text/event-stream; charset=utf-8",
    ("anthropic", False): "application/json",
    ("anthropic", True): "text/event-stream; charset=utf-8",
    ("gemini", False): "application/json; charset=UTF-8",
    ("gemini", True): "text/event-stream",
}
REASONS = {529: "Overloaded"}
EVENT = re.compile(rb".+?(?:\r\n\r\n|\n\n|\Z)", re.S)  # one SSE event with its blank line (CRLF or LF)
USAGE_NULL = re.compile(rb',\s*"usage":\s*null|"usage":\s*null\s*,')
USAGE_CHUNK = re.compile(rb'"choices":\s*\[\].*"usage":\s*\{|"usage":\s*\{.*"choices":\s*\[\]', re.S)


# The last path segment's ":action" (Gemini, Vertex) -> (endpoint, streams by path).
ACTIONS = {
    "generateContent": ("generate", False), "streamGenerateContent": ("generate", True),
    "embedContent": ("embed", False), "batchEmbedContents": ("batch_embed", False),
    "countTokens": ("gemini_count", False),
    "rawPredict": ("messages", False), "streamRawPredict": ("messages", True),  # Anthropic on Vertex
}
# Path suffixes under any prefix (/v1, /openai/v1, /api/v1, /openai/deployments/{d}, none for DeepSeek).
SUFFIXES = (("/chat/completions", "chat"), ("/messages/count_tokens", "anthropic_count"),
            ("/completions", "completions"), ("/responses", "responses"), ("/embeddings", "embeddings"),
            ("/messages", "messages"), ("/models", "models"))
ENDPOINT_PROVIDERS = {"messages": "anthropic", "anthropic_count": "anthropic", "generate": "gemini", "embed": "gemini",
             "batch_embed": "gemini", "gemini_count": "gemini"}  # every other endpoint is OpenAI-shaped
# endpoint -> fixtures for (text, tool call) x (non-stream, stream). A tool call is served when the request
# offers tools and its last turn is not a tool result, so SDK tool loops end with text.
DEFAULTS = {
    "chat": ("openai/chat_completion_text.json", "openai/chat_completion_tool_call.json",
             "openai/chat_completion_stream_text_after_tool_result_include_usage.sse",
             "openai/chat_completion_stream_tool_call_include_usage.sse"),
    # No non-stream Responses function call was captured, so tools get the text response there.
    "responses": ("openai/responses_response_text.json", "openai/responses_response_text.json",
                  "openai/responses_stream_text.sse", "openai/responses_stream_function_call.sse"),
    "messages": ("anthropic/messages_text_simple.json", "anthropic/messages_tool_use.json",
                 "anthropic/messages_stream_text.sse", "anthropic/messages_stream_tool_use.sse"),
    "generate": ("gemini/generate_content_text.json", "gemini/generate_content_function_call.json",
                 "gemini/stream_generate_content_text.sse", "gemini/stream_generate_content_function_call.sse"),
    "completions": ("mock/openai_completion.json", "mock/openai_completion.json",
                    "mock/openai_completion_stream.sse", "mock/openai_completion_stream.sse"),
}
SINGLE = {"anthropic_count": "mock/anthropic_count_tokens.json", "gemini_count": "mock/gemini_count_tokens.json",
          "embed": "mock/gemini_embed_content.json"}
# x-mock-status >= 400 without x-mock-fixture serves the provider's captured error for that status, with its
# recorded headers (x-should-retry, x-ratelimit-*); other statuses get a synthesized envelope.
ERRORS = {
    "openai": {400: "openai/error_400_context_length_exceeded.json", 401: "openai/error_401_invalid_api_key.json",
               404: "openai/error_404_model_not_found.json", 429: "openai/error_429_rate_limit_tokens.json"},
    "anthropic": {400: "anthropic/error_400_invalid_request.json", 404: "anthropic/error_404_not_found.json",
                  429: "anthropic/error_429_rate_limit.json", 529: "anthropic/error_529_overloaded.json"},
    "gemini": {400: "gemini/error_400_api_key_invalid.json", 404: "gemini/error_404_model_not_found.json",
               429: "gemini/error_429_resource_exhausted.json"},
}

@dataclass(frozen=True, slots=True)
class Fixture:
    key: str  # "<provider>/<file name>[#variant]", the value x-mock-fixture takes
    provider: str  # whose content type applies: openai, anthropic or gemini
    events: tuple[bytes, ...]  # a .json body is one event; a stream is its events in order
    stream: bool
    status: int  # recorded status, else the NNN of error_NNN_…, else 200
    headers: tuple[tuple[str, str], ...]  # recorded response headers minus framing


@dataclass(frozen=True, slots=True)
class Rendered:
    head: bytes  # status line and headers
    pieces: tuple[bytes, ...]  # the body; for a stream, one framed chunk per event
    tail: bytes  # b"0\r\n\r\n" ends a chunked stream; b"" after a Content-Length body
    whole: bytes  # head + pieces + tail, for the single-write fast path


def split_events(data: bytes) -> list[bytes]:
    """SSE bytes cut after each blank line; the last event may end at EOF (anthropic text_then_tool_use)."""
    events = EVENT.findall(data)
    assert b"".join(events) == data
    return events


def strip_usage(events: list[bytes] | tuple[bytes, ...]) -> list[bytes]:
    """What OpenAI sends without include_usage: no `"usage":null` field and no final usage chunk."""
    return [USAGE_NULL.sub(b"", event, count=1) for event in events if not USAGE_CHUNK.search(event)]


def json_array(events: list[bytes] | tuple[bytes, ...]) -> list[bytes]:
    """Gemini SSE events (`data: {…}\\r\\n\\r\\n`) as the pieces of one streamed JSON array."""
    payloads = [e.removeprefix(b"data: ").rstrip(b"\r\n") for e in events if e.startswith(b"data: ")]
    return [b"[" + payloads[0]] + [b",\r\n" + p for p in payloads[1:]] + [b"]"]


def load(root: Path) -> dict[str, Fixture]:
    """Every .json and .sse under root/fixtures/<provider>/, plus the derived and synthesized bodies."""
    fixtures: dict[str, Fixture] = {}
    for provider in FIXTURE_DIRS:
        for path in sorted((root / "fixtures" / provider).iterdir()):
            if path.suffix not in (".json", ".sse") or path.name.endswith((".request.json", ".headers.json")):
                continue
            stream = path.suffix == ".sse"
            data = path.read_bytes()
            status, headers = _recorded(path.with_name(path.name.rsplit(".", 1)[0] + ".headers.json"))
            if status is None:
                status = int(m[1]) if (m := re.search(r"error_(\d{3})_", path.name)) else 200
            fixture = Fixture(f"{provider}/{path.name}", "openai" if provider == "openai-compatible" else provider,
                              tuple(split_events(data)) if stream else (data,), stream, status, headers)
            fixtures[fixture.key] = fixture
            derived = []
            if stream and b'"chat.completion.chunk"' in data and USAGE_NULL.search(data):
                no_usage = tuple(strip_usage(fixture.events))
                derived.append(replace(fixture, key=fixture.key + "#no-usage", events=no_usage))
            if stream and provider == "gemini":
                derived.append(replace(fixture, key=fixture.key + "#array", events=tuple(json_array(fixture.events)),
                                       headers=(("content-type", "application/json; charset=UTF-8"),)))
            fixtures.update((f.key, f) for f in derived)
    embedding = fixtures["openai/embeddings_base64.json"]
    doc = json.loads(embedding.events[0])
    for item in doc["data"]:
        item["embedding"] = [float(f"{x:.9g}") for x in _floats(item["embedding"])]
    floats = replace(embedding, key=embedding.key + "#float", events=(json.dumps(doc, indent=2).encode(),))
    fixtures[floats.key] = floats
    for name, (provider, body) in synthesized(doc["data"][0]["embedding"]).items():
        fixtures[f"mock/{name}"] = Fixture(f"mock/{name}", provider, _events(body), name.endswith(".sse"), 200, ())
    return fixtures


def _events(body: bytes) -> tuple[bytes, ...]:
    return tuple(split_events(body)) if body.startswith((b"data:", b"event:")) else (body,)


def _floats(b64: str) -> list[float]:
    raw = base64.b64decode(b64)
    return list(struct.unpack(f"<{len(raw) // 4}f", raw))


def _recorded(path: Path) -> tuple[int | None, tuple[tuple[str, str], ...]]:
    """(status, headers) from a .headers.json; both recorder shapes ({status_code} and {status: {code}})."""
    if not path.exists():
        return None, ()
    doc = json.loads(path.read_bytes())
    status = doc.get("status_code", doc.get("status"))
    status = status.get("code") if isinstance(status, dict) else status
    headers = []
    for name, value in doc.get("headers", {}).items():
        if name.lower() not in DROPPED_HEADERS:
            headers += [(name, v) for v in (value if isinstance(value, list) else [value])]
    return status, tuple(headers)


def synthesized(vector: list[float]) -> dict[str, tuple[str, bytes]]:
    """Bodies no capture provides, in the documented shapes; values are placeholders, not recordings."""
    def dumps(doc, indent=None) -> bytes:
        return json.dumps(doc, indent=indent).encode() + (b"\n" if indent else b"")

    chunk = {"id": "cmpl-mock", "object": "text_completion", "created": 1727346142,
             "model": "gpt-3.5-turbo-instruct", "choices": [{"text": "", "index": 0, "logprobs": None,
                                                             "finish_reason": None}]}
    pieces = []
    for text, finish in (("Hello", None), (" from", None), (" the mock.", "stop")):
        chunk["choices"][0].update(text=text, finish_reason=finish)
        pieces.append(b"data: " + json.dumps(chunk, separators=(",", ":")).encode() + b"\n\n")
    completion = dict(chunk, choices=[dict(chunk["choices"][0], text="Hello from the mock.")],
                      usage={"prompt_tokens": 5, "completion_tokens": 4, "total_tokens": 9})
    return {
        "openai_completion.json": ("openai", dumps(completion, 2)),
        "openai_completion_stream.sse": ("openai", b"".join(pieces) + b"data: [DONE]\n\n"),
        "openai_models.json": ("openai", dumps({"object": "list", "data": [
            {"id": m, "object": "model", "created": 1727346142, "owned_by": "system"}
            for m in ("gpt-4o-2024-08-06", "gpt-4o-mini-2024-07-18", "text-embedding-3-small")]}, 2)),
        "anthropic_models.json": ("anthropic", dumps({"data": [
            {"type": "model", "id": "claude-sonnet-4-5-20250929", "display_name": "Claude Sonnet 4.5",
             "created_at": "2025-09-29T00:00:00Z"}], "has_more": False,
            "first_id": "claude-sonnet-4-5-20250929", "last_id": "claude-sonnet-4-5-20250929"})),
        "anthropic_count_tokens.json": ("anthropic", b'{"input_tokens":12}'),
        "gemini_models.json": ("gemini", dumps({"models": [
            {"name": "models/gemini-2.5-flash", "displayName": "Gemini 2.5 Flash",
             "supportedGenerationMethods": ["generateContent", "countTokens"]}]}, 2)),
        "gemini_count_tokens.json": ("gemini", dumps({"totalTokens": 9, "promptTokensDetails": [
            {"modality": "TEXT", "tokenCount": 9}]}, 2)),
        "gemini_embed_content.json": ("gemini", dumps({"embedding": {"values": vector}}, 2)),
    }


def batch_embeddings(single: Fixture, count: int) -> Fixture:
    """batchEmbedContents (what google-genai's embed_content calls) answers one embedding per request."""
    vector = json.loads(single.events[0])["embedding"]
    body = json.dumps({"embeddings": [vector] * count}, indent=2).encode() + b"\n"
    return Fixture(f"mock/gemini_batch_embed_contents_{count}.json", "gemini", (body,), False, 200, ())


# Error envelopes per provider for statuses with no captured body (WIRE-FORMATS.md, "Errors").
ANTHROPIC_ERROR_TYPES = {400: "invalid_request_error", 401: "authentication_error", 403: "permission_error",
                         404: "not_found_error", 413: "request_too_large", 429: "rate_limit_error",
                         500: "api_error", 504: "timeout_error", 529: "overloaded_error"}
GOOGLE_STATUSES = {400: "INVALID_ARGUMENT", 401: "UNAUTHENTICATED", 403: "PERMISSION_DENIED", 404: "NOT_FOUND",
                   429: "RESOURCE_EXHAUSTED", 500: "INTERNAL", 503: "UNAVAILABLE", 504: "DEADLINE_EXCEEDED"}


def error_fixture(provider: str, status: int, message: str | None = None) -> Fixture:
    """A provider-shaped error body for a status no capture covers (SYNTHESIZED, message says mock)."""
    message = message or f"mock {status} {reason(status)}"
    if provider == "anthropic":
        doc = {"type": "error", "error": {"type": ANTHROPIC_ERROR_TYPES.get(status, "api_error"), "message": message}}
    elif provider == "gemini":
        doc = {"error": {"code": status, "message": message, "status": GOOGLE_STATUSES.get(status, "UNKNOWN")}}
    else:
        kind = "server_error" if status >= 500 else "invalid_request_error"
        doc = {"error": {"message": message, "type": kind, "param": None, "code": None}}
    return Fixture(f"mock/{provider}_error_{status}.json", provider, (json.dumps(doc, indent=2).encode() + b"\n",),
                   False, status, ())


def reason(status: int) -> str:
    try:
        return http.HTTPStatus(status).phrase
    except ValueError:
        return REASONS.get(status, "Unknown")


def render(fixture: Fixture, status: int | None = None, encoding: str | None = None,
           extra_headers: tuple[tuple[str, str], ...] = ()) -> Rendered:
    """The response bytes for a fixture; deterministic, so callers cache the result."""
    status = status or fixture.status
    headers = [("content-type", CONTENT_TYPES[fixture.provider, fixture.stream])]
    if any(name.lower() == "content-type" for name, _ in fixture.headers + extra_headers):
        headers = []
    headers += [*fixture.headers, *extra_headers]
    compress, finish = _compressor(encoding) if encoding else (None, None)
    if encoding:
        headers.append(("content-encoding", encoding))
    if fixture.stream:
        events = [compress(e) for e in fixture.events] + [finish()] if compress else list(fixture.events)
        pieces = tuple(b"%x\r\n%b\r\n" % (len(e), e) for e in events if e)
        headers.append(("transfer-encoding", "chunked"))
        tail = b"0\r\n\r\n"
    else:
        body = compress(fixture.events[0]) + finish() if compress else fixture.events[0]
        pieces, tail = (body,), b""
        headers.append(("content-length", str(len(body))))
    headers.append(("x-mock-fixture", fixture.key))
    head = f"HTTP/1.1 {status} {reason(status)}\r\n".encode()
    head += b"".join(f"{name}: {value}\r\n".encode("latin-1") for name, value in headers) + b"\r\n"
    return Rendered(head, pieces, tail, head + b"".join(pieces) + tail)


def _compressor(encoding: str):
    """(compress one event and flush it, finish) so a compressed stream still arrives event by event."""
    if encoding == "br":
        c = brotli.Compressor()
        return (lambda data: c.process(data) + c.flush()), c.finish
    if encoding not in ("gzip", "deflate"):
        raise ValueError(f"unsupported encoding {encoding!r} (gzip, br, deflate)")
    z = zlib.compressobj(6, zlib.DEFLATED, 31 if encoding == "gzip" else 15)  # deflate = zlib format, RFC 9110
    return (lambda data: z.compress(data) + z.flush(zlib.Z_SYNC_FLUSH)), z.flush


def classify(path: str) -> tuple[str, bool] | None:
    """(endpoint, streams by path) for a request path, or None when no provider has it."""
    last = path.rpartition("/")[2]
    if ":" in last:
        return ACTIONS.get(last.rpartition(":")[2])
    for suffix, endpoint in SUFFIXES:
        if path.endswith(suffix):
            return endpoint, False
    return None


def request_flags(body: bytes) -> tuple[bool, bool, bool]:
    """(stream, include_usage, wants a tool call) from a JSON body; most bodies skip the parse."""
    if b'"stream"' not in body and b'"tools"' not in body:
        return False, False, False
    try:
        doc = json.loads(body)
    except ValueError:
        return False, False, False
    if not isinstance(doc, dict):
        return False, False, False
    options = doc.get("stream_options")
    usage = isinstance(options, dict) and options.get("include_usage") is True
    return doc.get("stream") is True, usage, bool(doc.get("tools")) and not last_turn_is_tool_result(doc)


def last_turn_is_tool_result(doc: dict) -> bool:
    """OpenAI role "tool", Responses function_call_output, Anthropic tool_result, Gemini functionResponse."""
    turns = doc.get("messages") or doc.get("contents") or doc.get("input")
    if not isinstance(turns, list) or not turns or not isinstance(turns[-1], dict):
        return False
    last = turns[-1]
    if last.get("role") == "tool" or last.get("type") == "function_call_output":
        return True
    parts = last.get("content") if isinstance(last.get("content"), list) else last.get("parts")
    return isinstance(parts, list) and any(
        isinstance(p, dict) and (p.get("type") == "tool_result" or "functionResponse" in p) for p in parts)


class Catalog:
    """Which fixture answers a request, and its rendered bytes, cached; a few bodies are made on first use."""

    def __init__(self, fixtures: dict[str, Fixture]):
        self.fixtures = fixtures
        self.rendered: dict[tuple, Rendered] = {}
        self.routes: dict[str, tuple[str, bool] | None] = {}

    def keys(self) -> list[str]:
        return sorted(k for k in self.fixtures if not k.startswith("mock/not_found"))

    def choose(self, req, fixture: str | None = None, status: int | None = None) -> str:
        """The fixture key for a request: explicit, the provider's error for a status, else the default.

        req needs .method, .path, .query, .headers (lower-cased names) and .body.
        """
        route = self.routes.get(req.path, False)
        if route is False:
            if len(self.routes) > 10_000:
                self.routes.clear()
            route = self.routes[req.path] = classify(req.path)
        endpoint, path_stream = route or (None, False)
        if fixture:
            key = fixture
        elif status and status >= 400:
            key = self.error_key(self.provider(endpoint, req), status)
        elif endpoint in DEFAULTS:
            stream, usage, tool = request_flags(req.body)
            stream = stream or path_stream
            key = DEFAULTS[endpoint][2 * stream + tool]
            if endpoint == "chat" and stream and not usage:
                key += "#no-usage"
        elif endpoint == "embeddings":
            key = "openai/embeddings_base64.json" + ("" if b"base64" in req.body else "#float")
        elif endpoint == "models":
            key = f"mock/{self.provider(endpoint, req)}_models.json"
        elif endpoint == "batch_embed":
            key = self.batch_key(req.body)
        elif endpoint in SINGLE:
            key = SINGLE[endpoint]
        else:
            return self.not_found(req)
        if endpoint == "generate" and path_stream and "alt=sse" not in req.query and key + "#array" in self.fixtures:
            key += "#array"  # streamGenerateContent without alt=sse streams one JSON array
        return key

    def provider(self, endpoint: str | None, req) -> str:
        if endpoint == "models":
            if "anthropic-version" in req.headers:
                return "anthropic"
            return "gemini" if req.path.startswith("/v1beta") else "openai"
        return ENDPOINT_PROVIDERS.get(endpoint, "openai")

    def error_key(self, provider: str, status: int) -> str:
        key = ERRORS[provider].get(status) or f"mock/{provider}_error_{status}.json"
        if key not in self.fixtures:
            self.fixtures[key] = error_fixture(provider, status)
        return key

    def batch_key(self, body: bytes) -> str:
        try:
            count = len(json.loads(body)["requests"])
        except (ValueError, KeyError, TypeError):
            count = 1
        key = f"mock/gemini_batch_embed_contents_{count}.json"
        if key not in self.fixtures:
            self.fixtures[key] = batch_embeddings(self.fixtures["mock/gemini_embed_content.json"], count)
        return key

    def not_found(self, req) -> str:
        """OpenAI's answer to an unknown URL; registered per path so the render cache applies."""
        key = f"mock/not_found{req.method} {req.path}"
        if key not in self.fixtures:
            doc = {"error": {"message": f"Invalid URL ({req.method} {req.path})", "type": "invalid_request_error",
                             "param": None, "code": None}}
            self.fixtures[key] = Fixture(key, "openai", (json.dumps(doc, indent=2).encode() + b"\n",), False, 404, ())
        return key

    def render(self, key: str, status: int | None = None, encoding: str | None = None,
               headers: tuple[tuple[str, str], ...] = ()) -> Rendered:
        cache_key = (key, status, encoding, headers)
        response = self.rendered.get(cache_key)
        if response is None:
            if len(self.rendered) > 4096:
                self.rendered.clear()
            response = self.rendered[cache_key] = render(self.fixtures[key], status, encoding, headers)
        return response
