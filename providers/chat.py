"""The router's contract with each provider: OpenAI chat requests out, OpenAI chat responses and
chunks back, whole and streamed. One object per dialect implements `ChatAdapter`."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

from providers.base import Usage
from providers.safe_json import TooDeep, loads

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


def translate_frames(translator: ChatStream, frames) -> list[dict[str, Any]]:
    """OpenAI chunks for a run of SSE frames (providers/sse.py): each JSON event fed to the translator;
    comments, OpenAI's "[DONE]" and unparseable data are skipped (the router writes its own end).
    Raises ProviderStreamError (502) for an event nested too deep: that is a broken provider, not noise."""
    out: list[dict[str, Any]] = []
    for frame in frames:
        if frame.data is None or frame.data.startswith("[DONE]"):
            continue
        try:
            data = loads(frame.data)
        except TooDeep as e:
            raise ProviderStreamError(502, f"malformed stream event: {e}", "malformed_event") from None
        except ValueError:
            continue
        out += translator.feed(frame.event, data)
    return out


def error_summary(raw: bytes) -> tuple[str, str | None]:
    """(message, code) of a provider's error body in any of the three shapes: OpenAI's error.message
    and error.code or type, Anthropic's error.type, Google's error.status; else the body's start."""
    message, code = raw[:300].decode("utf-8", "replace").strip(), None
    try:
        err = loads(raw).get("error")
    except (ValueError, AttributeError):
        err = None
    if isinstance(err, dict):
        message = str(err.get("message") or message)
        code = next((c for c in (err.get("code"), err.get("type"), err.get("status")) if isinstance(c, str)), None)
    return message, code


def openai_usage(usage: Usage, *, cache_writes: bool = True, thoughts_counted: bool = False) -> dict[str, Any]:
    """OpenAI CompletionUsage from normalised usage: prompt_tokens counts cache reads and writes
    (Usage.input_tokens already does), cached_tokens the reads. `cache_writes`: the provider bills
    writes (Anthropic), so cache_write_tokens is given. `thoughts_counted`: the provider always counts
    thinking (Gemini: no thoughtsTokenCount is 0), so reasoning_tokens is always given; else only
    when known."""
    prompt, completion = usage.input_tokens or 0, usage.output_tokens or 0
    details: dict[str, Any] = {"cached_tokens": usage.cache_read_tokens or 0}
    if cache_writes:
        details["cache_write_tokens"] = usage.cache_write_tokens or 0
    out: dict[str, Any] = {"prompt_tokens": prompt, "completion_tokens": completion,
                           "total_tokens": prompt + completion, "prompt_tokens_details": details}
    if thoughts_counted or usage.reasoning_tokens is not None:
        out["completion_tokens_details"] = {"reasoning_tokens": usage.reasoning_tokens or 0}
    return out


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
