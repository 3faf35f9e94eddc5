"""The mock's `x-mock-say` control: an answer whose text is given (or, with `@parrot`, the request's last
user text), in the endpoint's own shape, whole or streamed a few characters per event so that words
and placeholders arrive split across chunks. Tests use it to see what the provider was sent come back."""

from __future__ import annotations

import json

try:
    from . import mock_fixtures as fx
except ImportError:
    import mock_fixtures as fx

PIECE = 5  # characters per stream event


def last_user_text(body: bytes) -> str:
    """The text of the last turn: OpenAI and Anthropic `messages`, Gemini `contents`; strings and text parts."""
    try:
        doc = json.loads(body)
        turn = (doc.get("messages") or doc.get("contents"))[-1]
    except (ValueError, AttributeError, TypeError, IndexError):
        return ""
    content = turn.get("content") if "content" in turn else turn.get("parts")
    if isinstance(content, str):
        return content
    return "".join(p.get("text", "") for p in content or () if isinstance(p, dict))


def say(endpoint: str, stream: bool, body: bytes, text: str) -> fx.Fixture:
    """A fixture answering `text` for a chat, messages or generate endpoint."""
    if text == "@parrot":
        text = last_user_text(body)
    pieces = [text[i:i + PIECE] for i in range(0, len(text), PIECE)] or [""]
    provider = fx.ENDPOINT_PROVIDERS.get(endpoint, "openai")
    events = {"openai": _openai, "anthropic": _anthropic, "gemini": _gemini}[provider](text, pieces, stream, body)
    return fx.Fixture(f"mock/say-{provider}", provider, tuple(events), stream, 200, ())


def _dumps(doc) -> bytes:
    return json.dumps(doc, ensure_ascii=False).encode()


def _openai(text, pieces, stream, body):
    if not stream:
        return [_dumps({"id": "chatcmpl-say", "object": "chat.completion", "created": 0, "model": "gpt-4o-mini",
                        "choices": [{"index": 0, "message": {"role": "assistant", "content": text},
                                     "finish_reason": "stop"}],
                        "usage": {"prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15}})]
    usage = fx.request_flags(body)[1]

    def chunk(delta, finish=None, **extra):
        return b"data: " + _dumps({"id": "chatcmpl-say", "object": "chat.completion.chunk", "created": 0,
                                   "model": "gpt-4o-mini", "choices": [{"index": 0, "delta": delta,
                                                                        "finish_reason": finish}], **extra}) + b"\n\n"
    events = [chunk({"role": "assistant", "content": ""})] + [chunk({"content": p}) for p in pieces]
    events.append(chunk({}, "stop"))
    if usage:
        events.append(b"data: " + _dumps({"id": "chatcmpl-say", "object": "chat.completion.chunk", "created": 0,
                                          "model": "gpt-4o-mini", "choices": [],
                                          "usage": {"prompt_tokens": 10, "completion_tokens": 5,
                                                    "total_tokens": 15}}) + b"\n\n")
    return events + [b"data: [DONE]\n\n"]


def _anthropic(text, pieces, stream, body):
    message = {"id": "msg_say", "type": "message", "role": "assistant", "model": "claude-sonnet-4-5-20250929",
               "stop_sequence": None}
    if not stream:
        return [_dumps({**message, "content": [{"type": "text", "text": text}], "stop_reason": "end_turn",
                        "usage": {"input_tokens": 10, "output_tokens": 5}})]

    def event(name, data):
        return f"event: {name}\ndata: ".encode() + _dumps(data) + b"\n\n"
    return [event("message_start", {"type": "message_start", "message": {
                **message, "content": [], "stop_reason": None, "usage": {"input_tokens": 10, "output_tokens": 1}}}),
            event("content_block_start", {"type": "content_block_start", "index": 0,
                                          "content_block": {"type": "text", "text": ""}}),
            *(event("content_block_delta", {"type": "content_block_delta", "index": 0,
                                            "delta": {"type": "text_delta", "text": p}}) for p in pieces),
            event("content_block_stop", {"type": "content_block_stop", "index": 0}),
            event("message_delta", {"type": "message_delta", "delta": {"stop_reason": "end_turn", "stop_sequence": None},
                                    "usage": {"output_tokens": 5}}),
            event("message_stop", {"type": "message_stop"})]


def _gemini(text, pieces, stream, body):
    usage = {"promptTokenCount": 10, "candidatesTokenCount": 5, "totalTokenCount": 15}

    def part(t, last):
        candidate = {"content": {"parts": [{"text": t}], "role": "model"}, "index": 0}
        doc = {"candidates": [{**candidate, "finishReason": "STOP"} if last else candidate],
               "modelVersion": "gemini-2.5-flash"}
        return {**doc, "usageMetadata": usage} if last else doc
    if not stream:
        return [_dumps(part(text, True))]
    return [b"data: " + _dumps(part(p, i == len(pieces) - 1)) + b"\r\n\r\n" for i, p in enumerate(pieces)]
