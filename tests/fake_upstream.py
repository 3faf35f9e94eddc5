"""A fake upstream and a virtual clock: the router's engine run without sockets or real time.

FakeUpstream answers as the mock provider would (the same fixture catalog, scripts/mock_fixtures.py,
picks the captured payload for each request) and misbehaves as programmed: an error status, a refused
connection, a silent server, a slow first byte, slow or cut streams. Its waits are VirtualClock sleeps,
so a test's timeouts and backoffs pass instantly and always land on the same virtual instant."""

from __future__ import annotations

import json
import math
from collections.abc import Awaitable
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from support import DATA, load_script

from core.errors import Failure
from core.routing import Target
from core.sending import Opened, OpeningUpstream, UpstreamBroke
from providers.chat import UpstreamRequest

fx = load_script("mock_fixtures")
CATALOG = fx.Catalog(fx.load(DATA))


class _Expired(BaseException):
    """A virtual timeout unwinding the wait it ends (as asyncio's cancellation would)."""

    def __init__(self, token: object) -> None:
        self.token = token


class VirtualClock:
    """Time that moves only when something sleeps. One task at a time: a sleep ends at once, moving the
    clock; a sleep that would outlast an enclosing `within` ends at its limit, which raises TimeoutError."""

    EPOCH = 1_767_225_600.0  # 2026-01-01, the wall clock at virtual time 0

    def __init__(self) -> None:
        self.t = 0.0
        self.limits: list[tuple[float, object]] = []

    def now(self) -> float:
        return self.t

    def wall(self) -> float:
        return self.EPOCH + self.t

    async def sleep(self, seconds: float) -> None:
        wake = self.t + max(seconds, 0.0)
        if self.limits:
            limit, token = min(self.limits, key=lambda entry: entry[0])
            if wake > limit:
                self.t = max(self.t, limit)
                raise _Expired(token)
        if math.isinf(wake):
            raise AssertionError("a wait for ever with no timeout around it")
        self.t = wake

    async def within[T](self, aw: Awaitable[T], seconds: float) -> T:
        entry = (self.t + seconds, object())
        self.limits.append(entry)
        try:
            return await aw
        except _Expired as e:
            if e.token is not entry[1]:
                raise
            raise TimeoutError from None
        finally:
            self.limits.remove(entry)


@dataclass
class Program:
    """What the next `times` requests whose URL contains `match` get (the mock's /_mock/program)."""

    match: str
    times: float = 1  # math.inf: every time
    status: int | None = None
    fixture: str | None = None  # a catalog key, e.g. "openai/error_429_insufficient_quota.json"
    headers: dict[str, str] = field(default_factory=dict)
    fault: str | None = None  # refused | reset | silent | cut | short (half a stream, then a clean end)
    first_byte_delay: float = 0.0  # seconds from the headers to the body's first byte
    chunk_delay: float = 0.0  # seconds between a stream's events
    stall_midway: float = 0.0  # seconds a stream pauses halfway through its events (where a cut cuts)


class ReplayBody:
    """A fixture's pieces (a stream's events, or one body) on the virtual clock; a cut ends in a break."""

    def __init__(self, clock: VirtualClock, pieces: tuple[bytes, ...], program: Program) -> None:
        self.clock, self.pieces, self.program = clock, pieces, program
        self.read_count = 0
        self.read_at: list[float] = []  # the virtual instant each piece was handed over
        self.released = self.closed = False

    async def readany(self) -> bytes:
        i = self.read_count
        if i >= len(self.pieces):
            if self.program.fault == "cut":
                raise UpstreamBroke("Response payload is not completed", "ClientPayloadError")
            return b""
        delay = self.program.first_byte_delay if i == 0 else self.program.chunk_delay
        if self.program.stall_midway and i == len(self.pieces) // 2:
            delay += self.program.stall_midway
        if delay:
            await self.clock.sleep(delay)
        self.read_count += 1
        self.read_at.append(self.clock.now())
        return self.pieces[i]

    async def read(self) -> bytes:
        data = b""
        while chunk := await self.readany():
            data += chunk
        return data

    def release(self) -> None:
        self.released = True

    def close(self) -> None:
        self.closed = True


@dataclass
class Sent:
    url: str
    request: UpstreamRequest
    at: float  # virtual time


@dataclass
class _Request:
    """What Catalog.choose reads of a request."""

    method: str
    path: str
    query: str
    headers: dict[str, str]
    body: bytes


class FakeUpstream(OpeningUpstream):
    """The Upstream the router is given in unit tests; `sent` lists every request that left, `bodies`
    every response body it opened."""

    def __init__(self, clock: VirtualClock) -> None:
        self.clock = clock
        self.programs: list[Program] = []
        self.sent: list[Sent] = []
        self.bodies: list[ReplayBody] = []

    def program(self, match: str, times: float = 1, **how) -> None:
        self.programs.append(Program(match, times, **how))

    def _take(self, url: str) -> Program:
        for p in self.programs:
            if p.match in url and p.times > 0:
                p.times -= 1
                return p
        return Program(url)

    async def open(self, target: Target, request: UpstreamRequest, connect_timeout: float) -> Opened | Failure:
        url = target.base_url + request.path
        program = self._take(url)
        if program.fault == "refused":
            return Failure("connect", "connection failed: Connect call failed")
        self.sent.append(Sent(url, request, self.clock.now()))
        if program.fault == "reset":
            return Failure("reset", "ServerDisconnectedError: Server disconnected")
        if program.fault == "silent":
            await self.clock.sleep(math.inf)
        parts = urlsplit(url)
        body = json.dumps(request.body).encode()
        key = CATALOG.choose(_Request("POST", parts.path, parts.query, {}, body), program.fixture, program.status)
        fixture = CATALOG.fixtures[key]
        headers = {"content-type": fx.CONTENT_TYPES[fixture.provider, fixture.stream]}
        headers |= {name.lower(): value for name, value in fixture.headers} | program.headers
        pieces = fixture.events
        if program.fault in ("cut", "short"):  # half the events of a stream, half the bytes of a body (as the mock cuts)
            pieces = pieces[: len(pieces) // 2] if fixture.stream else (pieces[0][: len(pieces[0]) // 2],)
        replay = ReplayBody(self.clock, pieces, program)
        self.bodies.append(replay)
        return Opened(program.status or fixture.status, headers, replay)
