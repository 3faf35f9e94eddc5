"""Cache: passthrough's hooks for keeping answers in the response cache (core/cache.py). The cache
stage (core/stages/cache.py) answers hits before anything goes upstream; here a leading miss's answer
is kept as it passes (a stream chunk by chunk) and identical calls waiting for it are let go."""

from __future__ import annotations

import time

from mitmproxy import http

from addons.store import store_location
from core.cache import HEADER, Caching
from core.cachestore import Entry
from core.call import Call


class Collector:
    """Wraps the stream tap: keeps the provider's raw bytes (up to a limit) for the cache as they pass,
    and hands them on once the tap has recorded the call answered (its final event passed), before
    the client can have read the end and left."""

    def __init__(self, tap, limit: int, call: Call, on_answered) -> None:
        self.tap, self.limit = tap, limit
        self.call, self.on_answered = call, on_answered
        self.chunks: list[bytes] = []
        self.size = 0

    def __call__(self, chunk: bytes):
        if self.size <= self.limit:
            self.chunks.append(chunk)
            self.size += len(chunk)
        out = self.tap(chunk) if callable(self.tap) else chunk
        if self.on_answered is not None and self.call.recorded:
            on_answered, self.on_answered = self.on_answered, None
            on_answered(self)
        return out


class Cache(Caching):
    def configure(self, updated: set[str]) -> None:
        self.reshape()

    def running(self) -> None:
        self.restore(store_location())

    # -- hooks (passthrough) -------------------------------------------------------------------------

    def responseheaders(self, flow: http.HTTPFlow) -> None:
        call: Call | None = flow.metadata.get("tapgate")
        if call is None or call.cache.key is None or call.cache.hit:
            return
        flow.response.headers[HEADER] = "MISS" if call.cache.leader else "BYPASS"
        if call.cache.leader and flow.response.stream:
            flow.response.stream = Collector(flow.response.stream, self.settings.config.cache.max_entry_bytes, call,
                                             lambda collected: self._keep_answer(flow, call, collected))

    def response(self, flow: http.HTTPFlow) -> None:
        call: Call | None = flow.metadata.get("tapgate")
        if call is None or not call.cache.leader:
            return
        collected = flow.response.stream if isinstance(flow.response.stream, Collector) else None
        if collected is None or collected.on_answered is not None:  # else kept at the stream's final event
            self._keep_answer(flow, call, collected)

    def _keep_answer(self, flow: http.HTTPFlow, call: Call, collected: Collector | None) -> None:
        """An answered call's bytes become an entry; identical calls waiting for it are let go."""
        try:
            if call.status == "ok" and flow.response.status_code == 200:
                resp = flow.response
                body = b"".join(collected.chunks) if collected else resp.get_content(strict=False) or b""
                if len(body) <= self.settings.config.cache.max_entry_bytes:
                    self.keep(call, Entry(collected is not None, resp.headers.get("content-type", ""), body,
                                          time.time() + call.cache.ttl, {"usage_injected": call.injected_usage}))
        finally:
            self.release(call)

    def error(self, flow: http.HTTPFlow) -> None:
        call: Call | None = flow.metadata.get("tapgate")
        if call is not None and call.cache.leader:
            self.release(call)
