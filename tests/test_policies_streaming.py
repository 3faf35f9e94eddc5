"""Streams through the guardrails as frames: restored across chunk boundaries, and ended by a block
with one error event in the provider's own dialect."""

import json

import pytest

from core.policies.config import GuardPolicy
from core.policies.engine import Guardrails, Who
from core.policies.streaming import FrameFilter
from providers import INNER_CHAT
from providers.anthropic.wire import anthropic
from providers.base import Route
from providers.gemini.wire import gemini
from providers.stream import StreamParser, StreamTap

KEY = "sk_live_" + "Zq8xW2vB7nM4kL9pR3tY6uJ1"
SSE = "text/event-stream"


def openai_event(text):
    return f"data: {json.dumps({'choices': [{'index': 0, 'delta': {'content': text}}]})}\n\n"


def anthropic_event(text):
    data = {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": text}}
    return f"event: content_block_delta\ndata: {json.dumps(data)}\n\n"


def gemini_event(text):
    return f"data: {json.dumps({'candidates': [{'content': {'parts': [{'text': text}], 'role': 'model'}}]})}\r\n\r\n"


DIALECTS = [(INNER_CHAT.route, openai_event), (Route(anthropic, "messages"), anthropic_event),
            (Route(gemini, "streamGenerateContent", path_stream=True), gemini_event)]


def tap(route, policies, request_text=None):
    guard = Guardrails([GuardPolicy(**p) for p in policies]).for_call(Who("passthrough"))
    if request_text is not None:
        guard.check_request({"messages": [{"content": request_text}]})
    parser = StreamParser(route, SSE)
    return guard, StreamTap(parser, rewrite=FrameFilter(guard.stream(), route, SSE))


def run(t, chunks):
    out = []
    for c in [*chunks, b""]:
        got = t(c)
        out += got if isinstance(got, list) else [got]
    return b"".join(out)


def text_of(route, body):
    parser = StreamParser(route, SSE)
    parser.feed(body)
    parser.close()
    return "".join(parser.state.output.text), parser.state.error


@pytest.mark.parametrize("route, event", DIALECTS)
def test_restore_across_chunks_in_each_dialect(route, event):
    guard, t = tap(route, [{"name": "pii", "detectors": ["email"], "action": "redact", "restore": True}],
                   "mail bob@example.com")
    wire = "".join(event(x) for x in ["Sent to <EMA", "IL_1", "> today", ", <"]).encode()
    body = run(t, [wire[i:i + 7] for i in range(0, len(wire), 7)])  # frames cut anywhere
    assert text_of(route, body) == ("Sent to bob@example.com today, <", None)


@pytest.mark.parametrize("route, event", DIALECTS)
def test_a_block_ends_the_stream_with_an_error_event_in_the_dialect(route, event):
    guard, t = tap(route, [{"name": "leak", "detectors": ["secrets"], "applies_to": "response", "action": "block"}])
    wire = "".join(event(x) for x in ["Your key: ", KEY[:12], KEY[12:] + " ok", "more"]).encode()
    body = run(t, [wire])
    text, error = text_of(route, body)
    assert text == "Your key: " + KEY[:12] and KEY not in body.decode()
    assert error is not None and "leak" in error
    assert guard.block.code == "policy_leak"
