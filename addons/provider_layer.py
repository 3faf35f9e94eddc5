"""mitmproxy's HTTP layer for decrypted provider connections, with two changes that its hooks cannot
make: an answer the gateway prepared replaces mitmproxy's HTML error page, and a call's request body
is cut off at a size limit while it arrives instead of being buffered whole.

mitmproxy answers its own protocol errors (an upstream it cannot connect to, a smuggling attempt,
a body over its limit) with an HTML page sent after the `error` hook, from inside the layer: no hook
can replace it. Capture's `error` hook puts the provider-shaped answer in flow.metadata[REPLY]; this
layer sends it in place of the page, on HTTP/1 connections whose client has no response yet (the
SDKs speak HTTP/1.1; HTTP/2 clients keep mitmproxy's own error)."""

from __future__ import annotations

from mitmproxy import http
from mitmproxy.proxy.layers.http import (
    ErrorCode,
    Http1Server,
    HttpLayer,
    HttpStream,
    RequestData,
    RequestProtocolError,
    ResponseData,
    ResponseEndOfMessage,
    ResponseHeaders,
    ResponseProtocolError,
)

REPLY = "tapgate_reply"  # flow.metadata: the http.Response the gateway sends when mitmproxy cannot finish
REASON = "tapgate_reply_reason"  # flow.metadata: why, for the row's error
TOO_LARGE = "Request body exceeds"  # how mitmproxy's own message begins; ours reads the same


class ProviderHttpLayer(HttpLayer):
    def __init__(self, context, mode, max_request_bytes: int) -> None:
        super().__init__(context, mode)
        self.max_request_bytes = max_request_bytes
        self.received: dict[int, int] = {}  # stream id -> request body bytes so far (calls only)

    def event_to_child(self, child, event):
        if isinstance(child, HttpStream) and isinstance(event, RequestData) and self._past_limit(child, event):
            # A chunked upload past the limit: the stream fails as if mitmproxy's own limit had been hit
            # (the `error` hook prepares the 413); the rest of the body is read and dropped, never kept.
            yield from super().event_to_child(child, RequestProtocolError(
                event.stream_id, f"{TOO_LARGE} tapgate_max_request_bytes ({self.max_request_bytes} bytes).",
                ErrorCode.REQUEST_TOO_LARGE))
            yield from self._reply(child.flow, event.stream_id)
            return
        if isinstance(event, ResponseProtocolError) and (stream := self.streams.get(event.stream_id)) is not None \
                and child is self.connections.get(self.context.client):
            if (yield from self._reply(stream.flow, event.stream_id)):
                if stream.flow.metadata[REPLY].status_code != 413:
                    yield from super().event_to_child(child, event)  # closes: the answer is out, no page follows
                return  # a 413: the rest of the upload is read and dropped, so a client that writes it all hears the answer
        yield from super().event_to_child(child, event)

    def _past_limit(self, stream: HttpStream, event: RequestData) -> bool:
        if not self.max_request_bytes or "tapgate" not in stream.flow.metadata:
            return False
        size = self.received[event.stream_id] = self.received.get(event.stream_id, 0) + len(event.data)
        return size > self.max_request_bytes

    def _reply(self, flow: http.HTTPFlow, stream_id: int):
        """Send the gateway's answer to the client in place of mitmproxy's page; False when there is none."""
        self.received.pop(stream_id, None)
        reply: http.Response | None = flow.metadata.get(REPLY)
        client = self.connections.get(self.context.client)
        if reply is None or not isinstance(client, Http1Server) or client.response is not None:
            return False
        reply.headers["connection"] = "close"
        for event in (ResponseHeaders(stream_id, reply, False), ResponseData(stream_id, reply.raw_content or b""),
                      ResponseEndOfMessage(stream_id)):
            yield from super().event_to_child(client, event)
        return True
