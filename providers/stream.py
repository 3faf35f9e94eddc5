"""The stream tap: bytes pass through as they arrive while a copy is decoded, framed and parsed."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any

from providers.base import Route, StreamState
from providers.decoding import incremental_decoder
from providers.safe_json import TooDeep, loads_event
from providers.sse import Frame, decoder_for


class StreamParser:
    """Feeds a provider's stream events into a StreamState, one chunk at a time; never raises."""

    def __init__(self, route: Route, content_type: str, content_encoding: str | None = None) -> None:
        self.route = route
        self.content_type = content_type
        # When a list: each complete event's (time, raw bytes), for replaying the stream as it came.
        self.frames: list[tuple[float, bytes]] | None = None
        self.state = StreamState()
        self._framer = decoder_for(content_type)
        try:
            self._decoder = incremental_decoder(content_encoding)
        except ValueError as e:
            self._decoder = None
            self.state.error = str(e)

    def feed(self, chunk: bytes) -> list[tuple[Frame, object]]:
        """Parse a raw (possibly compressed) chunk; returns the frames it completed, each with its
        parsed data (None when absent or malformed)."""
        if self._decoder is None:
            return []
        try:
            data = self._decoder.decompress(chunk)
        except Exception as e:  # corrupt compressed data: stop parsing, keep passing bytes
            self._broken(f"cannot decode the stream's content-encoding: {e}")
            return []
        return self._parse(self._framer.feed(data))

    def close(self) -> list[tuple[Frame, object]]:
        """The stream ended: flush what is buffered and note a stream cut before its end."""
        if self._decoder is None:
            return []
        try:
            frames = self._framer.feed(self._decoder.flush()) + self._framer.close()
        except Exception as e:
            self._broken(f"cannot decode the stream's content-encoding: {e}")
            return []
        return self._parse(frames)

    def _parse(self, frames: list[Frame]) -> list[tuple[Frame, object]]:
        parsed: list[tuple[Frame, object]] = []
        if self.frames is not None and frames:
            now = time.time()
            self.frames += [(now, frame.raw) for frame in frames]
        for frame in frames:
            frame_data = frame.data
            parsed.append((frame, None))
            if frame_data is None:
                continue
            if frame_data == "[DONE]":
                data: object = "[DONE]"
            else:
                try:
                    data = loads_event(frame_data)
                except TooDeep as e:
                    self.state.error = f"malformed stream event: {e}"
                    continue
                except ValueError:
                    self.state.error = f"malformed stream event: {frame_data[:80]!r}"
                    continue
            parsed[-1] = (frame, data)
            try:
                self.route.provider.stream_event(self.route, self.state, frame.event, data)
            except Exception as e:  # a provider bug must never break the stream
                self.state.error = f"cannot parse stream event: {e!r}"
        return parsed

    def _broken(self, message: str) -> None:
        self.state.error = message
        self._decoder = None


class StreamTap:
    """The callable for ``flow.response.stream``.

    Passes every chunk on unchanged as it arrives, unless ``hide_usage`` is set: then the gateway
    asked for usage the client did not, and whole events are re-emitted as the client would have
    seen them (the response must then be sent decoded, see Capture.responseheaders).
    ``on_final`` runs once, when the stream's final event has been parsed and before the chunk that
    carries it is handed on: a call is recorded before its client can have read the end of it.
    """

    def __init__(
        self,
        parser: StreamParser,
        hide_usage: bool = False,
        on_first_chunk: Callable[[], None] | None = None,
        on_final: Callable[[], None] | None = None,
        rewrite: Rewrite | None = None,
    ) -> None:
        self.parser = parser
        self.hide_usage = hide_usage
        self._on_first_chunk = on_first_chunk
        self._on_final = on_final
        # Given: whole events are re-emitted as it returns them (the guardrails' restore and block);
        # like hide_usage, the response must then be sent decoded.
        self.rewrite = rewrite

    def __call__(self, chunk: bytes) -> bytes | list[bytes]:
        if chunk and self._on_first_chunk is not None:
            self._on_first_chunk()
            self._on_first_chunk = None
        frames = self.parser.feed(chunk) if chunk else self.parser.close()
        out = None
        if self.rewrite is not None:  # the guardrails' restore and block: whole events re-emitted
            frames = self.rewrite(frames, not chunk)
            route = self.parser.route
            out = b"".join(route.provider.hide_usage(route, f.event, data, f.raw) if self.hide_usage else f.raw
                           for f, data in frames)
        elif self.hide_usage:  # before on_final: a kept copy of the events (for replay) is what the client got
            route = self.parser.route
            pieces = [route.provider.hide_usage(route, f.event, data, f.raw) for f, data in frames]
            if (kept := self.parser.frames) is not None and frames:
                start = len(kept) - len(frames)
                kept[start:] = [(at, piece) for (at, _), piece in zip(kept[start:], pieces, strict=True)]
            out = b"".join(pieces)
        if self._on_final is not None and self.parser.state.finished:
            self._on_final()
            self._on_final = None
        if out is None:
            return chunk
        # Never hand mitmproxy an empty chunk: on HTTP/1.1 a zero-length chunk ends the response.
        return [out] if out else []


# Frames in, frames out: (the frames a chunk completed, whether the stream ended) -> what to send.
Rewrite = Callable[[list[tuple[Frame, Any]], bool], list[tuple[Frame, Any]]]


def reencode(frame: Frame, data: Any) -> Frame:
    """The frame with new JSON data, framed as it came: an SSE event keeps its name and line ending,
    an NDJSON line or a JSON array element keeps what surrounds the object."""
    text = json.dumps(data, ensure_ascii=False, separators=(",", ":"))
    raw = frame.raw
    stripped = raw.lstrip()
    if stripped.startswith((b"data:", b"event:", b"id:", b":")):
        eol = b"\r\n" if b"\r\n" in raw else b"\n"
        head = f"event: {frame.event}".encode() + eol if frame.event else b""
        return Frame(frame.event, text, head + b"data: " + text.encode() + eol + eol)
    start, end = raw.find(b"{"), raw.rfind(b"}")
    if start < 0 or end < start:
        return Frame(frame.event, text, text.encode() + b"\n")
    return Frame(frame.event, text, raw[:start] + text.encode() + raw[end + 1:])


def stream_error(route: Route, content_type: str, status: int, message: str, code: str) -> Frame:
    """An error event the gateway ends a stream with, in its provider's dialect: the provider's own
    `stream_error` when it has one (Anthropic's `event: error`), else its error body as one event."""
    if (own := getattr(route.provider, "stream_error", None)) is not None:
        return Frame("error", None, own(status, message, code))
    body = json.loads(route.provider.error_reply(status, message, code).body)
    text = json.dumps(body, ensure_ascii=False, separators=(",", ":"))
    ct = content_type.split(";", 1)[0].strip().lower()
    if ct == "text/event-stream":
        return Frame(None, text, b"data: " + text.encode() + b"\n\n")
    if ct in ("application/x-ndjson", "application/jsonl", "application/json-seq"):
        return Frame(None, text, text.encode() + b"\n")
    return Frame(None, text, b"," + text.encode() + b"]")
