"""The gateway's config file: pydantic models with defaults that run with no file, and a loader
whose errors name the file, line and field."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError


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


class TapgateConfig(Strict):
    custom_hosts: list[CustomHost] = []
    # Keys as in providers/prices.json: "gpt-4o", "gemini/gemini-2.5-flash", "ollama/llama3".
    prices: dict[str, ModelPrice] = {}


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
