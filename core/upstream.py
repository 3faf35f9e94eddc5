"""The router's real upstream: one pooled aiohttp session (keep-alive connections to every provider,
shared by all routed calls) that opens each attempt's response; the rest of an attempt is the seam's
(core/sending.py)."""

from __future__ import annotations

import json

import aiohttp

from core.clock import SYSTEM, Clock
from core.errors import Failure
from core.routing import Target
from core.sending import Opened, OpeningUpstream, UpstreamBroke
from providers.chat import UpstreamRequest


class HttpBody:
    """An aiohttp response's body, its client errors told as UpstreamBroke."""

    __slots__ = ("response",)

    def __init__(self, response: aiohttp.ClientResponse) -> None:
        self.response = response

    async def readany(self) -> bytes:
        try:
            return await self.response.content.readany()
        except aiohttp.ClientError as e:
            raise UpstreamBroke(str(e) or type(e).__name__, type(e).__name__) from e

    async def read(self) -> bytes:
        try:
            return await self.response.content.read()
        except aiohttp.ClientError as e:
            raise UpstreamBroke(str(e) or type(e).__name__, type(e).__name__) from e

    def release(self) -> None:
        self.response.release()

    def close(self) -> None:
        self.response.close()


class HttpUpstream(OpeningUpstream):
    """Holds the session; `open` posts the request and waits for the response's headers."""

    def __init__(self, clock: Clock = SYSTEM) -> None:
        self.clock = clock
        self.session: aiohttp.ClientSession | None = None

    async def start(self) -> None:
        if self.session is None:
            connector = aiohttp.TCPConnector(limit=0, ttl_dns_cache=300, enable_cleanup_closed=True)
            self.session = aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=None),
                                                 skip_auto_headers=("User-Agent",))

    async def close(self) -> None:
        if self.session is not None:
            await self.session.close()
            self.session = None

    async def open(self, target: Target, request: UpstreamRequest, connect_timeout: float) -> Opened | Failure:
        assert self.session is not None, "HttpUpstream.start() first"
        headers = {"content-type": "application/json", **request.headers, **dict(target.headers)}
        if target.key:
            headers.update(target.endpoint.adapter.auth_headers(target.key))
        timeout = aiohttp.ClientTimeout(total=None, sock_connect=connect_timeout)
        try:
            response = await self.session.post(target.base_url + request.path, data=json.dumps(request.body).encode(),
                                               headers=headers, timeout=timeout)
        except aiohttp.ConnectionTimeoutError:
            return Failure("connect_timeout", f"no connection within {connect_timeout:g} s")
        except aiohttp.ClientConnectorError as e:
            return Failure("connect", f"connection failed: {e.os_error.strerror or e.os_error}")
        except aiohttp.ClientError as e:
            return Failure("reset", f"{type(e).__name__}: {e}".rstrip(": "))
        return Opened(response.status, response.headers, HttpBody(response))
