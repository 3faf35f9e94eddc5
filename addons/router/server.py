"""The router's answers to HTTP it cannot route: an unknown path or method, headers over aiohttp's
8 KB limit, a request it cannot parse. aiohttp answers these itself in text/plain; here they are
answered in OpenAI's error shape (Anthropic's under /v1/messages) and handed to `on_error` to be
recorded, like every other call the router refuses.

Unknown paths and methods pass through the application, so a middleware catches them. A request
aiohttp cannot parse never reaches the application: its protocol handler answers it from
`handle_error`, so the runner's server makes handlers whose `handle_error` speaks JSON."""

from __future__ import annotations

from collections.abc import Callable

from aiohttp import web
from aiohttp.http_exceptions import LineTooLong
from aiohttp.web_protocol import RequestHandler

from core.errors import HeadersTooLarge, MalformedRequest, MethodNotAllowed, NotFound, Refusal
from core.secrets import scrub

OnError = Callable[[web.BaseRequest, Refusal], bytes]  # records the error; the body to answer with


def middleware(on_error: OnError):
    """aiohttp's own 404 and 405 as the router's errors."""

    @web.middleware
    async def answer_unrouted(request: web.Request, handler):
        try:
            return await handler(request)
        except web.HTTPNotFound:
            error: Refusal = NotFound(f"Unknown request URL: {request.method} {request.path}. The router "
                                          "serves POST /v1/chat/completions, /v1/messages, /v1/embeddings, "
                                          "/v1/responses and GET /v1/models.")
        except web.HTTPMethodNotAllowed as e:
            error = MethodNotAllowed(f"{request.method} is not allowed on {request.path}; use "
                                     f"{', '.join(sorted(e.allowed_methods))}.",
                                     headers={"allow": ",".join(sorted(e.allowed_methods))})
        return _response(error, on_error(request, error))

    return answer_unrouted


class Runner(web.AppRunner):
    """An AppRunner whose connections answer unparseable requests through `on_error`."""

    def __init__(self, app: web.Application, on_error: OnError, **kwargs) -> None:
        super().__init__(app, **kwargs)
        self.on_error = on_error

    async def _make_server(self) -> web.Server:
        server = await super()._make_server()
        return _Server(server.request_handler, self.on_error, request_factory=server.request_factory,
                       handler_cancellation=server.handler_cancellation, loop=server._loop, **server._kwargs)


class _Server(web.Server):
    def __init__(self, handler, on_error: OnError, **kwargs) -> None:
        super().__init__(handler, **kwargs)
        self.on_error = on_error

    def __call__(self) -> RequestHandler:
        return _Protocol(self, loop=self._loop, **self._kwargs)


class _Protocol(RequestHandler):
    def handle_error(self, request: web.BaseRequest, status: int = 500, exc: BaseException | None = None,
                     message: str | None = None) -> web.StreamResponse:
        """aiohttp's own error answer, in the client's dialect and recorded (aiohttp logs each one with
        a traceback; a bad request from a client is recorded, not logged)."""
        if request.writer.output_size > 0:  # some of an answer is out already: nothing else can be said
            raise ConnectionError("Response is sent already, cannot send another response with the error message")
        if isinstance(exc, LineTooLong) or status == 431:  # aiohttp's message quotes the line: not repeated
            error: Refusal = HeadersTooLarge("The request's headers are too large: a header line is over "
                                                 "8190 bytes.")
        elif status < 500:
            text = scrub(str(getattr(exc, "message", None) or message or exc or "").strip())[:200]
            error = MalformedRequest(f"The request is not valid HTTP: {text}")
        else:
            error = Refusal("The gateway failed to handle this request; its log has the details.",
                                code="gateway_error")
        response = _response(error, self.on_error(request, error))
        response.force_close()
        return response

    @property
    def on_error(self) -> OnError:
        return self._manager.on_error


def _response(error: Refusal, body: bytes) -> web.Response:
    return web.Response(status=error.status, body=body, content_type="application/json", headers=error.headers)
