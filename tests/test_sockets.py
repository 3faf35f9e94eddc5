"""Sockets' hooks on hand-made WebSocket flows: a provider socket's response.create turns recorded as
calls from the events that follow (a subscription login priced as a shadow cost), a socket closed
mid-turn recorded as incomplete, other sockets left alone, and no socket's messages piling up."""

import json
import time

from mitmproxy import websocket
from mitmproxy.test import taddons, tflow
from support import Rows, fixture_bytes, hook, passthrough_door
from wsproto.frame_protocol import Opcode

from addons.attribution import Attribution
from addons.settings import Settings
from addons.sockets import SOCKET, Sockets

LOGIN = "eyJhbGciOiJSUzI1NiJ9.eyJleHAiOjQxMDI0NDQ4MDB9.c2lnbmF0dXJlLW9mLXRoZS1sb2dpbg"
TURN = {"type": "response.create", "model": "gpt-5.1-codex", "input": "say hi"}


def setup():
    settings, rows = Settings(), Rows()
    capture, _ = passthrough_door(settings, rows)
    return capture, Sockets(capture, Attribution()), rows


def socket_flow(host="chatgpt.com", path="/backend-api/codex/responses"):
    flow = tflow.twebsocketflow(messages=False)
    flow.request.host, flow.request.port, flow.request.scheme, flow.request.path = host, 443, "https", path
    flow.request.headers.update({"host": host, "authorization": f"Bearer {LOGIN}",
                                 "user-agent": "codex_exec/0.171.0 (Debian 12.0.0; x86_64) dumb"})
    return flow


def send(sockets, flow, doc, from_client: bool) -> None:
    payload = doc if isinstance(doc, bytes) else json.dumps(doc).encode()
    flow.websocket.messages.append(websocket.WebSocketMessage(Opcode.TEXT, from_client, payload, time.time()))
    hook(sockets, "websocket_message", flow)


def events() -> list[bytes]:
    lines = fixture_bytes("openai", "responses_stream_text.sse").splitlines()
    return [line[6:] for line in lines if line.startswith(b"data: ")]


def test_a_turn_is_a_call_priced_as_a_shadow_cost():
    capture, sockets, rows = setup()
    with taddons.context(capture, sockets) as tctx:
        tctx.configure(capture)
        flow = socket_flow()
        sockets.requestheaders(flow)
        send(sockets, flow, TURN, True)
        for event in events():
            send(sockets, flow, event, False)
        assert len(flow.websocket.messages) == 1  # only the message being passed on is kept
        send(sockets, flow, {**TURN, "input": "again"}, True)  # a second turn, cut short by the close
        sockets.websocket_end(flow)
    first, second = rows.tables["requests"]
    assert (first["provider"], first["endpoint"], first["model"], first["status"]) == (
        "chatgpt", "responses", "gpt-5.1-codex", "ok")
    assert first["client"] == "Codex CLI" and first["stream"] == 1 and first["input_tokens"] > 0
    assert first["cost_usd"] is None and first["shadow_cost_usd"] > 0
    assert second["status"] == "incomplete" and "closed" in second["error"]
    assert LOGIN not in json.dumps(rows.tables) and LOGIN.rsplit(".", 1)[1] not in json.dumps(rows.tables)


def test_other_sockets_and_other_messages_are_not_calls():
    capture, sockets, rows = setup()
    with taddons.context(capture, sockets) as tctx:
        tctx.configure(capture)
        elsewhere = socket_flow(host="example.com", path="/ws")
        sockets.requestheaders(elsewhere)
        assert SOCKET not in elsewhere.metadata
        flow = socket_flow()
        sockets.requestheaders(flow)
        for message in (b"not json", {"type": "response.cancel"}, ["response.create"]):
            send(sockets, flow, message, True)
        for event in events():  # events with no turn asked for are not a call either
            send(sockets, flow, event, False)
        sockets.websocket_end(flow)
    assert "requests" not in rows.tables or not rows.tables["requests"]
