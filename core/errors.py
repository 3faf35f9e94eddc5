"""Refusal: the one type for "the gateway answered the call itself", raised by any stage of the
pipeline and rendered by each door in its client's dialect (the body below is OpenAI's shape, which
a front or a provider turns into its own). `refused` says whether the row's status is `refused`
(nothing went upstream) or an error of the call that did go out.

    Refusal                      status, type, code, param, headers: one error reply
    ├── BadRequest               400 invalid_request_error (malformed body, unsupported parameter)
    ├── Unauthorized             401 invalid_api_key
    ├── Forbidden                403 model_not_allowed
    ├── ModelNotFound            404 model_not_found
    ├── BodyTooLarge             413 request_too_large
    ├── NotFound                 404 unknown_url, MethodNotAllowed 405 method_not_allowed (addons/router/server.py)
    ├── MalformedRequest         400 invalid_http_request, HeadersTooLarge 431 request_headers_too_large
    ├── OverLimit                429 budget_exceeded / rate_limit_exceeded (core/admission.py decides)
    ├── RefusedByRule            403 refused_by_rule (a routing rule's `refuse`, core/route_plan.py)
    ├── PolicyBlocked            400 or 403 policy_<name>: a guardrail stopped the request (or the answer)
    ├── Unavailable              503 gateway_unavailable: shared budgets unreachable, failing closed (core/shared/)
    ├── ProxyAuthRequired        407 a proxy credential is missing or bad (passthrough's CONNECT and proxy auth)
    ├── Unreachable              502/504 upstream_error: passthrough could not reach the provider; refused=False
    ├── GatewayFailed            500 gateway_error: a bug of ours, logged; refused=False
    ├── ProviderRejected         the provider's own 4xx, not retried (400, 401, 403, 404); refused=False
    └── AllAttemptsFailed        429, 502, 503 or 504 once every retry and fallback failed; lists each
                                 (500 provider_key_missing when no deployment had its key variable set); refused=False
"""

from __future__ import annotations

import json
from dataclasses import dataclass


class Refusal(Exception):
    status = 500
    type = "server_error"
    code: str | None = None
    refused = True  # nothing went upstream: the row's status is `refused`

    def __init__(self, message: str, *, param: str | None = None, code: str | None = None,
                 headers: dict[str, str] | None = None, status: int | None = None, key=None) -> None:
        super().__init__(message)
        self.message = message
        self.param = param
        self.code = code or self.code
        self.headers = headers or {}
        if status is not None:
            self.status = status
        self.key = key  # a known gateway key that may not be used now (revoked, expired): the row names it

    def body(self) -> dict:
        return {"error": {"message": self.message, "type": self.type, "param": self.param, "code": self.code}}

    def payload(self) -> bytes:
        return json.dumps(self.body()).encode()


class PolicyBlocked(Refusal):
    """A guardrail stopped the call (core/policies/): its status (400 or 403) and code `policy_<name>`;
    `refused` unless it stopped the answer (then the provider had the request)."""

    def __init__(self, block) -> None:
        super().__init__(block.message, code=block.code, status=block.status)
        self.type = "permission_error" if block.status == 403 else "invalid_request_error"
        self.refused = block.on == "request"


class BadRequest(Refusal):
    status, type, code = 400, "invalid_request_error", "invalid_request"


class Unauthorized(Refusal):
    status, type, code = 401, "invalid_request_error", "invalid_api_key"


class ProxyAuthRequired(Refusal):
    status, type, code = 407, "invalid_request_error", "invalid_gateway_key"


class Forbidden(Refusal):
    status, type, code = 403, "permission_error", "model_not_allowed"


class ModelNotFound(Refusal):
    status, type, code = 404, "invalid_request_error", "model_not_found"


class BodyTooLarge(Refusal):
    status, type, code = 413, "invalid_request_error", "request_too_large"


class NotFound(Refusal):
    status, type, code = 404, "invalid_request_error", "unknown_url"


class MethodNotAllowed(Refusal):
    status, type, code = 405, "invalid_request_error", "method_not_allowed"


class MalformedRequest(Refusal):
    status, type, code = 400, "invalid_request_error", "invalid_http_request"


class HeadersTooLarge(Refusal):
    status, type, code = 431, "invalid_request_error", "request_headers_too_large"


class OverLimit(Refusal):
    status, type = 429, "rate_limit_error"


class RefusedByRule(Refusal):
    status, type, code = 403, "invalid_request_error", "refused_by_rule"

    def __init__(self, message: str, *, rule: str) -> None:
        super().__init__(message)
        self.rule = rule


class ProviderRejected(Refusal):
    """The provider refused the request itself; retrying or failing over would not change that."""

    type = "invalid_request_error"
    refused = False

    def __init__(self, status: int, message: str, code: str | None = None) -> None:
        super().__init__(message, code=code)
        self.status = status
        self.type = {401: "authentication_error", 403: "permission_error"}.get(status, "invalid_request_error")


@dataclass(frozen=True, slots=True)
class Failure:
    """Why one attempt failed. kind: connect | connect_timeout | first_byte_timeout | reset | http |
    stream_error | missing_key (the gateway's environment lacks the deployment's key; nothing was sent)."""

    kind: str
    message: str
    status: int | None = None
    code: str | None = None  # the provider's error code, e.g. insufficient_quota
    retry_after: float | None = None  # seconds, from Retry-After or retry-after-ms

    def describe(self, target: str) -> str:
        what = f"HTTP {self.status}" if self.kind == "http" else self.kind.replace("_", " ")
        return f"{target}: {what}: {self.message}"


class GatewayFailed(Refusal):
    """A bug of the gateway's own: the client gets a clean 500, the call is still recorded."""

    code = "gateway_error"
    refused = False


class Unreachable(Refusal):
    """Passthrough: mitmproxy could not reach the provider (502) or timed out (504)."""

    status, code = 502, "upstream_error"
    refused = False


class AllAttemptsFailed(Refusal):
    type = "server_error"
    refused = False

    def __init__(self, attempts: list[tuple[str, Failure]]) -> None:
        failures = [f for _, f in attempts]
        last = failures[-1] if failures else None
        if failures and all(f.kind == "missing_key" for f in failures):
            status, code, kind = 500, "provider_key_missing", "server_error"
        elif failures and all(f.status == 429 for f in failures):
            status, code, kind = 429, "rate_limit_exceeded", "rate_limit_error"
        elif last is not None and last.kind in ("connect_timeout", "first_byte_timeout", "deadline"):
            status, code, kind = 504, "upstream_timeout", "timeout_error"
        elif last is not None and last.status in (503, 529):
            status, code, kind = 503, "upstream_unavailable", "server_error"
        else:
            status, code, kind = 502, "upstream_failed", "server_error"
        lines = "; ".join(f"attempt {i}: {f.describe(t)}" for i, (t, f) in enumerate(attempts, 1))
        retry_after = max((f.retry_after or 0 for f in failures), default=0)
        headers = {"retry-after": str(max(1, round(retry_after)))} if status == 429 else {}
        super().__init__(f"Every deployment failed ({len(attempts)} attempts). {lines}", code=code, headers=headers)
        self.status, self.type = status, kind
        self.attempts = attempts


class Unavailable(Refusal):
    """The gateway cannot decide whether the call may go on (its shared state is unreachable)."""

    status, type, code = 503, "server_error", "gateway_unavailable"
