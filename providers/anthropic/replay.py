"""Anthropic Messages in the other mode: a Message as the events the API would have streamed, and
a Message assembled from a stream the way the anthropic SDK's get_final_message() does."""

from __future__ import annotations

import copy
import json
from dataclasses import dataclass
from typing import Any

from providers.replay_sse import read_events, write_events
from providers.safe_json import loads

# Message fields the API sends in message_delta, not in message_start (server-tool streams send
# container there: messages_stream_prompt_cache_server_tools.sse).
_ENDING = ("stop_reason", "stop_sequence", "stop_details", "container")
# Of those, the ones a null in message_delta overwrites (the SDK keeps an earlier container).
_NULLABLE = ("stop_reason", "stop_sequence", "stop_details")
# The usage fields a message_delta may carry (MessageDeltaUsage in the spec).
_DELTA_USAGE = ("input_tokens", "cache_creation_input_tokens", "cache_read_input_tokens", "output_tokens",
                "output_tokens_details", "server_tool_use")


def _block_events(index: int, block: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    """content_block_start, its deltas and content_block_stop for one content block."""
    kind, deltas = block.get("type"), []
    if kind == "text":
        start = {k: v for k, v in block.items() if k != "citations"} | {"text": ""}
        deltas = [{"type": "citations_delta", "citation": c} for c in block.get("citations") or ()]
        deltas += [{"type": "text_delta", "text": block["text"]}] if block.get("text") else []
    elif kind == "thinking":
        start = block | {"thinking": "", "signature": ""}
        deltas = [{"type": "thinking_delta", "thinking": block["thinking"]}] if block.get("thinking") else []
        deltas += [{"type": "signature_delta", "signature": block["signature"]}] if block.get("signature") else []
    elif isinstance(block.get("input"), dict):  # tool_use, server_tool_use, mcp_tool_use
        start = block | {"input": {}}
        deltas = [{"type": "input_json_delta", "partial_json": json.dumps(block["input"], ensure_ascii=False)}]
    else:  # redacted_thinking, server tool results: sent whole in their start event
        start = block
    return [
        ("content_block_start", {"type": "content_block_start", "index": index, "content_block": start}),
        *(("content_block_delta", {"type": "content_block_delta", "index": index, "delta": d}) for d in deltas),
        ("content_block_stop", {"type": "content_block_stop", "index": index}),
    ]


def _apply_delta(block: dict[str, Any], delta: dict[str, Any], json_parts: list[str]) -> None:
    kind = delta.get("type")
    if kind == "text_delta":
        block["text"] = (block.get("text") or "") + (delta.get("text") or "")
    elif kind == "citations_delta":
        block["citations"] = [*(block.get("citations") or ()), delta.get("citation")]
    elif kind == "thinking_delta":
        block["thinking"] = (block.get("thinking") or "") + (delta.get("thinking") or "")
    elif kind == "signature_delta":
        block["signature"] = delta.get("signature")
    elif kind == "input_json_delta":
        json_parts.append(delta.get("partial_json") or "")


@dataclass(frozen=True, slots=True)
class AnthropicReplay:
    """Messages replayed between a Message body and `event:`-named SSE ending in message_stop
    (also Vertex rawPredict / streamRawPredict, which speak the same body)."""

    endpoints: tuple[str, ...] = ("messages",)

    def as_stream(self, body: dict[str, Any], *, include_usage: bool = True) -> bytes:
        """include_usage is ignored: Anthropic streams always carry usage. message_start holds the
        input counts and a placeholder output_tokens (as the API's does); message_delta the totals."""
        usage = body.get("usage") if isinstance(body.get("usage"), dict) else {}
        start = {k: v for k, v in body.items() if k not in _ENDING}
        start |= {"content": [], "stop_reason": None, "stop_sequence": None}
        start |= {"stop_details": None} if "stop_details" in body else {}
        if usage:
            start["usage"] = usage | {"output_tokens": min(1, usage.get("output_tokens") or 0)}
        events = [("message_start", {"type": "message_start", "message": start})]
        for index, block in enumerate(body.get("content") or ()):
            events += _block_events(index, block)
        delta = {"stop_reason": body.get("stop_reason"), "stop_sequence": body.get("stop_sequence")}
        delta |= {k: body[k] for k in ("stop_details", "container") if k in body}
        delta_usage = {k: usage[k] for k in _DELTA_USAGE if k in usage}
        events.append(("message_delta", {"type": "message_delta", "delta": delta, "usage": delta_usage}))
        events.append(("message_stop", {"type": "message_stop"}))
        return write_events(events)

    def as_whole(self, raw: bytes) -> dict[str, Any] | None:
        """None unless the stream reached message_stop without an error event, and every tool
        input it streamed is complete JSON."""
        events = read_events(raw)
        message: dict[str, Any] | None = None
        blocks: dict[int, dict[str, Any]] = {}
        json_parts: dict[int, list[str]] = {}
        for name, data in events or ():
            kind = (data.get("type") or name) if isinstance(data, dict) else None
            if kind == "error" or kind is None:
                return None
            if kind == "message_start":
                message = copy.deepcopy(data.get("message") or {})
            elif message is None:
                continue  # a ping before message_start
            elif kind == "content_block_start":
                blocks[data.get("index", len(blocks))] = copy.deepcopy(data.get("content_block") or {})
            elif kind == "content_block_delta" and (block := blocks.get(data.get("index"))) is not None:
                _apply_delta(block, data.get("delta") or {}, json_parts.setdefault(data["index"], []))
            elif kind == "message_delta":
                delta = data.get("delta") or {}
                message |= {k: v for k, v in delta.items() if v is not None or k in _NULLABLE}
                # Usage counts on a message_delta are cumulative; an absent one keeps message_start's.
                usage = {k: v for k, v in (data.get("usage") or {}).items() if v is not None}
                message["usage"] = (message.get("usage") or {}) | usage
            elif kind == "message_stop":
                try:
                    for index, parts in json_parts.items():
                        if "".join(parts):
                            blocks[index]["input"] = loads("".join(parts))
                except ValueError:
                    return None
                return message | {"content": [blocks[i] for i in sorted(blocks)]}
        return None


anthropic_replay = AnthropicReplay()
