"""What `tapgate prompts` does to the store: push a version, list, show, diff two versions, label one."""

from __future__ import annotations

import difflib
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlite_utils import Database

from core.database import StoreError
from core.prompts import PromptError, Template, parse_template, template_of


def now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def read_file(path: str) -> dict[str, Any]:
    """A prompt file: YAML (JSON is YAML too), checked."""
    from ruamel.yaml import YAML

    try:
        text = Path(path).expanduser().read_text(encoding="utf-8")
        doc = YAML(typ="safe").load(text)
    except OSError as e:
        raise StoreError(f"cannot read {path}: {e.strerror}") from None
    except Exception as e:
        raise StoreError(f"{path}: not valid YAML or JSON: {e}") from None
    try:
        return parse_template(doc, path)
    except PromptError as e:
        raise StoreError(str(e)) from None


def push(db: Database, name: str, doc: dict[str, Any]) -> int:
    """A new version of `name` (1 for a new prompt); returns its number."""
    version = (db.execute("SELECT max(version) FROM prompts WHERE name = ?", [name]).fetchone()[0] or 0) + 1
    db["prompts"].insert({"id": f"{name}:{version}", "name": name, "version": version,
                          "messages": json.dumps(doc["messages"], ensure_ascii=False), "model": doc["model"],
                          "parameters": json.dumps(doc["parameters"], ensure_ascii=False), "created_at": now()})
    return version


def listing(db: Database) -> list[dict[str, Any]]:
    """Each prompt: its newest version, how many, and its labels."""
    labels: dict[str, list[str]] = {}
    for r in db.query("SELECT name, label, version FROM prompt_labels ORDER BY label"):
        labels.setdefault(r["name"], []).append(f"{r['label']}={r['version']}")
    return [{**r, "labels": labels.get(r["name"], [])} for r in db.query(
        "SELECT name, max(version) AS latest, count(*) AS versions, max(created_at) AS updated_at"
        " FROM prompts GROUP BY name ORDER BY name")]


def get(db: Database, name: str, version: str | None) -> Template:
    """A version by number or label; the newest when None."""
    if version is None:
        row = db.execute("SELECT max(version) FROM prompts WHERE name = ?", [name]).fetchone()
        number = row[0]
    elif version.isdigit():
        number = int(version)
    else:
        found = db.execute("SELECT version FROM prompt_labels WHERE name = ? AND label = ?", [name, version]).fetchone()
        if found is None:
            raise StoreError(f"prompt {name!r} has no label {version!r}")
        number = found[0]
    rows = list(db["prompts"].rows_where("name = ? AND version = ?", [name, number]))
    if not rows:
        raise StoreError(f"no prompt {name!r}" + (f" version {version}" if version else ""))
    return template_of(rows[0])


def as_text(t: Template) -> str:
    """A version as the YAML-like text `show` prints and `diff` compares."""
    doc = {"model": t.model, "parameters": t.parameters, "messages": t.messages}
    return json.dumps(doc, indent=2, ensure_ascii=False) + "\n"


def diff(db: Database, name: str, a: str, b: str) -> str:
    ta, tb = get(db, name, a), get(db, name, b)
    return "".join(difflib.unified_diff(as_text(ta).splitlines(True), as_text(tb).splitlines(True),
                                        f"{name}@{ta.version}", f"{name}@{tb.version}"))


def label(db: Database, name: str, version: int, label_name: str) -> None:
    if not db.execute("SELECT 1 FROM prompts WHERE name = ? AND version = ?", [name, version]).fetchone():
        raise StoreError(f"no prompt {name!r} version {version}")
    db["prompt_labels"].insert({"id": f"{name}:{label_name}", "name": name, "label": label_name,
                                "version": version, "updated_at": now()}, replace=True)
