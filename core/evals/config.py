"""The `evals` block of the config file: named evaluators, which calls are scored online, and what the
LLM judge may spend. Kept apart from core/config.py, which only appends the block."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, model_validator

from core.config_base import Regex, Strict


class RegexEval(Strict):
    """Whether the answer (or the question) matches a regular expression."""

    kind: Literal["regex"]
    """`regex`."""
    pattern: Regex
    """A Python regular expression, searched anywhere in the text."""
    on: Literal["answer", "question"] = "answer"
    """Which text is searched."""


class ContainsEval(Strict):
    """Whether the answer contains a text (or, with `negate`, does not)."""

    kind: Literal["contains"]
    """`contains`."""
    text: str = Field(min_length=1)
    """The text looked for."""
    negate: bool = False
    """Pass when the text is absent."""
    case_sensitive: bool = False
    """Compare case."""


class JsonEval(Strict):
    """Whether the answer is valid JSON, and with `json_schema`, valid against that schema."""

    kind: Literal["valid_json", "json_schema"]
    """`valid_json`, or `json_schema` (then `json_schema` is required)."""
    json_schema: dict | None = None
    """A JSON Schema the answer must satisfy (any draft `jsonschema` knows)."""

    @model_validator(mode="after")
    def _schema(self) -> JsonEval:
        if self.kind == "json_schema":
            if self.json_schema is None:
                raise ValueError("json_schema is required for kind json_schema")
            from jsonschema import SchemaError, validators

            try:
                validators.validator_for(self.json_schema).check_schema(self.json_schema)
            except SchemaError as e:
                raise ValueError(f"not a valid JSON Schema: {e.message}") from None
        return self


class LengthEval(Strict):
    """Whether the answer's length lies within bounds."""

    kind: Literal["length"]
    """`length`."""
    min: int | None = Field(default=None, ge=0)
    """Fewest characters (or words)."""
    max: int | None = Field(default=None, ge=0)
    """Most characters (or words)."""
    unit: Literal["chars", "words"] = "chars"
    """What is counted."""


class ThresholdEval(Strict):
    """Whether the call's latency (ms) or cost (USD) stays at or under a limit."""

    kind: Literal["latency", "cost"]
    """`latency` (the call's duration) or `cost`."""
    max: float = Field(ge=0)
    """The limit: milliseconds for latency, USD for cost."""


class ToolCallEval(Strict):
    """Whether the answer called a tool (any, or the one named), or with `made: false` did not."""

    kind: Literal["tool_call"]
    """`tool_call`."""
    made: bool = True
    """Pass when a call was made (false: when none was)."""
    name: str | None = None
    """Only a call of this tool counts."""


class ReferenceEval(Strict):
    """For dataset rows with an expected answer: exact match, or normalised text similarity (0 to 1)."""

    kind: Literal["exact", "similarity"]
    """`exact` (after normalising case and spaces) or `similarity` (difflib's ratio of the normalised texts)."""
    threshold: float | None = Field(default=None, ge=0, le=1)
    """similarity: pass or fail at this ratio instead of giving the ratio."""


class JudgeEval(Strict):
    """An LLM judge: a router model reads the rubric, the question and the answer, and gives a score and a reason."""

    kind: Literal["judge"]
    """`judge`."""
    model: str
    """A model name or alias the router serves; the judge's call goes through the router and is recorded."""
    rubric: str = Field(min_length=1)
    """What makes a good answer; the judge is told to reply with JSON {"score": n, "reason": "..."}."""
    scale: tuple[float, float] = (1, 5)
    """The lowest and highest score."""
    max_tokens: int = Field(default=200, gt=0)
    """Most tokens of the judge's reply."""


class PythonEval(Strict):
    """A function of yours, `package.module:function`, given the call (core.evals.subject.Subject)."""

    kind: Literal["python"]
    """`python`."""
    function: str = Field(pattern=r"^[A-Za-z_][\w.]*[:.][A-Za-z_]\w*$")
    """Its dotted path: `mypkg.checks:polite` (or `mypkg.checks.polite`); it returns a bool, a number, a label
    (str) or a dict with value, label and reason."""


Evaluator = Annotated[
    RegexEval | ContainsEval | JsonEval | LengthEval | ThresholdEval | ToolCallEval | ReferenceEval | JudgeEval
    | PythonEval,
    Field(discriminator="kind"),
]


class OnlineRule(Strict):
    """Some evaluators, run in the background on a share of the calls that pass the filters."""

    evaluators: list[str] = Field(min_length=1)
    """Names from `evaluators`."""
    rate: float = Field(default=1.0, ge=0, le=1)
    """Share of matching calls scored (exactly this share over a run: every 1/rate-th match)."""
    providers: list[str] = []
    """Only calls to these providers; empty: any."""
    models: list[str] = []
    """Only these models (shell globs, over the model asked for); empty: any."""
    customers: list[str] = []
    """Only these customer identifiers; empty: any."""
    modes: list[str] = []
    """Only `passthrough` or `router` calls; empty: both."""
    metadata: dict[str, str] = {}
    """Only calls whose metadata has these values."""
    only_ok: bool = True
    """Skip calls that failed or were refused."""


class EvalsConfig(Strict):
    """Evaluators, and which live calls they score."""

    evaluators: dict[str, Evaluator] = {}
    """By name: the name is what scores and reports show."""
    online: list[OnlineRule] = []
    """Scoring of live calls, off the hot path."""
    queue_size: int = Field(default=10_000, gt=0)
    """Calls waiting to be scored; past it a call is not scored (counted as dropped in the writer's status)."""
    judge_budget_usd: float | None = Field(default=None, gt=0)
    """USD the online judge may spend per UTC day; past it judge evaluators are skipped. None: no cap."""
    record_streams: bool = False
    """Keep passthrough streams' raw events and their pacing (table `stream_events`), so datasets made from the
    logs replay them event for event (`tapgate replay serve`)."""

    @model_validator(mode="after")
    def _known_names(self) -> EvalsConfig:
        for i, rule in enumerate(self.online):
            for name in rule.evaluators:
                if name not in self.evaluators:
                    raise ValueError(f"online[{i}] names evaluator {name!r}, which `evaluators` does not define")
        return self
