"""Versioned prompt templates: messages with `{{variable}}` placeholders, a model and parameters. Kept in
the store (`tapgate prompts push`), read by a thread into a PromptBook, so rendering a router request's
Respan `prompt` field on the hot path is a dict lookup, never a query."""

from __future__ import annotations

import json
import logging
import re
from dataclasses import dataclass, field
from typing import Any

from core import database
from core.following import StoreFollower

log = logging.getLogger(__name__)

PLACEHOLDER = re.compile(r"\{\{\s*([A-Za-z_][\w.-]*)\s*\}\}")
REFRESH_SECONDS = 2.0
DEFAULT_LABEL = "production"


class PromptError(ValueError):
    """A prompt that cannot be pushed or rendered; `param` names the request field at fault."""

    def __init__(self, message: str, param: str | None = None) -> None:
        super().__init__(message)
        self.param = param


@dataclass(frozen=True)
class Template:
    name: str
    version: int
    messages: list[dict[str, Any]]
    model: str | None = None
    parameters: dict[str, Any] = field(default_factory=dict)

    def variables(self) -> list[str]:
        return list(dict.fromkeys(PLACEHOLDER.findall(json.dumps(self.messages))))


def parse_template(doc: Any, source: str) -> dict[str, Any]:
    """A pushed file's document checked: {messages: [{role, content}], model?, parameters?}."""
    if not isinstance(doc, dict):
        raise PromptError(f"{source}: a prompt is a mapping with messages, model and parameters")
    unknown = set(doc) - {"messages", "model", "parameters"}
    if unknown:
        raise PromptError(f"{source}: unknown field {sorted(unknown)[0]!r} (messages, model, parameters)")
    messages = doc.get("messages")
    if not isinstance(messages, list) or not messages:
        raise PromptError(f"{source}: messages must be a non-empty list")
    for i, m in enumerate(messages):
        if not isinstance(m, dict) or not isinstance(m.get("role"), str) or "content" not in m:
            raise PromptError(f"{source}: messages[{i}] needs a role and content")
    if doc.get("model") is not None and not isinstance(doc["model"], str):
        raise PromptError(f"{source}: model must be a string")
    if not isinstance(doc.get("parameters", {}), dict):
        raise PromptError(f"{source}: parameters must be a mapping")
    return {"messages": messages, "model": doc.get("model"), "parameters": doc.get("parameters") or {}}


def fill(value: Any, variables: dict[str, Any]) -> Any:
    """`{{name}}` replaced in every string of value. Raises PromptError naming the first missing one."""
    if isinstance(value, str):
        def one(m: re.Match) -> str:
            if m.group(1) not in variables:
                raise PromptError(f"the prompt needs variable {m.group(1)!r}, which prompt.variables does not give",
                                  f"prompt.variables.{m.group(1)}")
            v = variables[m.group(1)]
            return v if isinstance(v, str) else json.dumps(v, ensure_ascii=False)
        return PLACEHOLDER.sub(one, value)
    if isinstance(value, list):
        return [fill(v, variables) for v in value]
    if isinstance(value, dict):
        return {k: fill(v, variables) for k, v in value.items()}
    return value


class PromptBook(StoreFollower):
    """Every prompt version and label, swapped whole on reload, so any thread may read it."""

    what = "prompts"

    def __init__(self, templates: dict[tuple[str, int], Template] | None = None,
                 labels: dict[tuple[str, str], int] | None = None) -> None:
        super().__init__()
        self.refresh = REFRESH_SECONDS
        self.templates = templates or {}
        self.labels = labels or {}

    def resolve(self, name: str, version: Any = None) -> Template:
        """A version by number, by label, or else the `production` label, else the newest."""
        if version is None:
            version = self.labels.get((name, DEFAULT_LABEL)) or max(
                (v for n, v in self.templates if n == name), default=None)
        elif isinstance(version, str) and not version.isdigit():
            label = version
            if (version := self.labels.get((name, label))) is None:
                raise PromptError(f"prompt {name!r} has no label {label!r}", "prompt.version")
        if version is None or (template := self.templates.get((name, int(version)))) is None:
            raise PromptError(f"no prompt {name!r}" + (f" version {version}" if version is not None else "")
                              + " in the store (tapgate prompts push)", "prompt.prompt_id")
        return template

    def render(self, body: dict[str, Any]) -> tuple[dict[str, Any], Template]:
        """Respan's `prompt` field taken out of a router body and rendered into it: the template's messages
        first, then the body's own; its model and parameters fill what the body leaves out (all of them
        with `override: true`). Raises PromptError naming the field."""
        spec = body.pop("prompt")
        if not isinstance(spec, dict) or not isinstance(spec.get("prompt_id"), str):
            raise PromptError("prompt must be an object with a prompt_id", "prompt.prompt_id")
        variables = spec.get("variables") or {}
        if not isinstance(variables, dict):
            raise PromptError("prompt.variables must be an object", "prompt.variables")
        template = self.resolve(spec["prompt_id"], spec.get("version", spec.get("label")))
        settings = {**template.parameters, **({"model": template.model} if template.model else {})}
        own = body.get("messages") if isinstance(body.get("messages"), list) else []
        # An empty model or message list (the SDKs require the fields) leaves them to the template.
        body = {k: v for k, v in body.items() if v or k not in ("model", "messages")}
        out = {**settings, **body} if not spec.get("override") else {**body, **settings}
        out["messages"] = fill(template.messages, variables) + own
        return out, template

    # -- following the store ----------------------------------------------------------------------

    def reload(self) -> None:
        """Re-read when a version was pushed or a label moved (one small query otherwise)."""
        with self.connection() as conn:
            if not database.has_table(conn, "prompt_labels"):
                return  # a store from before the prompts migration (or a new PostgreSQL one)
            version = conn.execute(
                "SELECT (SELECT count(*) || coalesce(max(created_at), '') FROM prompts) || '/' || "
                "(SELECT coalesce(group_concat(id || version), '') FROM prompt_labels)").fetchone()[0]
            if version == self._version:
                return
            rows = [dict(r) for r in conn.execute("SELECT * FROM prompts")]
            labels = {(r["name"], r["label"]): r["version"] for r in conn.execute("SELECT * FROM prompt_labels")}
        self.templates = {(r["name"], r["version"]): template_of(r) for r in rows}
        self.labels, self._version = labels, version



def template_of(row: dict[str, Any]) -> Template:
    return Template(row["name"], row["version"], json.loads(row["messages"]), row["model"],
                    json.loads(row["parameters"] or "{}"))
