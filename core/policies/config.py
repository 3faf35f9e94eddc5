"""The `policies:` block of the config file: what each guardrail looks for, where, and what it does."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator, model_validator

from core.config_base import Regex, Strict
from core.policies.custom import load_callable

DetectorName = Literal["secrets", "pii", "email", "phone", "card", "iban", "ssn", "ip", "injection"]


class CustomPattern(Strict):
    """A regex of your own and the placeholder type its matches get (`<EMPLOYEE_ID_1>`)."""

    type: str = Field(pattern=r"^[A-Z][A-Z0-9_]{0,31}$")
    """Upper-case name of what it finds, used in placeholders and counts."""
    regex: Regex
    """A Python regular expression."""


class Judge(Strict):
    """An LLM asked, through the router's routing, whether a request is a prompt injection."""

    model: str
    """A router alias or `provider/model` name; its deployments need their keys in the gateway's environment."""
    timeout: float = Field(default=3.0, gt=0)
    """Seconds the call waits for the verdict."""
    on_error: Literal["allow", "block"] = "allow"
    """No verdict in time, or an error: `allow` (fail open, recorded) or `block` (fail closed)."""
    max_chars: int = Field(default=8000, gt=0)
    """The end of the request's text sent to the judge (where an injection in the newest turn sits)."""


class PolicyScope(Strict):
    """Which calls a policy applies to; an empty list matches anything, and every list given must match."""

    keys: list[str] = []
    """Gateway key ids or names."""
    customers: list[str] = []
    """`customer_identifier` values."""
    models: list[str] = []
    """Shell globs over the model or router alias the request names."""
    hosts: list[str] = []
    """Shell globs over the provider host (`api.openai.com`, `*.openai.azure.com`)."""
    modes: list[Literal["passthrough", "router"]] = []
    """`passthrough`, `router`, or both when empty."""


class GuardPolicy(Strict):
    """One guardrail: detectors, where they look, and what happens when they find something."""

    name: str = Field(pattern=r"^[A-Za-z0-9_.-]{1,64}$")
    """Named in refusals (`policy_<name>`), spans, rows, `tapgate logs --policy` and alerts."""
    detectors: list[DetectorName] = []
    """Built-in detectors: `secrets`, `pii` (all of `email`, `phone`, `card`, `iban`, `ssn`, `ip`), each of
    those by name, and `injection`."""
    patterns: list[CustomPattern] = []
    """Custom regexes, each with its placeholder type."""
    callable: str | None = None
    """A Python function by dotted path (`mypkg.checks:find`) called with each text; returns (type, start, end)."""
    applies_to: Literal["request", "response", "both"] = "request"
    """What is scanned: what the client sends, what the provider answers, or both."""
    action: Literal["block", "redact", "flag"] = "flag"
    """`block`: refused in the provider's error shape, nothing sent; `redact`: matches become `<TYPE_n>`
    placeholders; `flag`: passed unchanged and marked on the row."""
    restore: bool = False
    """With `redact` on requests: put the original values back in the answer (streams too) before the client
    sees it. The mapping lives in memory for the call only."""
    status: Literal[400, 403] = 400
    """The HTTP status of a block."""
    scope: PolicyScope = PolicyScope()
    """Which calls it applies to: all of them unless narrowed."""
    scan_limit: int = Field(default=1_000_000, gt=0)
    """Characters of text scanned per body; past it, or for a body that is not JSON, `over_limit` decides."""
    over_limit: Literal["pass", "flag", "block"] = "flag"
    """A body over `scan_limit` or not JSON: passed unscanned, passed and flagged, or blocked. Always recorded."""
    phone_region: str = Field(default="US", pattern=r"^[A-Z]{2}$")
    """Where phone numbers written without a country code are read as national numbers."""
    alert: bool = False
    """Send an alert through the configured channels (`alerts:`) when this policy blocks a call."""
    judge: Judge | None = None
    """Requests only: also ask an LLM whether the request is a prompt injection; a yes counts as a match."""

    @field_validator("callable")
    @classmethod
    def _loads(cls, value: str | None) -> str | None:
        if value is not None:
            load_callable(value)
        return value

    @model_validator(mode="after")
    def _consistent(self) -> GuardPolicy:
        if not (self.detectors or self.patterns or self.callable or self.judge):
            raise ValueError("a policy needs at least one of detectors, patterns, callable or judge")
        if self.judge is not None and self.applies_to == "response":
            raise ValueError("a judge reads requests: applies_to request or both")
        if self.restore and self.action != "redact":
            raise ValueError("restore needs action: redact")
        return self
