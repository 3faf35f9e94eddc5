"""The gateway's config file: pydantic models with defaults that run with no file, and a loader
whose errors name the file, line and field."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, Protocol

from pydantic import Field, ValidationError, field_validator, model_validator

from core.config_base import Strict, compiles
from core.evals.config import EvalsConfig
from core.policies.config import GuardPolicy

if TYPE_CHECKING:
    from providers.pricing import PriceTable


class CustomHost(Strict):
    """A local or private OpenAI-compatible server (vLLM, Ollama) to capture like a provider."""

    host: str = Field(pattern=r"^[A-Za-z0-9.\-\[\]:]+:\d+$")
    """`host:port`, e.g. `localhost:11434`."""
    name: str = "custom"
    """The provider name its rows get."""
    dialect: Literal["openai", "ollama"] = "openai"
    """`openai` (vLLM, llama.cpp server, LM Studio) or `ollama` (native `/api/chat`, `/api/generate`, and `/v1`)."""
    price_prefix: str = ""
    """Put before the model name to find its price, e.g. `ollama/`."""


class ModelPrice(Strict):
    """USD per million tokens; cache prices default to the input price."""

    input: float = Field(ge=0)
    """Input tokens."""
    output: float = Field(ge=0)
    """Output tokens, reasoning included."""
    cache_read: float | None = Field(default=None, ge=0)
    """Input tokens read from the provider's prompt cache."""
    cache_write: float | None = Field(default=None, ge=0)
    """Input tokens written to the prompt cache (Anthropic's 5-minute writes)."""
    cache_write_1h: float | None = Field(default=None, ge=0)
    """Input tokens written to the prompt cache for an hour (Anthropic)."""


Unit = Literal["usd", "tokens", "requests"]
Period = Literal["day", "week", "month", "year", "lifetime"]


class Budget(Strict):
    """One budget: a hard cap (calls are refused before they go upstream) and any number of soft
    thresholds (an alert each, once per period), all in one unit over one calendar period."""

    name: str = ""
    """Shown in alerts and the budgets table; `<unit>/<period>` when empty."""
    unit: Unit = "usd"
    """What is counted: USD, tokens or requests."""
    period: Period = "month"
    """Calendar period in the config's `timezone` (a week starts on Monday)."""
    cap: float | None = Field(default=None, gt=0)
    """Hard cap: a call that would pass it is refused with a 429. None: soft thresholds only."""
    soft: list[float] = []
    """Soft thresholds below the cap: an alert each, once per period; calls go on."""

    @property
    def label(self) -> str:
        return self.name or f"{self.unit}/{self.period}"


class RateLimit(Strict):
    """Requests and provider-reported tokens per minute; over them the caller gets a 429."""

    rpm: int | None = Field(default=None, gt=0)
    """Calls per sliding minute, counted as they start."""
    tpm: int | None = Field(default=None, gt=0)
    """Provider-reported tokens per sliding minute, counted as calls end."""


class Downgrade(Strict):
    """Router mode: once a budget of the key or customer is `above` this share spent, calls for `model`
    (a glob) go to the cheaper `to` instead; noted on the trace."""

    above: float = Field(gt=0, le=1)
    """Share of the most-spent capped budget (reservations included), e.g. 0.8."""
    model: str
    """Shell glob over the model the request names, e.g. `gpt-4o*`."""
    to: str
    """The cheaper model the call goes to instead."""


class Policy(Strict):
    """What a customer may spend and how fast."""

    budgets: list[Budget] = []
    """The customer's budgets."""
    rate_limit: RateLimit = RateLimit()
    """The customer's rate limit."""
    downgrade: list[Downgrade] = []
    """Router calls move to a cheaper model as a budget nears its cap."""


class EmailAlerts(Strict):
    """Alert emails over SMTP."""

    smtp_host: str
    """The SMTP server."""
    smtp_port: int = 25
    """Its port."""
    sender: str = "tapgate@localhost"
    """The From address."""
    to: list[str]
    """The addresses alerts go to."""
    starttls: bool = False
    """STARTTLS before logging in."""
    username: str | None = None
    """The SMTP login; none: no login."""
    password_env: str | None = None
    """The name of the environment variable holding the SMTP password, never the password."""


class Alerts(Strict):
    """Where budget alerts go; each is sent off the hot path, with retries."""

    slack_webhook: str | None = None
    """A Slack incoming webhook URL: gets `{"text": message}`."""
    webhook: str | None = None
    """A URL that gets each alert as a JSON POST; any 2xx is delivered."""
    email: EmailAlerts | None = None
    """Alert emails."""


class Deployment(Strict):
    """One place a model can be served: a provider, its model name, where and with whose key."""

    provider: str
    """`openai`, `anthropic`, `gemini`, another known provider, or any name with a `base_url` (OpenAI-compatible)."""
    model: str
    """The model name the provider knows."""
    base_url: str | None = Field(default=None, pattern=r"^https?://")
    """Where the provider's API lives; its public URL when empty. Only config sets it: a client that could
    choose it could send the gateway's provider key anywhere."""
    api_key_env: str | None = None
    """The environment variable holding the provider key, never the key; the provider's own variable when empty."""
    weight: float = Field(default=1.0, gt=0)
    """Share of the alias's traffic (a weighted shuffle per call, which also orders the retries)."""
    headers: dict[str, str] = {}
    """Extra request headers (OpenRouter's `HTTP-Referer`, `X-Title`)."""

    @model_validator(mode="after")
    def _known_or_reachable(self) -> Deployment:
        from providers import provider_names

        if self.provider not in provider_names() and not self.base_url:
            raise ValueError(f"unknown provider {self.provider!r}: one of {', '.join(provider_names())}, "
                             "or any name with a base_url (an OpenAI-compatible server)")
        return self


class StreamTimeouts(Strict):
    """Limits on a streamed answer once it has started (docs/routing.md)."""

    first_token: float | None = Field(default=None, gt=0)
    """Seconds from sending to the first streamed event; past it the attempt fails over like a silent
    server. Empty: the router's `first_byte_timeout`."""
    stall: float | None = Field(default=None, gt=0)
    """Seconds a started stream may go without an event; past it the stream ends with an error event
    (or continues on a fallback, with `continue_on_failure`)."""
    continue_on_failure: bool = False
    """A stream cut or stalled after its first byte is continued by the next deployment of the plan,
    which is sent the partial answer; the client reads one stream."""


class ModelAlias(Strict):
    """A model name clients send, served by one or more deployments split by weight."""

    deployments: list[Deployment] = Field(min_length=1)
    """Where the alias is served; a bare list in YAML is this list."""
    fallback_models: list[str] = []
    """Models tried, in order, when every deployment failed."""
    strategy: Literal["weighted", "lowest-cost", "lowest-latency", "least-busy", "cost-latency"] = "weighted"
    """How the deployments are ordered for each call (docs/routing.md): by weight, by estimated cost, by
    recent latency, by calls in flight, or by cost and latency together."""
    cost_weight: float = Field(default=0.5, ge=0, le=1)
    """`cost-latency` only: 1 orders by cost alone, 0 by latency alone."""
    explore: float = Field(default=0.05, ge=0, le=1)
    """`lowest-latency` and `cost-latency`: share of calls that try a random deployment first, so a
    recovered one is noticed."""
    stream_timeouts: StreamTimeouts | None = None
    """Stream limits for this alias, over the router's `stream_timeouts`."""

    @model_validator(mode="before")
    @classmethod
    def _list_is_deployments(cls, value: Any) -> Any:
        return {"deployments": value} if isinstance(value, list) else value


class ProviderAccess(Strict):
    """Where a provider is reached and which variable holds its key, for `provider/model` names."""

    base_url: str | None = Field(default=None, pattern=r"^https?://")
    """Where the provider's API lives; its public URL when empty."""
    api_key_env: str | None = None
    """The environment variable holding its key (`OPENAI_API_KEY`, `ANTHROPIC_API_KEY`, ... when empty)."""


class RetryPolicy(Strict):
    """Respan's retry_params: retries per model with full-jitter exponential backoff."""

    retry_enabled: bool = True
    """Retry a model before moving on to the next."""
    num_retries: int = Field(default=2, ge=0, le=10)
    """Retries per model."""
    retry_after: float = Field(default=0.5, ge=0)
    """Seconds: the first backoff's ceiling; each retry doubles it up to max_backoff."""
    max_backoff: float = Field(default=8.0, ge=0)
    """Seconds: the longest backoff; a provider's Retry-After longer than this moves on to the next model."""


class Cooldown(Strict):
    """A deployment failing `failures` times in a row is skipped for `seconds`, then probed by one call."""

    failures: int = Field(default=3, ge=1)
    """Failures in a row that put a deployment in cooldown."""
    seconds: float = Field(default=30.0, ge=0)
    """How long it is skipped."""
    error_rate: float | None = Field(default=0.5, gt=0, le=1)
    """A deployment whose recent error rate (a moving average over about its last 5 attempts, once it
    has had 3) is above this is tried after the others, whatever the alias's strategy; empty: never."""


class RouterConfig(Strict):
    """The router: one OpenAI-compatible (and Anthropic-shaped) endpoint for every provider."""

    master_key_env: str = "TAPGATE_MASTER_KEY"
    """The variable holding the gateway master key."""
    master_key: str | None = None
    """The master key itself, for tests and demos; prefer `master_key_env`."""
    providers: dict[str, ProviderAccess] = {}
    """Where `provider/model` names go, by provider name."""
    models: dict[str, ModelAlias] = {}
    """Aliases clients can name, each served by one or more deployments."""
    fallback_models: dict[str, list[str]] = {}
    """Fallbacks for a model name when the request names none."""
    retry: RetryPolicy = RetryPolicy()
    """Retries per model."""
    connect_timeout: float = Field(default=5.0, gt=0)
    """Seconds to connect to a deployment."""
    first_byte_timeout: float = Field(default=60.0, gt=0)
    """Seconds from sending the request to the first byte of the answer (for a stream: its first event)."""
    timeout: float = Field(default=600.0, gt=0)
    """Seconds: one deadline for the whole call, every retry and fallback included."""
    cooldown: Cooldown = Cooldown()
    """When a failing deployment is skipped."""
    unsupported_params: Literal["drop", "refuse"] = "drop"
    """A parameter the target provider has no equivalent for: dropped (noted on the trace) or refused (400)."""
    extra_params: list[str] = []
    """Body fields beyond OpenAI's documented parameters that still reach OpenAI-compatible deployments
    (vLLM's `top_k`, OpenRouter's `provider`); `"*"` passes every field. Others are dropped, noted on the trace."""
    max_body_bytes: int = Field(default=16 * 1024 * 1024, gt=0)
    """Largest request body the router reads; larger ones get a 413."""
    stream_timeouts: StreamTimeouts = StreamTimeouts()
    """Stream limits for every alias that sets none."""


class CacheSettings(Strict):
    """Cache defaults for a key or model; unset fields fall through to the global ones."""

    enabled: bool | None = None
    """Use the cache for these calls."""
    ttl: float | None = Field(default=None, gt=0)
    """Seconds an answer is kept."""
    by_customer: bool | None = None
    """One customer's answers never serve another."""
    by_model: bool | None = None
    """The model is part of the cache key."""


class CacheConfig(Strict):
    """The response cache: off unless enabled here, per key or model, or per request (cache_enabled)."""

    enabled: bool = False
    """Use the cache for every call."""
    ttl: float = Field(default=300.0, gt=0)
    """Seconds an answer is kept, when the request gives no `cache_ttl`."""
    by_customer: bool = False
    """`cache_options.cache_by_customer`: one customer's entries never serve another."""
    by_model: bool = True
    """`cache_options.is_cached_by_model`: false shares answers across models."""
    max_bytes: int = Field(default=64 * 1024 * 1024, gt=0)
    """Bytes held in memory; least recently used go first."""
    max_entry_bytes: int = Field(default=4 * 1024 * 1024, gt=0)
    """Largest answer kept."""
    persist: bool = False
    """Also keep entries in the SQLite store (table `cache_entries`), so they survive a restart."""
    store_sampled: bool = False
    """Cache sampled answers too (temperature > 0, or n > 1), which differ call to call."""
    wait_for_identical: float = Field(default=60.0, ge=0)
    """Seconds an identical request waits for the one already in flight before going upstream itself."""
    keys: dict[str, CacheSettings] = {}
    """Per gateway key id."""
    models: dict[str, CacheSettings] = {}
    """Per model name or router alias, as the request names it."""


class RuleMatch(Strict):
    """What a call must show for its rule to apply: every condition given holds (none given: every call)."""

    model: list[str] = []
    """Shell globs over the model or alias the client asked for; a single string is a list of one."""
    user_regex: str | None = None
    """A regular expression searched in the last user message (case-insensitive)."""
    system_regex: str | None = None
    """A regular expression searched in the system prompt (case-insensitive)."""
    keywords: list[str] = []
    """Any of these words in the last user message or the system prompt (whole words, case-insensitive)."""
    min_input_tokens: int | None = Field(default=None, ge=0)
    """Estimated input tokens (characters / 4) at least this many."""
    max_input_tokens: int | None = Field(default=None, ge=0)
    """Estimated input tokens at most this many."""
    tools: bool | None = None
    """True: the request offers tools; false: it offers none."""
    images: bool | None = None
    """True: a message holds an image; false: none does."""
    json_schema: bool | None = None
    """True: the request asks for a JSON-schema response format; false: it does not."""
    metadata: dict[str, str] = {}
    """Metadata keys (the call's tags and the body's `metadata`) and the values they must have."""
    customer: list[str] = []
    """The call's customer_identifier is one of these."""
    key: list[str] = []
    """The call's gateway key, by id or name, is one of these."""
    headers: dict[str, str] = {}
    """Request headers (any case) and a regular expression their value must match."""

    @model_validator(mode="before")
    @classmethod
    def _one_model_is_a_list(cls, value: Any) -> Any:
        if isinstance(value, dict) and isinstance(value.get("model"), str):
            return {**value, "model": [value["model"]]}
        return value

    @model_validator(mode="after")
    def _regexes_compile(self) -> RuleMatch:
        for name, pattern in [("user_regex", self.user_regex), ("system_regex", self.system_regex),
                              *((f"headers.{h}", p) for h, p in self.headers.items())]:
            try:
                compiles(pattern or "")
            except ValueError as e:
                raise ValueError(f"{name}: {e}") from None
        return self


class RoutingRule(Strict):
    """One rule: when a call matches, where it goes (an alias, a list of deployments) or that it is refused."""

    name: str = Field(min_length=1)
    """Shown by `tapgate route --explain`, on the call's root span and in the row's `rule` column."""
    match: RuleMatch = RuleMatch()
    """The conditions; none: every call."""
    to: str | None = None
    """The alias or model name the call goes to instead of the one asked for."""
    deployments: list[Deployment] = []
    """Or: these deployments, in order of weight, as if they were an alias."""
    refuse: str | None = None
    """Or: refuse the call with this message (403, code `refused_by_rule`)."""

    @model_validator(mode="after")
    def _one_action(self) -> RoutingRule:
        given = [n for n, v in (("to", self.to), ("deployments", self.deployments), ("refuse", self.refuse)) if v]
        if len(given) != 1:
            raise ValueError("a rule needs exactly one of to, deployments or refuse" +
                             (f", not {' and '.join(given)}" if given else ""))
        return self


class Variant(Strict):
    """One arm of an experiment: where its share of the calls goes."""

    name: str = Field(min_length=1)
    """Recorded in the row's `variant` column."""
    to: str
    """The alias or model name its calls go to."""
    percent: float = Field(ge=0, le=100)
    """Its share of the experiment's calls; the variants' shares add up to 100."""


class Experiment(Strict):
    """An A/B split of the calls for one model name between variants, each customer (or thread, or call)
    always getting the same one."""

    model: str
    """The model or alias name whose calls are split (as asked, or as a routing rule sent them)."""
    sticky: Literal["customer", "thread", "call"] = "customer"
    """What keeps its variant: a customer, a thread (X-Tapgate-Thread-Identifier), or nothing (per call).
    Calls without a customer or thread are assigned per call."""
    variants: list[Variant] = Field(min_length=2)
    """The arms, each with its share."""

    @model_validator(mode="after")
    def _shares_add_up(self) -> Experiment:
        if abs(sum(v.percent for v in self.variants) - 100) > 1e-6:
            raise ValueError(f"the variants' percent add up to {sum(v.percent for v in self.variants):g}, not 100")
        names = [v.name for v in self.variants]
        if len(set(names)) != len(names):
            raise ValueError("variant names must be unique")
        return self


class ShadowTraffic(Strict):
    """A share of the calls for some models, sent again in the background to a candidate model; the
    client never waits for it or sees its answer (docs/routing.md)."""

    model: list[str] = Field(min_length=1)
    """Shell globs over the model the client asked for; a single string is a list of one."""
    to: str
    """The candidate: an alias or model name the router can reach."""
    percent: float = Field(gt=0, le=100)
    """Share of the matching calls that are shadowed."""
    modes: list[Literal["router", "passthrough"]] = ["router", "passthrough"]
    """Which doors' calls are shadowed."""
    budget_usd_per_day: float = Field(default=1.0, gt=0)
    """The shadow's own budget (UTC days, kept by the running gateway): once spent, calls are no
    longer shadowed that day. Shadow calls never count against a key's or customer's budget."""
    max_in_flight: int = Field(default=4, ge=1)
    """Shadow calls at once; a call that would pass it is not shadowed (counted and logged)."""

    @model_validator(mode="before")
    @classmethod
    def _one_model_is_a_list(cls, value: Any) -> Any:
        if isinstance(value, dict) and isinstance(value.get("model"), str):
            return {**value, "model": [value["model"]]}
        return value


class Routing(Strict):
    """Where calls go before an alias splits them: rules evaluated in order, the first match wins."""

    rules: list[RoutingRule] = []
    """The rules, in order."""
    experiments: dict[str, Experiment] = {}
    """A/B experiments by name (docs/routing.md); at most one per model name."""
    shadow: dict[str, ShadowTraffic] = {}
    """Shadow traffic by name: calls also sent, in the background, to a candidate model."""

    @model_validator(mode="after")
    def _unique_names(self) -> Routing:
        names = [r.name for r in self.rules]
        if dupes := sorted({n for n in names if names.count(n) > 1}):
            raise ValueError(f"rule names must be unique: {', '.join(dupes)}")
        models = [e.model for e in self.experiments.values()]
        if dupes := sorted({m for m in models if models.count(m) > 1}):
            raise ValueError(f"one experiment per model name: {', '.join(dupes)} has several")
        return self


class TapgateConfig(Strict):
    """The whole file (`--set tapgate_config=tapgate.yaml`); every block is optional."""

    custom_hosts: list[CustomHost] = []
    """Local or private servers to capture like providers."""
    prices: dict[str, ModelPrice] = {}
    """USD per million tokens, replacing the table's row; keys as in providers/prices.json: `gpt-4o`,
    `gemini/gemini-2.5-flash`, `ollama/llama3`."""
    require_key: bool = False
    """Every LLM call needs a gateway key; traffic without one is allowed (and recorded) unless this is set."""
    timezone: str = "UTC"
    """Budget periods start at midnight in this zone (day; Monday for week; the 1st for month)."""
    default_max_tokens: int = Field(default=4096, gt=0)
    """Output tokens assumed when a request sets no max_tokens, to reserve its worst case."""
    budgets: list[Budget] = []
    """Budgets across all traffic."""
    customers: dict[str, Policy] = {}
    """Per `customer_identifier`: named customers."""
    customer_default: Policy = Policy()
    """The policy of every customer not named in `customers`."""
    customer_params_budgets: Literal["all", "none"] | list[str] = "all"
    """Whose self-declared budgets (`X-Tapgate-Params` `customer_params`) count: they add a cap, never replace
    the ones above. `all` honours them from any caller, `none` ignores them, and a list honours them only on
    calls made with these gateway keys (ids or names)."""
    alerts: Alerts = Alerts()
    """Where budget alerts go."""
    router: RouterConfig = RouterConfig()
    """The router."""
    cache: CacheConfig = CacheConfig()
    """The response cache."""
    evals: EvalsConfig = EvalsConfig()
    """Evaluators, and the share of live calls they score."""
    routing: Routing = Routing()
    """Routing rules (router calls)."""
    policies: list[GuardPolicy] = []
    """Guardrails on what goes out and what comes back (docs/policies.md); none unless listed here."""

    @field_validator("policies")
    @classmethod
    def _policy_names_unique(cls, policies: list[GuardPolicy]) -> list[GuardPolicy]:
        names = [p.name for p in policies]
        if dupes := sorted({n for n in names if names.count(n) > 1}):
            raise ValueError(f"policy names must be unique: {', '.join(dupes)}")
        return policies


class Configured(Protocol):
    """What holds the config in force (the Settings addon): read at each call, so a reloaded config
    applies to the next one."""

    config: TapgateConfig
    prices: PriceTable


class ConfigError(ValueError):
    """A config file that cannot be used; the message says where and why."""


def load_config(path: str | Path | None) -> TapgateConfig:
    """The config in `path`, or the defaults when path is empty."""
    if not path:
        return TapgateConfig()
    from ruamel.yaml import YAML  # a mitmproxy dependency; keeps line numbers for error messages

    path = Path(path).expanduser()
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as e:
        raise ConfigError(f"{path}: cannot read config: {e.strerror}") from None
    try:
        data = YAML(typ="rt").load(text)
    except Exception as e:
        raise ConfigError(f"{path}: not valid YAML: {e}") from None
    try:
        return TapgateConfig.model_validate(data or {})
    except ValidationError as e:
        err = e.errors()[0]
        loc = _without_tags(data, err["loc"])
        where = ".".join(str(p) for p in loc)
        raise ConfigError(f"{path}:{_line_of(data, loc)}: {where}: {err['msg']}") from None


def _without_tags(data: Any, loc: tuple) -> tuple:
    """The error's path without the discriminator values pydantic puts in it (`evaluators.a.regex.pattern`
    is `evaluators.a.pattern` in the file)."""
    out, node = [], data
    for key in loc:
        if isinstance(node, dict) and key not in node and node.get("kind") == key:
            continue
        out.append(key)
        try:
            node = node[key]
        except (KeyError, IndexError, TypeError):
            node = None
    return tuple(out)


def _line_of(data: Any, loc: tuple) -> int:
    """1-based line of the deepest YAML node on the error's path that exists."""
    line, node = 1, data
    for key in loc:
        lc = getattr(node, "lc", None)
        try:
            if lc is not None and isinstance(node, dict) and key in node:
                line = lc.key(key)[0] + 1
            elif lc is not None and isinstance(node, list) and isinstance(key, int) and key < len(node):
                line = lc.item(key)[0] + 1
            node = node[key]
        except (KeyError, IndexError, TypeError):
            break
    return line
