"""The provider protocol and the normalised facts every provider returns, so addons never read provider JSON."""

from __future__ import annotations

import functools
import json
import re
from dataclasses import dataclass, field
from typing import Any, Protocol

from providers.safe_json import parse_json  # noqa: F401  (the parser's old home; import it from safe_json)


@dataclass(slots=True)
class Usage:
    """Token counts normalised so that rows from different providers add up.

    ``input_tokens`` counts every input token, cache reads and writes included;
    ``output_tokens`` every output token, reasoning/thinking included. The other
    counts are parts of those two. ``None`` means the provider did not say.
    """

    input_tokens: int | None = None
    output_tokens: int | None = None
    cache_read_tokens: int | None = None
    cache_write_tokens: int | None = None
    # The part of cache_write_tokens written with Anthropic's 1-hour TTL (priced higher).
    cache_write_1h_tokens: int | None = None
    reasoning_tokens: int | None = None
    # What the provider itself says the call cost (OpenRouter usage.cost, xAI cost_in_usd_ticks).
    reported_cost_usd: float | None = None

    @property
    def known(self) -> bool:
        return self.input_tokens is not None or self.output_tokens is not None


@dataclass(slots=True)
class RequestFacts:
    """What the client asked for, read from the request line and body."""

    model: str | None = None
    stream: bool = False
    # The client's own end-user field: OpenAI `user`/`safety_identifier`, Anthropic `metadata.user_id`.
    user: str | None = None
    # The client's own metadata fields (OpenAI `metadata`, Vertex `labels`).
    metadata: dict[str, Any] = field(default_factory=dict)
    max_tokens: int | None = None
    # False for an OpenAI-style stream sent without stream_options.include_usage.
    wants_usage: bool = True
    # Rough size of the prompt in characters, for estimates when usage never arrives.
    prompt_chars: int = 0


@dataclass(slots=True)
class Output:
    """The assembled answer: text, tool calls and why it stopped."""

    text: list[str] = field(default_factory=list)
    tool_calls: dict[Any, dict[str, Any]] = field(default_factory=dict)
    finish_reason: str | None = None

    def add_text(self, text: Any) -> None:
        if isinstance(text, str) and text:
            self.text.append(text)

    def tool_call(self, key: Any, name: str | None = None, arguments: str = "", id: str | None = None) -> None:
        call = self.tool_calls.setdefault(key, {"id": None, "name": None, "arguments": ""})
        if id:
            call["id"] = id
        if name:
            call["name"] = name
        if arguments:
            call["arguments"] += arguments

    def as_json(self) -> str:
        return json.dumps(
            {
                "text": "".join(self.text),
                "tool_calls": list(self.tool_calls.values()),
                "finish_reason": self.finish_reason,
            },
            ensure_ascii=False,
        )

    @property
    def chars(self) -> int:
        return sum(len(t) for t in self.text) + sum(len(c["arguments"]) for c in self.tool_calls.values())


@dataclass(slots=True)
class ResponseFacts:
    """What a whole (non-streamed) response body says."""

    usage: Usage = field(default_factory=Usage)
    response_model: str | None = None
    error: str | None = None


@dataclass(slots=True)
class StreamState:
    """What a stream has said so far; the provider updates it one event at a time."""

    usage: Usage = field(default_factory=Usage)
    response_model: str | None = None
    output: Output = field(default_factory=Output)
    error: str | None = None
    # A terminal event was seen ([DONE], message_stop, response.completed, finishReason, done: true).
    finished: bool = False
    events: int = 0


@dataclass(frozen=True, slots=True)
class Route:
    """Which endpoint of which provider a request goes to."""

    provider: Provider
    endpoint: str  # public name, e.g. "chat.completions", "messages", "generateContent"
    # The model when the URL names it (Gemini, Vertex, Azure deployments).
    path_model: str | None = None
    # The URL alone says the response streams (Gemini streamGenerateContent).
    path_stream: bool = False
    # Where this route's models sit in the price table when not under provider.price_prefix (Vertex).
    price_prefix: str | None = None

    @property
    def prices_under(self) -> str:
        return self.provider.price_prefix if self.price_prefix is None else self.price_prefix


@dataclass(slots=True)
class ErrorReply:
    """A response the gateway sends itself, already in the provider's own error shape."""

    status: int
    body: bytes
    content_type: str = "application/json"


class Provider(Protocol):
    """A provider's wire parser: one per provider package (see providers/package.py), plus one
    per OpenAI-compatible host."""

    name: str
    # Host names this provider answers on: exact, or "*.suffix" for a family (Azure resources).
    hosts: tuple[str, ...]
    # The prefix of this provider's models in the price table ("" for OpenAI and Anthropic).
    price_prefix: str
    # The request field that caps output tokens, as a refusal names it ("max_tokens").
    max_tokens_field: str
    # Optional: prefixes of credentials that are a subscription login, not a pay-per-token API key
    # (read with getattr; none by default).
    # subscription_prefixes: tuple[str, ...]
    # Optional: socket_request(route, data) -> dict | None: the request body a client's WebSocket
    # message asks for (OpenAI's Responses API over a WebSocket), None for other messages; the events
    # coming back are folded by stream_event (read with getattr; addons/sockets.py).

    def route(self, host: str, path: str) -> Route | None:
        """The route when this (host, path) belongs to this provider; path excludes the query."""

    def request_facts(self, route: Route, body: Any) -> RequestFacts:
        """Facts from the parsed JSON request body (any JSON value, or None when not JSON)."""

    def ask_for_usage(self, route: Route, body: Any) -> dict[str, Any] | None:
        """Top-level body fields to set so a stream reports its usage, or None when it already does
        or this provider cannot be asked."""

    def response_facts(self, route: Route, body: Any) -> ResponseFacts:
        """Usage, model and error from a parsed whole response body."""

    def stream_event(self, route: Route, state: StreamState, event: str | None, data: Any) -> None:
        """Fold one parsed stream event (SSE event name or None, parsed JSON data) into the state."""

    def hide_usage(self, route: Route, event: str | None, data: Any, raw: bytes) -> bytes:
        """For a client that did not ask for stream usage but got it because the gateway asked: the
        event's bytes as that client would have seen them (b"" drops the event)."""

    def error_reply(self, status: int, message: str, code: str, param: str | None = None) -> ErrorReply:
        """An error the gateway itself raises, in this provider's error shape."""


class ReportsUsageUnasked:
    """For providers whose every response and stream reports usage: nothing to ask for, nothing to hide."""

    def ask_for_usage(self, route: Route, body: Any) -> dict[str, Any] | None:
        return None

    def hide_usage(self, route: Route, event: str | None, data: Any, raw: bytes) -> bytes:
        return raw


@functools.lru_cache(maxsize=256)
def _host_pattern(patterns: tuple[str, ...]) -> re.Pattern[str]:
    label = "[a-z0-9]+(?:-[a-z0-9]+)*"
    return re.compile("|".join(re.escape(p.lower()).replace(r"\*", label) for p in patterns))


def host_matches(host: str, patterns: tuple[str, ...]) -> bool:
    """True when host matches a pattern; "*" stands for exactly one DNS label, so "*.openai.azure.com"
    and "*-aiplatform.googleapis.com" match their families and nothing longer."""
    return _host_pattern(patterns).fullmatch(host) is not None


def as_int(value: Any) -> int | None:
    """An integer token count, or None for missing or malformed values (never raises)."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return None


def dig(obj: Any, *keys: Any) -> Any:
    """obj[k1][k2]... or None when any step is missing or of the wrong type."""
    for key in keys:
        if isinstance(key, int):
            if not isinstance(obj, list) or not -len(obj) <= key < len(obj):
                return None
        elif not isinstance(obj, dict):
            return None
        obj = obj[key] if isinstance(obj, list) else obj.get(key)
        if obj is None:
            return None
    return obj


def add(*values: int | None) -> int | None:
    """Sum of the values that are known; None when none is."""
    known = [v for v in values if v is not None]
    return sum(known) if known else None


def prompt_chars(body: Any) -> int:
    """A rough prompt size for estimating input tokens when usage never arrives."""
    try:
        return len(json.dumps(body, ensure_ascii=False)) if body is not None else 0
    except (TypeError, ValueError):
        return 0
