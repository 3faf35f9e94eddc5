"""The gateway's config file: pydantic models with defaults that run with no file, and a loader
whose errors name the file, line and field."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class CustomHost(Strict):
    """A local or private OpenAI-compatible server (vLLM, Ollama) to capture like a provider."""

    host: str = Field(pattern=r"^[A-Za-z0-9.\-\[\]:]+:\d+$", description='"host:port", e.g. "localhost:11434"')
    name: str = "custom"
    dialect: Literal["openai", "ollama"] = "openai"
    price_prefix: str = ""


class ModelPrice(Strict):
    """USD per million tokens; cache prices default to the input price."""

    input: float = Field(ge=0)
    output: float = Field(ge=0)
    cache_read: float | None = Field(default=None, ge=0)
    cache_write: float | None = Field(default=None, ge=0)
    cache_write_1h: float | None = Field(default=None, ge=0)


Unit = Literal["usd", "tokens", "requests"]
Period = Literal["day", "week", "month", "year", "lifetime"]


class Budget(Strict):
    """One budget: a hard cap (calls are refused before they go upstream) and any number of soft
    thresholds (an alert each, once per period), all in one unit over one calendar period."""

    name: str = ""
    unit: Unit = "usd"
    period: Period = "month"
    cap: float | None = Field(default=None, gt=0)
    soft: list[float] = []

    @property
    def label(self) -> str:
        return self.name or f"{self.unit}/{self.period}"


class RateLimit(Strict):
    """Requests and provider-reported tokens per minute; over them the caller gets a 429."""

    rpm: int | None = Field(default=None, gt=0)
    tpm: int | None = Field(default=None, gt=0)


class Downgrade(Strict):
    """Router mode: once a budget of the key or customer is `above` this share spent, calls for `model`
    (a glob) go to the cheaper `to` instead; noted on the trace."""

    above: float = Field(gt=0, le=1)
    model: str
    to: str


class Policy(Strict):
    budgets: list[Budget] = []
    rate_limit: RateLimit = RateLimit()
    downgrade: list[Downgrade] = []


class EmailAlerts(Strict):
    smtp_host: str
    smtp_port: int = 25
    sender: str = "tapgate@localhost"
    to: list[str]
    starttls: bool = False
    username: str | None = None
    password_env: str | None = None  # the name of the variable holding the password, never the password


class Alerts(Strict):
    """Where budget alerts go; each is sent off the hot path, with retries."""

    slack_webhook: str | None = None
    webhook: str | None = None
    email: EmailAlerts | None = None


class Deployment(Strict):
    """One place a model can be served: a provider, its model name, where and with whose key."""

    provider: str = Field(description="openai, anthropic, gemini, or an OpenAI-compatible provider name")
    model: str
    # Where the provider's API lives; the provider's public URL when empty. Only config sets it:
    # a client that could choose it could send the gateway's provider key anywhere.
    base_url: str | None = Field(default=None, pattern=r"^https?://")
    # The name of the environment variable holding the provider key, never the key.
    api_key_env: str | None = None
    weight: float = Field(default=1.0, gt=0)
    headers: dict[str, str] = {}  # extra request headers (OpenRouter's HTTP-Referer, X-Title)

    @model_validator(mode="after")
    def _known_or_reachable(self) -> Deployment:
        from providers import provider_names

        if self.provider not in provider_names() and not self.base_url:
            raise ValueError(f"unknown provider {self.provider!r}: one of {', '.join(provider_names())}, "
                             "or any name with a base_url (an OpenAI-compatible server)")
        return self


class ModelAlias(Strict):
    """A model name clients send, served by one or more deployments split by weight."""

    deployments: list[Deployment] = Field(min_length=1)
    fallback_models: list[str] = []

    @model_validator(mode="before")
    @classmethod
    def _list_is_deployments(cls, value: Any) -> Any:
        return {"deployments": value} if isinstance(value, list) else value


class ProviderAccess(Strict):
    """Where a provider is reached and which variable holds its key, for `provider/model` names."""

    base_url: str | None = Field(default=None, pattern=r"^https?://")
    api_key_env: str | None = None


class RetryPolicy(Strict):
    """Respan's retry_params: retries per model with full-jitter exponential backoff."""

    retry_enabled: bool = True
    num_retries: int = Field(default=2, ge=0, le=10)
    # Seconds: the first backoff's ceiling; each retry doubles it up to max_backoff.
    retry_after: float = Field(default=0.5, ge=0)
    max_backoff: float = Field(default=8.0, ge=0)


class Cooldown(Strict):
    """A deployment failing `failures` times in a row is skipped for `seconds`, then probed by one call."""

    failures: int = Field(default=3, ge=1)
    seconds: float = Field(default=30.0, ge=0)


class RouterConfig(Strict):
    # The gateway master key, from this variable (or `master_key`, for tests and demos).
    master_key_env: str = "TAPGATE_MASTER_KEY"
    master_key: str | None = None
    providers: dict[str, ProviderAccess] = {}
    models: dict[str, ModelAlias] = {}
    # Fallbacks for a model name when the request names none.
    fallback_models: dict[str, list[str]] = {}
    retry: RetryPolicy = RetryPolicy()
    connect_timeout: float = Field(default=5.0, gt=0)
    # From sending the request to the first byte of the answer (for a stream: its first event).
    first_byte_timeout: float = Field(default=60.0, gt=0)
    # One deadline for the whole call, every retry and fallback included.
    timeout: float = Field(default=600.0, gt=0)
    cooldown: Cooldown = Cooldown()
    # A parameter the target provider has no equivalent for: dropped (noted on the trace) or refused (400).
    unsupported_params: Literal["drop", "refuse"] = "drop"
    # Body fields beyond OpenAI's documented parameters that still reach OpenAI-compatible deployments
    # (vLLM's top_k, OpenRouter's provider); "*" passes every field. Others are dropped, noted on the trace.
    extra_params: list[str] = []
    max_body_bytes: int = Field(default=16 * 1024 * 1024, gt=0)


class CacheSettings(Strict):
    """Cache defaults for a key or model; unset fields fall through to the global ones."""

    enabled: bool | None = None
    ttl: float | None = Field(default=None, gt=0)
    by_customer: bool | None = None
    by_model: bool | None = None


class CacheConfig(Strict):
    """The response cache: off unless enabled here, per key or model, or per request (cache_enabled)."""

    enabled: bool = False
    ttl: float = Field(default=300.0, gt=0)  # seconds, when the request gives no cache_ttl
    by_customer: bool = False  # cache_options.cache_by_customer: one customer's entries never serve another
    by_model: bool = True  # cache_options.is_cached_by_model: false shares answers across models
    max_bytes: int = Field(default=64 * 1024 * 1024, gt=0)  # in memory; least recently used go first
    max_entry_bytes: int = Field(default=4 * 1024 * 1024, gt=0)
    persist: bool = False  # also keep entries in the SQLite store, so they survive a restart
    # Sampled answers (temperature > 0, or n > 1) differ call to call; cached only if this is set.
    store_sampled: bool = False
    # How long an identical request waits for the one already in flight before going upstream itself.
    wait_for_identical: float = Field(default=60.0, ge=0)
    keys: dict[str, CacheSettings] = {}  # by gateway key id
    models: dict[str, CacheSettings] = {}  # by model name or router alias, as the request names it


class TapgateConfig(Strict):
    custom_hosts: list[CustomHost] = []
    # Keys as in providers/prices.json: "gpt-4o", "gemini/gemini-2.5-flash", "ollama/llama3".
    prices: dict[str, ModelPrice] = {}
    # Traffic that carries no gateway key: allowed (and recorded) unless this is set.
    require_key: bool = False
    # Budget periods start at midnight in this zone (day; Monday for week; the 1st for month).
    timezone: str = "UTC"
    # Output tokens assumed when a request sets no max_tokens, to reserve its worst case.
    default_max_tokens: int = Field(default=4096, gt=0)
    # Across all traffic.
    budgets: list[Budget] = []
    # Per customer_identifier: named customers, and the policy every other customer gets.
    customers: dict[str, Policy] = {}
    customer_default: Policy = Policy()
    # Budgets a request declares for its customer (X-Tapgate-Params customer_params) come from the
    # caller itself, which can raise or drop them on its next call: they add a cap, never replace the
    # ones above. "all" honours them from any caller, "none" ignores them, and a list honours them only
    # on calls made with these gateway keys (ids or names).
    customer_params_budgets: Literal["all", "none"] | list[str] = "all"
    alerts: Alerts = Alerts()
    router: RouterConfig = RouterConfig()
    cache: CacheConfig = CacheConfig()


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
        where = ".".join(str(p) for p in err["loc"])
        raise ConfigError(f"{path}:{_line_of(data, err['loc'])}: {where}: {err['msg']}") from None


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
