"""The one call pipeline: every call, whichever door it came in by, visits the same stages in order.

    identify -> tag -> admit -> input_policies -> cache -> send -> output_policies -> record

A door (the proxy hooks in addons/, the router's handler in addons/router/) turns what arrived into an
`Ask`, makes the `Call`, and runs the stages up to `send` with `Pipeline.enter`; a stage stops the
call by raising a `Refusal` (core/errors.py) or by answering it (a cache `Hit`); `send` is the door's
own (passthrough forwards the request as it is, the router plans, retries and fails over). When the
answer is done the door calls `Pipeline.leave`, which runs the output policies and records the call.
Adding a stage is adding a module under core/stages/ and one line in `Pipeline.__init__`'s list
(CONTRIBUTING.md shows how)."""

from __future__ import annotations

from collections.abc import Callable
from contextlib import suppress
from dataclasses import dataclass, field
from typing import Any, Protocol

from core.call import Call
from core.errors import Refusal


@dataclass(frozen=True, slots=True)
class Credential:
    """What the caller presented as its gateway key: the secret when the door has it (the router's
    Bearer token, x-api-key, X-Tapgate-Key), else only its digest (a tunnel's proxy credentials,
    checked at CONNECT); `source` names where it came from, for errors the caller can act on."""

    digest: str
    source: str  # "proxy", "X-Tapgate-Key", "bearer" or "x-api-key"
    secret: str | None = None


@dataclass(frozen=True, slots=True)
class CacheAsk:
    """How the door wants the call cached: `None` on the Ask when it cannot be (not a cacheable
    endpoint, no replay for its stream). `dialect` and `endpoint` keep the two doors' entries apart."""

    dialect: str
    endpoint: str
    body: Any  # the body the key is made from (passthrough: the provider's; router: OpenAI chat)
    tenant: str  # whose entries these are when no gateway key names the caller (the gateway key's else)
    # The door's rendering of an entry as this call asked for it; None when it cannot be (a miss then).
    render: Callable[[Any, Any], Any]


@dataclass(frozen=True, slots=True)
class Ask:
    """The client's request in the pipeline's terms, as its door read it. `fields` are the gateway's
    own body fields (the router's Respan fields; passthrough has none)."""

    door: str  # "passthrough" or "router"
    credential: Credential | None
    headers: dict[str, str]
    fields: dict[str, Any] = field(default_factory=dict)
    cache: CacheAsk | None = None
    # The router: the first deployment a model name routes to, as (its route, its model), for pricing
    # the reservation; raises UnknownModel. None at the proxy, where the URL says where a call goes.
    deployment: Callable[[str], tuple[Any, str]] | None = None
    # Passthrough: the provider key's fingerprint, which names the caller when no gateway key does.
    fingerprint: str | None = None
    store_bodies: bool = True
    # The code a malformed gateway field or header is refused with, as each door has always named it.
    bad_field_code: str = "invalid_request"
    # A request the door could not read (not JSON, nested too deep, too large, a malformed gateway
    # field): refused by the admit stage, once the caller is identified and tagged for its row.
    unreadable: Refusal | None = None
    routed: Any = None  # the router's: what only a routed call carries (core/stages/route.py's Routed)


@dataclass(frozen=True, slots=True)
class Hit:
    """The cache stage's answer: the call is answered from the cache with what the door rendered from
    the entry; nothing goes upstream."""

    answer: Any


class Stage(Protocol):
    """One step of a call on its way in: returns None to go on, an answer to stop there, or raises a
    Refusal. A stage with `describes = True` only describes the call (changes nothing, sends
    nothing): it also runs for a call an earlier stage refused, for that call's row."""

    name: str

    async def __call__(self, call: Call, ask: Ask) -> Any: ...


class Finish(Protocol):
    """One step of a call on its way out, once its answer is done (output policies, record)."""

    name: str

    def __call__(self, call: Call, outcome: Any) -> None: ...


class Pipeline:
    """The stages of one door, in order. Every stage but `send` is the same object for both doors."""

    def __init__(self, identify: Stage, tag: Stage, admit: Stage, input_policies: Stage, cache: Stage,
                 send: Stage, output_policies: Finish, record: Finish) -> None:
        self.way_in: tuple[Stage, ...] = (identify, tag, admit, input_policies, cache, send)
        self.way_out: tuple[Finish, ...] = (output_policies, record)

    @property
    def names(self) -> list[str]:
        return [stage.name for stage in (*self.way_in, *self.way_out)]

    async def enter(self, call: Call, ask: Ask) -> Any:
        """Run the stages up to and including send; the first answer stops the call there. A Refusal
        raised by a stage is left on the call (answered by the gateway) and raised on to the door,
        after the stages still ahead that only describe the call (`describes`, as tag does) have
        run, so that a refused call's row still says who it was for."""
        for i, stage in enumerate(self.way_in):
            try:
                answer = await stage(call, ask)
            except Refusal as e:
                call.refuse(e)
                for later in self.way_in[i + 1:]:
                    if getattr(later, "describes", False):
                        with suppress(Refusal):
                            await later(call, ask)
                raise
            if answer is not None:
                return answer
        return None

    def leave(self, call: Call, outcome: Any) -> None:
        """The answer is done (or the call failed or was refused): output policies, then record."""
        for step in self.way_out:
            step(call, outcome)



@dataclass(frozen=True, slots=True)
class Stages:
    """The stages both doors share, made once (addons/gateway.py); each door adds its own send."""

    identify: Stage
    tag: Stage
    admit: Stage
    input_policies: Stage
    cache: Stage
    output_policies: Finish
    record: Finish

    def pipeline(self, send: Stage) -> Pipeline:
        return Pipeline(self.identify, self.tag, self.admit, self.input_policies, self.cache, send,
                        self.output_policies, self.record)
