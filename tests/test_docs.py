"""Docs under test: the README's commands are what CI runs, and every option and command is in it."""

import re

from mitmproxy.test import taddons
from support import ROOT

from addons import gateway
from addons.cli import parser

README = (ROOT / "README.md").read_text()


def readme_commands(heading: str) -> str:
    section = README.split(f"## {heading}\n", 1)[1]
    return re.search(r"```sh\n(.+?)\n```", section, re.S).group(1)


def test_ci_runs_the_readmes_test_command():
    command = readme_commands("Install and test")
    assert command in (ROOT / ".ci" / "run").read_text()
    assert "pytest" in command and "[test]" in command


def test_the_run_command_loads_the_gateway():
    assert "mitmdump -s addons/gateway.py" in readme_commands("Install and run")


def test_every_option_is_documented():
    with taddons.context(*gateway.addons) as tctx:
        options = [name for name in tctx.options.keys() if name.startswith("tapgate_")]
    assert len(options) >= 5
    missing = [name for name in options if f"`{name}`" not in README]
    assert not missing, f"options missing from README: {missing}"


def test_every_cli_command_and_flag_is_documented():
    sub = next(a for a in parser()._actions if a.dest == "command")
    for name, command in sub.choices.items():
        assert f"tapgate {name}" in README
        for action in command._actions:
            for flag in action.option_strings:
                assert flag in ("-h", "--help") or f"`{flag}" in README, f"{name} {flag} missing from README"
