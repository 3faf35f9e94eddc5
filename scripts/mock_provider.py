"""A fast loopback mock of the OpenAI, Anthropic and Gemini HTTP APIs that answers with captured wire bytes.

Tests point every provider host at its one port (mitmproxy --map-remote) and it tells providers apart by
path; benchmarks hammer it, so it is a bare asyncio.Protocol speaking HTTP/1.1 keep-alive whose common
case is a dict lookup and one write of bytes pre-rendered by mock_fixtures.py. Request headers or queued
programs make it misbehave like a real provider: error bodies, compression, delays, resets, cut streams.

    python scripts/mock_provider.py --port 0 [--host 127.0.0.1] [--data testdata]   # prints MOCK_PORT=<port>
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import dataclasses
import json
import signal
import socket
import struct
import zlib
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

try:
    from . import mock_fixtures as fx  # imported as scripts.mock_provider
except ImportError:
    import mock_fixtures as fx  # run as a script: scripts/ is sys.path[0]

MAX_HEAD = 64 * 1024
CHATGPT_BACKEND = "/backend-api/"  # chatgpt.com's, where Codex CLI on a ChatGPT login calls
LOG_SIZE = 1000
# /_mock/program keys -> the request header they stand for.
PROGRAM_KEYS = {"fixture": "x-mock-fixture", "status": "x-mock-status", "encoding": "x-mock-encoding",
                "delay_ms": "x-mock-delay-ms", "chunk_delay_ms": "x-mock-chunk-delay-ms", "fault": "x-mock-fault",
                "echo": "x-mock-echo", "headers": "x-mock-headers", "nest": "x-mock-nest",
                "echo_key": "x-mock-echo-key", "say": "x-mock-say"}


class MockError(ValueError):
    """A control header or program the mock cannot follow; answered 400 with type mock_error."""


class BadRequest(ValueError):
    """Unparseable HTTP; answered 400 and the connection closed."""


@dataclass(frozen=True, slots=True)
class Controls:
    """How to misbehave for one request, from x-mock-* headers or a queued program."""
    fixture: str | None = None
    status: int | None = None
    encoding: str | None = None
    delay: float = 0.0  # seconds before the status line
    chunk_delay: float = 0.0  # seconds between stream events
    first_byte_delay: float = 0.0  # seconds between the headers and the first body byte
    fault: str | None = None  # reset | silent | cut
    echo: bool = False
    headers: tuple[tuple[str, str], ...] = ()  # extra response headers
    nest: int = 0  # wrap a body in this many arrays; give a stream an extra event nested this deep
    end_delay: float = 0.0  # seconds between the last event and the end of the body (a slow network)
    echo_key: bool = False  # answer an error (401 unless a status is given) whose message quotes the key sent
    stall_midway: float = 0.0  # seconds a stream pauses halfway through its events (where a cut cuts)
    say: str | None = None  # answer this text (JSON string), or "@parrot": the request's last user text

    @property
    def immediate(self) -> bool:
        return not (self.delay or self.chunk_delay or self.first_byte_delay or self.end_delay or self.fault
                    or self.stall_midway)


def parse_controls(get, fixtures: dict) -> Controls:
    """Controls from a header getter (x-mock-* names); raises MockError with a readable reason."""
    def ms(name: str) -> float:
        return seconds(name, get(name) or "0")

    fixture, status, encoding = get("x-mock-fixture"), get("x-mock-status"), get("x-mock-encoding")
    fault, nest = get("x-mock-fault"), get("x-mock-nest") or "0"
    if not nest.isdigit():
        raise MockError(f"x-mock-nest must be a whole number of levels, got {nest!r}")
    if fixture is not None and fixture not in fixtures:
        raise MockError(f"unknown fixture {fixture!r}; GET /_mock/fixtures lists them")
    if status is not None and not (status.isdigit() and 100 <= int(status) <= 999):
        raise MockError(f"x-mock-status must be an HTTP status, got {status!r}")
    if encoding is not None and encoding not in ("gzip", "br", "deflate"):
        raise MockError(f"x-mock-encoding must be gzip, br or deflate, got {encoding!r}")
    first_byte = end = midway = 0.0
    if fault and fault.startswith("slow-first-byte:"):
        first_byte, fault = seconds("slow-first-byte", fault.partition(":")[2]), None
    elif fault and fault.startswith("late-end:"):
        end, fault = seconds("late-end", fault.partition(":")[2]), None
    elif fault and fault.startswith("stall-midway:"):
        midway, fault = seconds("stall-midway", fault.partition(":")[2]), None
    elif fault not in (None, "reset", "silent", "cut"):
        raise MockError(f"x-mock-fault must be reset, silent, cut, slow-first-byte:<ms>, late-end:<ms> or "
                        f"stall-midway:<ms>, got {fault!r}")
    say = get("x-mock-say")
    if say is not None and say != "@parrot":
        try:
            say = json.loads(say)
        except ValueError:
            raise MockError(f"x-mock-say must be a JSON string or @parrot, got {say!r}") from None
    headers = ()
    if (raw := get("x-mock-headers")) is not None:
        try:
            headers = tuple((str(k), str(v)) for k, v in json.loads(raw).items())
        except (ValueError, AttributeError):
            raise MockError(f"x-mock-headers must be a JSON object, got {raw!r}") from None
    return Controls(fixture, int(status) if status else None, encoding, ms("x-mock-delay-ms"),
                    ms("x-mock-chunk-delay-ms"), first_byte, fault, get("x-mock-echo") in ("1", "true"), headers,
                    int(nest), end, get("x-mock-echo-key") in ("1", "true"), midway, say)


def seconds(name: str, ms: str) -> float:
    if not ms.isdigit():
        raise MockError(f"{name} needs whole milliseconds, got {ms!r}")
    return int(ms) / 1000


class Request:
    __slots__ = ("method", "target", "path", "query", "headers", "body", "keep_alive", "has_controls", "closed")

    def __init__(self, method: str, target: str, version: str, headers: dict[str, str], body: bytes):
        self.method, self.target, self.headers = method, target, headers
        self.body = decoded(body, headers.get("content-encoding"))
        if not target.startswith("/"):  # absolute-form, as a proxy may send it
            parts = urlsplit(target)
            target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        self.path, _, self.query = target.partition("?")
        connection = headers.get("connection", "").lower()
        self.keep_alive = "close" not in connection if version == "HTTP/1.1" else "keep-alive" in connection
        self.has_controls = any(name.startswith("x-mock-") for name in headers)
        self.closed: asyncio.Future | None = None  # its connection's, set once the connection has it

    @property
    def connection_open(self) -> bool:
        return self.closed is not None and not self.closed.done()

    def describe(self) -> dict:
        """What the mock received; header names lower-cased, repeats joined with ", "."""
        doc = {"method": self.method, "path": self.path, "query": self.query, "headers": self.headers,
               "body": self.body.decode("utf-8", "replace")}
        try:
            self.body.decode("utf-8")
        except UnicodeDecodeError:
            doc["body_base64"] = base64.b64encode(self.body).decode()
        return doc


@dataclass(slots=True)
class Program:
    path_contains: str
    times: int
    controls: Controls


class Mock:
    """Serves each request the catalog's response, bent by its controls; holds the request log and programs."""

    def __init__(self, catalog: fx.Catalog):
        self.catalog = catalog
        self.programs: deque[Program] = deque()
        self.log: deque[Request] = deque(maxlen=LOG_SIZE)

    def handle(self, conn: Connection, req: Request):
        """Answer req now and return None, or return a coroutine that answers it (delays, faults)."""
        if req.path.startswith("/_mock/"):
            conn.transport.write(self.admin(req))
            return None
        self.log.append(req)
        if req.headers.get("upgrade", "").lower() == "websocket":
            conn.transport.write(self.upgrade(conn, req))
            return None
        if req.path.startswith(CHATGPT_BACKEND) and (answer := chatgpt_backend(req)) is not None:
            conn.transport.write(answer)
            return None
        try:
            controls = self.take_program(req) if self.programs else None
            if controls is None and req.has_controls:
                controls = parse_controls(req.headers.get, self.catalog.fixtures)
            if controls is None:
                write_now(conn.transport, self.catalog.render(self.catalog.choose(req)))
                return None
            if controls.echo_key:  # as providers do: "Incorrect API key provided: sk-…"
                status = controls.status or 401
                provider = self.catalog.provider((fx.classify(req.path) or (None,))[0], req)
                echo = fx.error_fixture(provider, status, f"Incorrect API key provided: {sent_key(req)}.")
                response = fx.render(echo, status, controls.encoding, controls.headers)
            elif controls.say is not None and (route := fx.classify(req.path)) is not None:
                try:  # imported when first used: the unit tests load this file alone, without scripts/ on the path
                    from .mock_say import say
                except ImportError:
                    from mock_say import say
                stream = fx.request_flags(req.body)[0] or route[1]
                response = fx.render(say(route[0], stream, req.body, controls.say), controls.status,
                                     controls.encoding, controls.headers)
            elif controls.echo:
                body = json.dumps(req.describe(), indent=2).encode()
                echo = fx.Fixture("mock/echo", "openai", (body,), False, 200, ())
                response = fx.render(echo, controls.status, controls.encoding, controls.headers)
            else:
                key = self.catalog.choose(req, controls.fixture, controls.status)
                if controls.nest:
                    response = fx.render(nested(self.catalog.fixtures[key], controls.nest), controls.status,
                                         controls.encoding, controls.headers)
                else:
                    response = self.catalog.render(key, controls.status, controls.encoding, controls.headers)
        except MockError as e:
            conn.transport.write(json_response(400, {"error": {"message": f"mock: {e}", "type": "mock_error",
                                                               "param": None, "code": None}}))
            return None
        if controls.immediate:
            write_now(conn.transport, response)
            return None
        return serve_slowly(conn, response, controls)

    def upgrade(self, conn: Connection, req: Request) -> bytes:
        """A WebSocket to a Responses path becomes a session answering response.create frames
        (scripts/mock_socket.py); any other upgrade is refused."""
        try:  # imported when first used: the unit tests load this file alone, without scripts/ on the path
            from . import mock_socket
        except ImportError:
            import mock_socket
        if not mock_socket.wants_socket(req.headers, req.path):
            return json_response(404, {"error": {"message": f"mock: no WebSocket at {req.path}"}})

        def stream(body: bytes) -> tuple[bytes, ...]:
            return self.catalog.fixtures[self.catalog.choose(Request("POST", req.path, "HTTP/1.1", {}, body))].events

        def log(message: bytes) -> None:  # each message in the request log, as method MESSAGE
            self.log.append(Request("MESSAGE", req.target, "HTTP/1.1", req.headers, message))

        conn.socket = mock_socket.Session(conn.transport, stream, log)
        return mock_socket.handshake(req.headers)

    def take_program(self, req: Request) -> Controls | None:
        for program in self.programs:
            if program.path_contains in req.target:
                program.times -= 1
                if program.times <= 0:
                    self.programs.remove(program)
                return program.controls
        return None

    def admin(self, req: Request) -> bytes:
        route = (req.method, req.path)
        if route == ("POST", "/_mock/program"):
            try:
                spec = json.loads(req.body or b"{}")
                if not isinstance(spec, dict):
                    raise MockError("program must be a JSON object")
                unknown = set(spec) - set(PROGRAM_KEYS) - {"path_contains", "times"}
                if unknown:
                    raise MockError(f"unknown program keys {sorted(unknown)}")
                times = spec.get("times", 1)
                if not isinstance(times, int) or times < 1:
                    raise MockError("times must be a positive integer")
                as_headers = {header: json.dumps(spec[key]) if key == "headers" else str(spec[key])
                              for key, header in PROGRAM_KEYS.items() if spec.get(key) is not None}
                for key in ("echo", "echo_key"):
                    if spec.get(key) is True:
                        as_headers[PROGRAM_KEYS[key]] = "1"
                controls = parse_controls(as_headers.get, self.catalog.fixtures)
            except (ValueError, MockError) as e:
                return json_response(400, {"error": {"message": f"mock: {e}", "type": "mock_error"}})
            self.programs.append(Program(str(spec.get("path_contains", "")), times, controls))
            return json_response(200, {"queued": len(self.programs)})
        if route == ("POST", "/_mock/reset"):
            self.programs.clear()
            self.log.clear()
            return json_response(200, {"ok": True})
        if route == ("GET", "/_mock/requests"):
            # connection_open: whether the client still holds the connection the request came on.
            return json_response(200, [{**r.describe(), "connection_open": r.connection_open} for r in self.log])
        if route == ("GET", "/_mock/fixtures"):
            return json_response(200, self.catalog.keys())
        return json_response(404, {"error": {"message": f"mock: no admin route {req.method} {req.path}"}})


def chatgpt_backend(req: Request) -> bytes | None:
    """The answer to a ChatGPT backend call Codex CLI makes besides sampling, or None (scripts/mock_chatgpt.py)."""
    try:  # imported when first used: the unit tests load this file alone, without scripts/ on the path
        from . import mock_chatgpt
    except ImportError:
        import mock_chatgpt
    if not mock_chatgpt.answers(req.path):
        return None
    return json_response(200, mock_chatgpt.accounts_check(req.headers))


def nested(fixture: fx.Fixture, depth: int) -> fx.Fixture:
    """The fixture with JSON nested `depth` deep: a body wrapped in arrays, or a stream with an extra
    SSE event of nested arrays after its first, as a broken or hostile upstream might send."""
    deep = b"[" * depth + b"]" * depth
    if fixture.stream:
        events = (*fixture.events[:1], b"data: " + deep + b"\n\n", *fixture.events[1:])
    else:
        events = (b"[" * depth + fixture.events[0] + b"]" * depth,)
    return dataclasses.replace(fixture, key=f"{fixture.key}#nest{depth}", events=events)


def decoded(body: bytes, encoding: str | None) -> bytes:
    """A request body as sent before its Content-Encoding (Codex CLI sends zstd to ChatGPT's backend);
    one the mock cannot decode stays as it came."""
    if not body or not encoding:
        return body
    try:
        if encoding == "zstd":
            try:
                from compression import zstd  # Python 3.14
            except ImportError:
                from backports import zstd  # installed with mitmproxy
            return zstd.decompress(body)
        if encoding in ("gzip", "deflate"):
            return zlib.decompress(body, 31 if encoding == "gzip" else 15)
    except Exception:
        return body
    return body


def sent_key(req: Request) -> str:
    """The credential a request carried: a Bearer token, x-api-key, x-goog-api-key or key= query value."""
    auth = req.headers.get("authorization", "")
    if auth.lower().startswith("bearer "):
        return auth[7:].strip()
    for name in ("x-api-key", "x-goog-api-key", "api-key"):
        if req.headers.get(name):
            return req.headers[name]
    for pair in req.query.split("&"):
        name, _, value = pair.partition("=")
        if name == "key":
            return value
    return ""


def json_response(status: int, doc) -> bytes:
    return fx.render(fx.Fixture("mock/admin", "openai", (json.dumps(doc).encode(),), False, status, ())).whole


def write_now(transport: asyncio.Transport, response: fx.Rendered) -> None:
    """One write for a plain body; for a stream one write per event, so each leaves as its own send."""
    if len(response.pieces) <= 1:
        transport.write(response.whole)
        return
    transport.write(response.head)
    for piece in response.pieces:
        transport.write(piece)
    transport.write(response.tail)


async def serve_slowly(conn: Connection, response: fx.Rendered, controls: Controls) -> None:
    transport = conn.transport
    if controls.delay:
        await asyncio.sleep(controls.delay)
    if controls.fault == "reset":
        return conn.reset()
    if controls.fault == "silent":
        return await conn.closed
    transport.write(response.head)
    if controls.first_byte_delay:
        await asyncio.sleep(controls.first_byte_delay)
    pieces = response.pieces
    if controls.fault == "cut":  # half the events of a stream, half the bytes of a body
        pieces = pieces[: len(pieces) // 2] if response.tail else (pieces[0][: len(pieces[0]) // 2],)
    for i, piece in enumerate(pieces):
        if i and controls.chunk_delay:
            await asyncio.sleep(controls.chunk_delay)
        if controls.stall_midway and i == len(pieces) // 2:
            await asyncio.sleep(controls.stall_midway)
        if transport.is_closing():
            return
        transport.write(piece)
        await conn.drain()
    if controls.fault == "cut":
        transport.close()  # no terminating zero-length chunk, or a body shorter than its Content-Length
    else:
        if controls.end_delay:
            await asyncio.sleep(controls.end_delay)
            if transport.is_closing():
                return
        transport.write(response.tail)


class Connection(asyncio.Protocol):
    """HTTP/1.1 server side of one connection: parses requests in order, one response at a time."""

    def __init__(self, mock: Mock):
        self.mock = mock
        self.buf = bytearray()
        self.head: tuple | None = None  # a parsed request head waiting for its body
        self.task: asyncio.Task | None = None
        self.transport: asyncio.Transport | None = None
        loop = asyncio.get_running_loop()
        self.closed = loop.create_future()
        self.writable: asyncio.Future | None = None
        self.socket = None  # once upgraded to a WebSocket: the session that reads its frames

    def connection_made(self, transport):
        self.transport = transport

    def connection_lost(self, exc):
        self.closed.done() or self.closed.set_result(None)
        if self.writable and not self.writable.done():
            self.writable.set_result(None)
        if self.task:
            self.task.cancel()

    def pause_writing(self):
        self.writable = asyncio.get_running_loop().create_future()

    def resume_writing(self):
        if self.writable and not self.writable.done():
            self.writable.set_result(None)
        self.writable = None

    async def drain(self):
        if self.writable:
            await self.writable

    def reset(self):
        """Close with a TCP RST (SO_LINGER 0), as a crashed upstream does."""
        sock = self.transport.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.transport.abort()

    def data_received(self, data: bytes):
        if self.socket is not None:
            self.socket.feed(data)
            return
        self.buf += data
        if self.task is None:
            self.process()

    def process(self):
        while not self.transport.is_closing():
            try:
                req = self.parse()
            except BadRequest as e:
                self.transport.write(json_response(400, {"error": {"message": f"mock: bad request: {e}"}}))
                self.transport.close()
                return
            if req is None:
                return
            work = self.mock.handle(self, req)
            if self.socket is not None:  # upgraded: what follows the request is frames
                rest, self.buf = bytes(self.buf), bytearray()
                rest and self.socket.feed(rest)
                return
            if work is not None:
                self.task = asyncio.ensure_future(self.finish(work, req.keep_alive))
                return
            if not req.keep_alive:
                self.transport.close()

    async def finish(self, work, keep_alive: bool):
        try:
            await work
        except Exception:
            self.transport.abort()
            raise
        self.task = None
        if not keep_alive:
            self.transport.close()
        elif not self.transport.is_closing():
            self.process()

    def parse(self) -> Request | None:
        buf = self.buf
        if self.head is None:
            end = buf.find(b"\r\n\r\n")
            if end < 0:
                if len(buf) > MAX_HEAD:
                    raise BadRequest("request head too large")
                return None
            lines = buf[:end].decode("latin-1").split("\r\n")
            del buf[: end + 4]
            try:
                method, target, version = lines[0].split(" ")
            except ValueError:
                raise BadRequest(f"request line {lines[0][:100]!r}") from None
            headers: dict[str, str] = {}
            for line in lines[1:]:
                name, colon, value = line.partition(":")
                if not colon:
                    raise BadRequest(f"header line {line[:100]!r}")
                name, value = name.strip().lower(), value.strip()
                headers[name] = f"{headers[name]}, {value}" if name in headers else value
            self.head = (method, target, version, headers)
            if headers.get("expect", "").lower() == "100-continue":
                self.transport.write(b"HTTP/1.1 100 Continue\r\n\r\n")
        method, target, version, headers = self.head
        if "chunked" in headers.get("transfer-encoding", "").lower():
            body = take_chunked(buf)
            if body is None:
                return None
        else:
            length = headers.get("content-length", "0")
            if not length.isdigit():
                raise BadRequest(f"content-length {length!r}")
            if len(buf) < int(length):
                return None
            body = bytes(buf[: int(length)])
            del buf[: int(length)]
        self.head = None
        req = Request(method, target, version, headers, body)
        req.closed = self.closed  # so the log can tell whether the client still holds the connection
        return req


def take_chunked(buf: bytearray) -> bytes | None:
    """A complete chunked body removed from buf, or None (buf untouched) while it is incomplete."""
    body, pos = bytearray(), 0
    while True:
        eol = buf.find(b"\r\n", pos)
        if eol < 0:
            return None
        try:
            size = int(bytes(buf[pos:eol]).split(b";")[0], 16)
        except ValueError:
            raise BadRequest("chunk size") from None
        pos = eol + 2
        if size == 0:
            end = buf.find(b"\r\n\r\n", pos - 2)  # optional trailers, then an empty line
            if end < 0:
                return None
            del buf[: end + 4]
            return bytes(body)
        if len(buf) < pos + size + 2:
            return None
        body += buf[pos : pos + size]
        pos += size + 2


DEFAULT_DATA = Path(__file__).resolve().parents[1] / "testdata"  # holds fixtures/<provider>/


async def start(host: str = "127.0.0.1", port: int = 0, data: str | Path = DEFAULT_DATA):
    """Start serving in the running loop; returns (asyncio.Server, bound port)."""
    mock = Mock(fx.Catalog(fx.load(Path(data))))
    server = await asyncio.get_running_loop().create_server(lambda: Connection(mock), host, port, backlog=1024)
    return server, server.sockets[0].getsockname()[1]


async def serve(host: str, port: int, data: str) -> None:
    server, port = await start(host, port, data)
    print(f"MOCK_PORT={port}", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    server.close()
    if hasattr(server, "abort_clients"):  # Python 3.13: drop held connections (silent faults) too
        server.abort_clients()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=0, help="port to bind; 0 picks a free one (default)")
    parser.add_argument("--data", default=str(DEFAULT_DATA),
                        help="the directory holding fixtures/<provider>/ (default: the repository's testdata)")
    args = parser.parse_args(argv)
    asyncio.run(serve(args.host, args.port, args.data))


if __name__ == "__main__":
    main()
