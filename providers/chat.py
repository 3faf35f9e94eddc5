"""The router's contract with each provider: OpenAI chat requests out, OpenAI chat responses and
chunks back, whole and streamed. One object per dialect implements `ChatAdapter`."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

# What to do with a request parameter a provider has no equivalent for (config router.unsupported_params).
Unsupported = Literal["drop", "refuse"]


class UnsupportedParam(ValueError):
    """A request parameter the target provider cannot honour, with `unsupported_params: refuse`.
    The router answers 400 naming `param`."""

    def __init__(self, param: str, message: str) -> None:
        super().__init__(message)
        self.param = param


class InvalidRequest(ValueError):
    """A request body the router cannot translate (wrong type, missing field); 400 naming `param`."""

    def __init__(self, param: str | None, message: str) -> None:
        super().__init__(message)
        self.param = param


class ProviderStreamError(RuntimeError):
    """The provider sent an error event inside a 200 stream (Anthropic `event: error`, a Gemini
    `error` object). `status` is the HTTP status the same error has when not streamed (529 for
    Anthropic overloaded_error, 429 for rate limits, 500 otherwise), so the router can fail over
    when nothing has reached the client yet."""

    def __init__(self, status: int, message: str, type: str = "api_error") -> None:
        super().__init__(message)
        self.status = status
        self.type = type


def each_tool_call(calls: Any, where: str) -> Iterator[tuple[str, dict[str, Any]]]:
    """(param path, call) for each of an assistant message's OpenAI tool_calls; raises InvalidRequest
    for a value that is not a list of objects. `where` is the message's path, e.g. "messages[2]"."""
    if calls is None:
        return
    if not isinstance(calls, list):
        raise InvalidRequest(f"{where}.tool_calls", "tool_calls must be a list")
    for k, call in enumerate(calls):
        here = f"{where}.tool_calls[{k}]"
        if not isinstance(call, dict):
            raise InvalidRequest(here, "a tool call must be an object")
        yield here, call


@dataclass(slots=True)
class UpstreamRequest:
    """What to send the provider: path (with query) under the deployment's base URL, JSON body,
    extra headers the dialect needs (never auth: the router adds the key), and notes for the trace
    (one per dropped parameter)."""

    path: str
    body: dict[str, Any]
    headers: dict[str, str] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)


class ChatStream(Protocol):
    """Translates one provider stream into OpenAI `chat.completion.chunk` objects. Its state is the
    object itself: one per call."""

    def feed(self, event: str | None, data: Any) -> list[dict[str, Any]]:
        """One parsed provider event (SSE event name or None, JSON data) -> zero or more OpenAI chunks.
        Raises ProviderStreamError for an error event."""

    def close(self) -> list[dict[str, Any]]:
        """Chunks still owed when the provider's stream ended (the usage chunk, when asked for)."""


class ChatAdapter(Protocol):
    """One provider dialect, seen from an OpenAI chat client."""

    def chat_request(self, body: dict[str, Any], model: str, *, stream: bool,
                     unsupported: Unsupported = "drop") -> UpstreamRequest:
        """The provider request for an OpenAI chat body (gateway fields already removed). `model` is
        the provider's model name. Raises UnsupportedParam or InvalidRequest."""

    def chat_response(self, body: Any, model: str) -> dict[str, Any]:
        """An OpenAI `chat.completion` object from the provider's whole response body."""

    def chat_stream(self, model: str, include_usage: bool) -> ChatStream:
        """A translator for one streamed response; emits the final usage chunk only if include_usage."""

    def auth_headers(self, api_key: str) -> dict[str, str]:
        """The headers that carry a provider key."""
