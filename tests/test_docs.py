"""Docs under test: the README's commands are what CI runs, and every option and command is in it."""

import re

from mitmproxy.test import taddons
from support import ROOT

from addons import gateway
from addons.config import load_config
from cli.main import parser

README = (ROOT / "README.md").read_text()
OFFLINE = (ROOT / "docs" / "try-offline.md").read_text()


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


def test_the_offline_recipe_sends_every_provider_it_calls_to_the_mock(tmp_path):
    config = tmp_path / "tapgate.yaml"
    config.write_text(re.search(r"tapgate\.yaml <<'EOF'\n(.+?)\nEOF\n", OFFLINE, re.S).group(1))
    providers = load_config(config).router.providers
    assert {name: p.base_url for name, p in providers.items()} == {
        "openai": "http://127.0.0.1:8765/v1", "anthropic": "http://127.0.0.1:8765", "gemini": "http://127.0.0.1:8765",
    }
    assert "mock_provider.py --port 8765" in OFFLINE
    pattern, target = re.search(r"--map-remote '@(.+?)@(.+?)'", OFFLINE).groups()
    assert target == "http://127.0.0.1:8765"
    for host in ("api.openai.com", "api.anthropic.com", "generativelanguage.googleapis.com"):
        assert re.match(pattern, f"https://{host}/v1/x") and re.match(pattern, f"https://{host}:443/v1/x")
    assert not re.match(pattern, "https://pypi.org/simple/")
    assert "connection_strategy=lazy" in OFFLINE


def test_the_readme_links_the_offline_recipe():
    assert "](docs/try-offline.md)" in README
