"""What every config model shares (the gateway's, the evaluators', the policies'): an unknown field
is an error, attribute docstrings are the field descriptions (scripts/make_docs.py writes the config
reference from them), and a regular expression is compiled when the file is read, not at the first
call that needs it."""

from __future__ import annotations

import re
from typing import Annotated

from pydantic import AfterValidator, BaseModel, ConfigDict


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", use_attribute_docstrings=True)


def compiles(value: str) -> str:
    try:
        re.compile(value)
    except re.error as e:
        raise ValueError(f"not a valid regular expression: {e}") from None
    return value


Regex = Annotated[str, AfterValidator(compiles)]
