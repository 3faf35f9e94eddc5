"""The mock's Responses API over a WebSocket, as ChatGPT's backend serves Codex CLI: the client upgrades
a GET to `.../responses`, then sends one JSON text frame `{"type": "response.create", ...the Responses
request body...}` per turn and gets the turn's Responses stream events back, one JSON text frame each,
the last `response.completed`; the socket stays open for the next turn. The events are the catalog's
recorded Responses stream (testdata/fixtures/openai/responses_stream_*.sse), their `data:` lines as
frames (a `"generate": false` turn, which only warms the socket up, gets the created and completed
events with no output). No extension is agreed (permessage-deflate is declined), so frames are plain RFC 6455."""

from __future__ import annotations

import base64
import hashlib
import json
import struct

GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"  # RFC 6455's, for Sec-WebSocket-Accept
TEXT, CLOSE, PING, PONG = 0x1, 0x8, 0x9, 0xA
MAX_FRAME = 64 * 1024 * 1024


def wants_socket(headers: dict[str, str], path: str) -> bool:
    return headers.get("upgrade", "").lower() == "websocket" and path.endswith("/responses")


def handshake(headers: dict[str, str]) -> bytes:
    """The 101 answer to an upgrade request."""
    accept = base64.b64encode(hashlib.sha1(headers.get("sec-websocket-key", "").encode() + GUID).digest())
    return (b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            b"Sec-WebSocket-Accept: " + accept + b"\r\n\r\n")


def frame(opcode: int, payload: bytes) -> bytes:
    """A final, unmasked frame, as a server sends."""
    size = len(payload)
    if size < 126:
        head = struct.pack("!BB", 0x80 | opcode, size)
    elif size < 1 << 16:
        head = struct.pack("!BBH", 0x80 | opcode, 126, size)
    else:
        head = struct.pack("!BBQ", 0x80 | opcode, 127, size)
    return head + payload


def take_frame(buf: bytearray) -> tuple[int, bool, bytes] | None:
    """(opcode, final, unmasked payload) of the first whole frame, removed from buf; None while incomplete."""
    if len(buf) < 2:
        return None
    first, second = buf[0], buf[1]
    size, pos = second & 0x7F, 2
    if size == 126:
        if len(buf) < 4:
            return None
        size, pos = struct.unpack_from("!H", buf, 2)[0], 4
    elif size == 127:
        if len(buf) < 10:
            return None
        size, pos = struct.unpack_from("!Q", buf, 2)[0], 10
    if size > MAX_FRAME:
        raise ValueError("frame too large")
    mask = b""
    if second & 0x80:
        mask, pos = bytes(buf[pos:pos + 4]), pos + 4
    if len(buf) < pos + size:
        return None
    payload = bytes(buf[pos:pos + size])
    del buf[:pos + size]
    if mask:
        payload = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
    return first & 0x0F, bool(first & 0x80), payload


def stream_frames(sse_events: tuple[bytes, ...]) -> list[bytes]:
    """A recorded Responses SSE stream as the text frames the socket sends: each event's data line."""
    frames = []
    for event in sse_events:
        for line in event.splitlines():
            if line.startswith(b"data:") and (data := line[5:].strip()) and data != b"[DONE]":
                frames.append(frame(TEXT, data))
    return frames


class Session:
    """One upgraded connection: frames in, a turn's events out for each response.create."""

    def __init__(self, transport, choose_stream, log=lambda message: None) -> None:
        self.transport = transport
        self.choose_stream = choose_stream  # (request body bytes) -> the SSE events of the answer
        self.log = log  # each text message received, for the mock's request log
        self.buf = bytearray()
        self.parts: list[bytes] = []  # a fragmented message's payloads so far

    def feed(self, data: bytes) -> None:
        self.buf += data
        while not self.transport.is_closing():
            try:
                got = take_frame(self.buf)
            except ValueError:
                self.transport.close()
                return
            if got is None:
                return
            opcode, final, payload = got
            if opcode == PING:
                self.transport.write(frame(PONG, payload))
            elif opcode == CLOSE:
                self.transport.write(frame(CLOSE, payload[:2]))
                self.transport.close()
            elif opcode in (TEXT, 0x0):
                self.parts.append(payload)
                if final:
                    message, self.parts = b"".join(self.parts), []
                    self.answer(message)

    def answer(self, message: bytes) -> None:
        self.log(message)
        try:
            doc = json.loads(message)
        except ValueError:
            doc = None
        if not isinstance(doc, dict) or doc.get("type") != "response.create":
            error = {"type": "error", "status": 400, "error": {
                "type": "invalid_request_error", "message": "mock: expected a response.create JSON frame"}}
            self.transport.write(frame(TEXT, json.dumps(error).encode()))
            return
        body = {k: v for k, v in doc.items() if k != "type"}
        frames = stream_frames(self.choose_stream(json.dumps({**body, "stream": True}).encode()))
        if body.get("generate") is False:
            frames = [prewarmed(f) for f in frames if b'"response.created"' in f or b'"response.completed"' in f]
        for piece in frames:
            self.transport.write(piece)


def prewarmed(piece: bytes) -> bytes:
    """A frame of a `"generate": false` turn (Codex warms the socket with one before its first real turn):
    the response is created and completed with the prompt read and nothing written."""
    payload = take_frame(bytearray(piece))[2]
    doc = json.loads(payload)
    response = doc.get("response") or {}
    response["output"] = []
    if isinstance(response.get("usage"), dict):
        usage = response["usage"]
        usage["total_tokens"] = usage.get("input_tokens", 0)
        usage["output_tokens"] = 0
        usage["output_tokens_details"] = {"reasoning_tokens": 0}
    return frame(TEXT, json.dumps(doc).encode())
