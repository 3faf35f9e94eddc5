"""Incremental stream framing (SSE, NDJSON, streamed JSON arrays), right whatever the chunk boundaries.

Decoders work on bytes and only decode complete lines or objects, so a chunk that ends inside a
UTF-8 character or between ``\\r`` and ``\\n`` is simply held until the rest arrives. Each decoder
yields ``Frame``s carrying the raw bytes as well, so a caller may pass, drop or rewrite whole events.

Framing is linear in the bytes received however long one event grows: each decoder remembers how far
it has already looked for a boundary and never scans those bytes again (a 20 MB event arriving in
16 KiB chunks was rescanned from its start on every chunk, 9.5 s of quadratic work).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

_IN_STRING = re.compile(rb'["\\]')
_STRUCTURE = re.compile(rb'["{}\[\]]')


@dataclass(slots=True)
class Frame:
    """One complete event: SSE ``event:`` name (or None), its data text (None for comment-only
    blocks), and the exact bytes it occupied on the wire."""

    event: str | None
    data: str | None
    raw: bytes


class SSEDecoder:
    """Server-sent events per the WHATWG spec: lines end in CRLF, LF or CR; a blank line ends an event."""

    def __init__(self) -> None:
        self._buf = bytearray()
        self._start = 0  # where the current (incomplete) event begins in _buf
        self._scan = 0  # where the next line begins
        self._searched = 0  # bytes before this were already searched for a line end (CR mode)
        self._pairs_searched = 0  # ... for a blank line (LF mode)
        self._event: str | None = None
        self._data: list[str] = []
        self._seen_field = False
        self._cr_seen = False  # LF-only streams (OpenAI, Anthropic) take the fast path

    def feed(self, chunk: bytes) -> list[Frame]:
        if self._start == len(self._buf) and not self._cr_seen and chunk[-2:] == b"\n\n" and b"\r" not in chunk:
            # Nothing pending and the chunk is whole LF-framed events (a provider writes each event in
            # one send, and mitmproxy hands each on as one chunk): framed straight from the chunk.
            blocks = chunk.split(b"\n\n")
            if not blocks[-1]:
                return self._whole_events(blocks)
        self._buf += chunk
        if not self._cr_seen and b"\r" in chunk:
            self._cr_seen = True  # lines from here on: the pending event is read once more, from its start
        return self._lines(final=False) if self._cr_seen else self._events_lf()

    def _whole_events(self, blocks: list[bytes]) -> list[Frame]:
        """The frames of a chunk split at its blank lines (the last block empty): the same frames, raw
        bytes included, that _events_lf makes of it, without copying it through the buffer."""
        frames = []
        for block in blocks[:-1]:
            if block[:6] == b"data: " and b"\n" not in block:  # the usual event: one data line
                frames.append(Frame(None, block[6:].decode("utf-8", "replace"), block + b"\n\n"))
                continue
            for line in block.split(b"\n"):
                if line:
                    self._field(line)
            frames.append(Frame(self._event, "\n".join(self._data) if self._data else None, block + b"\n\n"))
            self._event, self._data, self._seen_field = None, [], False
        return frames

    def _events_lf(self) -> list[Frame]:
        """Whole events split at blank lines by bytes.find; only complete events are looked at."""
        buf, frames = self._buf, []
        # Resume one byte back: the last byte searched may be the first "\n" of the pair.
        while (end := buf.find(b"\n\n", max(self._start, self._pairs_searched - 1))) >= 0:
            for line in bytes(buf[self._start : end]).split(b"\n"):
                if line:
                    self._field(line)
            frames.append(self._dispatch(end + 2))
        self._scan, self._pairs_searched = self._start, len(buf)
        self._compact()
        return frames

    def close(self) -> list[Frame]:
        frames = self._lines(final=True)
        if self._scan < len(self._buf):  # a last line with no line ending at all
            self._field(bytes(self._buf[self._scan :]))
            self._scan = len(self._buf)
        if self._seen_field or self._start < len(self._buf):
            frames.append(self._dispatch(len(self._buf)))
        return frames

    def _lines(self, final: bool) -> list[Frame]:
        buf, frames = self._buf, []
        while True:
            start = max(self._scan, self._searched)
            lf = buf.find(b"\n", start)
            cr = buf.find(b"\r", start, lf if lf >= 0 else len(buf))
            if cr >= 0:
                if cr + 1 == len(buf) and not final:
                    self._searched = cr
                    break  # a CR at the end may be the first half of CRLF
                end, nxt = cr, cr + 2 if buf[cr + 1 : cr + 2] == b"\n" else cr + 1
            elif lf >= 0:
                end, nxt = lf, lf + 1
            else:
                self._searched = len(buf)
                break
            line = bytes(buf[self._scan : end])
            self._scan = nxt
            if line:
                self._field(line)
            else:
                frames.append(self._dispatch(nxt))
        self._compact()
        return frames

    def _compact(self) -> None:
        if self._start > 65536:  # keep the buffer from growing without end
            del self._buf[: self._start]
            self._scan -= self._start
            self._searched = max(self._searched - self._start, 0)
            self._pairs_searched = max(self._pairs_searched - self._start, 0)
            self._start = 0

    def _field(self, line: bytes) -> None:
        self._seen_field = True
        if line.startswith(b":"):
            return  # a comment, such as OpenRouter's ": OPENROUTER PROCESSING"
        name, _, value = line.partition(b":")
        if value.startswith(b" "):
            value = value[1:]
        if name == b"data":
            self._data.append(value.decode("utf-8", "replace"))
        elif name == b"event":
            self._event = value.decode("utf-8", "replace")

    def _dispatch(self, end: int) -> Frame:
        raw = bytes(self._buf[self._start : end])
        frame = Frame(self._event, "\n".join(self._data) if self._data else None, raw)
        self._start, self._event, self._data, self._seen_field = end, None, [], False
        return frame


class NDJSONDecoder:
    """One JSON document per line (Ollama's native API)."""

    def __init__(self) -> None:
        self._buf = bytearray()
        self._searched = 0  # bytes before this hold no newline

    def feed(self, chunk: bytes) -> list[Frame]:
        self._buf += chunk
        frames = []
        while (nl := self._buf.find(b"\n", self._searched)) >= 0:
            raw = bytes(self._buf[: nl + 1])
            del self._buf[: nl + 1]
            self._searched = 0
            frames.append(self._frame(raw))
        self._searched = len(self._buf)
        return frames

    def close(self) -> list[Frame]:
        raw, self._buf = bytes(self._buf), bytearray()
        return [self._frame(raw)] if raw else []

    @staticmethod
    def _frame(raw: bytes) -> Frame:
        text = raw.decode("utf-8", "replace").strip()
        return Frame(None, text or None, raw)


class JSONArrayDecoder:
    """A JSON array streamed element by element (Gemini streamGenerateContent without alt=sse).

    A body that turns out to be a single object (an error) comes out as one frame, whole."""

    def __init__(self) -> None:
        self._buf = bytearray()
        self._pos = 0
        self._depth = 0
        self._in_string = False
        self._escape = False
        self._array: bool | None = None  # decided by the first bracket
        self._obj_start = -1
        self._gap_start = 0

    def feed(self, chunk: bytes) -> list[Frame]:
        self._buf += chunk
        frames = []
        buf = self._buf
        i, n = self._pos, len(buf)
        while i < n:
            if self._escape:  # the byte after a backslash in a string
                self._escape = False
                i += 1
                continue
            # Jump (at C speed) to the next byte that matters: a quote or backslash in a string,
            # a quote or bracket outside one.
            if (m := (_IN_STRING if self._in_string else _STRUCTURE).search(buf, i)) is None:
                i = n
                break
            i = m.start()
            c = buf[i]
            if self._in_string:
                if c == 0x5C:  # backslash
                    self._escape = True
                else:  # quote
                    self._in_string = False
            elif c == 0x22:
                self._in_string = True
            elif c in (0x7B, 0x5B):  # { [
                if self._array is None:
                    self._array = c == 0x5B
                if self._depth == (1 if self._array else 0) and self._obj_start < 0:
                    self._obj_start = i
                self._depth += 1
            elif c in (0x7D, 0x5D):  # } ]
                self._depth -= 1
                if self._depth == (1 if self._array else 0) and self._obj_start >= 0:
                    text = bytes(buf[self._obj_start : i + 1]).decode("utf-8", "replace")
                    frames.append(Frame(None, text, bytes(buf[self._gap_start : i + 1])))
                    self._obj_start, self._gap_start = -1, i + 1
            i += 1
        self._pos = i
        if self._obj_start < 0 and self._gap_start > 0:
            del buf[: self._gap_start]
            self._pos -= self._gap_start
            self._gap_start = 0
        return frames

    def close(self) -> list[Frame]:
        rest = bytes(self._buf[self._gap_start :])
        self._buf = bytearray()
        if self._obj_start >= 0:
            return [Frame(None, "", rest)]  # a truncated element: its empty data fails to parse, as it should
        return [Frame(None, None, rest)] if rest else []


def decoder_for(content_type: str):
    """The framing decoder for a streamed response's content type."""
    ct = content_type.split(";", 1)[0].strip().lower()
    if ct == "text/event-stream":
        return SSEDecoder()
    if ct in ("application/x-ndjson", "application/jsonl", "application/json-seq"):
        return NDJSONDecoder()
    return JSONArrayDecoder()
