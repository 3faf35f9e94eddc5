"""Prompt templates (core/prompts.py) and `tapgate prompts`: versions, labels, rendering a router body."""

from __future__ import annotations

import json

import pytest

from cli.main import main
from core.prompts import PromptBook, PromptError, Template

GREET = Template("greet", 1, [{"role": "system", "content": "You are {{persona}}."},
                              {"role": "user", "content": "Say hi to {{ name }}."}], "gpt-4o-mini",
                 {"temperature": 0.2})
GREET2 = Template("greet", 2, [{"role": "user", "content": "Hello {{name}}!"}], "gpt-4o", {})


def book(**labels) -> PromptBook:
    return PromptBook({("greet", 1): GREET, ("greet", 2): GREET2}, {("greet", k): v for k, v in labels.items()})


def test_render_fills_variables_and_fills_in_model_and_parameters():
    body, t = book().render({"prompt": {"prompt_id": "greet", "version": 1,
                                        "variables": {"persona": "a pirate", "name": "Ann"}},
                             "messages": [{"role": "user", "content": "and me"}], "temperature": 0.9})
    assert t.version == 1 and "prompt" not in body
    assert body["messages"] == [{"role": "system", "content": "You are a pirate."},
                                {"role": "user", "content": "Say hi to Ann."}, {"role": "user", "content": "and me"}]
    assert (body["model"], body["temperature"]) == ("gpt-4o-mini", 0.9)  # the request's own wins...
    body, _ = book().render({"prompt": {"prompt_id": "greet", "version": "1", "override": True,
                                        "variables": {"persona": "p", "name": "n"}}, "temperature": 0.9})
    assert body["temperature"] == 0.2  # ...unless override


def test_versions_by_label_production_or_newest():
    assert book().resolve("greet").version == 2
    assert book(production=1).resolve("greet").version == 1
    assert book(staging=2).resolve("greet", "staging").version == 2
    with pytest.raises(PromptError, match="no label 'beta'"):
        book().resolve("greet", "beta")
    with pytest.raises(PromptError, match="no prompt 'nope'"):
        book().resolve("nope")


def test_a_missing_variable_names_it():
    with pytest.raises(PromptError) as e:
        book().render({"prompt": {"prompt_id": "greet", "version": 1, "variables": {"persona": "x"}}})
    assert "'name'" in str(e.value) and e.value.param == "prompt.variables.name"


def test_prompts_commands(tmp_path, capsys):
    db = str(tmp_path / "t.db")
    one, two = tmp_path / "one.yaml", tmp_path / "two.json"
    one.write_text("model: gpt-4o-mini\nmessages:\n  - {role: user, content: 'Hi {{name}}'}\n")
    two.write_text(json.dumps({"model": "gpt-4o", "messages": [{"role": "user", "content": "Hello {{name}}"}],
                               "parameters": {"temperature": 0}}))
    for f, v in ((one, 1), (two, 2)):
        assert main(["prompts", "push", "greet", str(f), "--db", db]) == 0
        assert f"version {v}" in capsys.readouterr().out
    assert main(["prompts", "label", "greet", "1", "production", "--db", db]) == 0
    capsys.readouterr()
    assert main(["prompts", "list", "--json", "--db", db]) == 0
    listed = json.loads(capsys.readouterr().out)
    assert (listed["latest"], listed["versions"], listed["labels"]) == (2, 2, ["production=1"])
    assert main(["prompts", "show", "greet", "production", "--db", db]) == 0
    assert "variables: name" in capsys.readouterr().out
    assert main(["prompts", "diff", "greet", "1", "2", "--db", db]) == 0
    out = capsys.readouterr().out
    assert '-  "model": "gpt-4o-mini"' in out and '+  "model": "gpt-4o"' in out
    bad = tmp_path / "bad.yaml"
    bad.write_text("messages: []\n")
    assert main(["prompts", "push", "greet", str(bad), "--db", db]) == 1
    assert "non-empty list" in capsys.readouterr().err
    assert main(["prompts", "label", "greet", "9", "production", "--db", db]) == 1
