"""The config file: defaults with no file, and errors that name the file, line and field."""

import pytest
from mitmproxy import exceptions
from mitmproxy.test import taddons

from addons.settings import Settings
from core.config import ConfigError, load_config


def test_no_file_means_defaults():
    assert load_config("").custom_hosts == []


CONFIG_ERRORS = [
    ("custom_hosts:\n  - host: localhost:11434\n    dialect: ollama\n  - host: nope\n",
     r"tapgate\.yaml:4: custom_hosts\.1\.host: String should match"),
    ("prices:\n  my-model:\n    input: 1\n    output: -2\n",
     r"tapgate\.yaml:4: prices\.my-model\.output: Input should be greater than or equal"),
    ("colour: blue\n", r"tapgate\.yaml:1: colour: Extra inputs are not permitted"),
    ("router:\n  models:\n    smart:\n      - {provider: nope, model: x}\n",
     r"tapgate\.yaml:3: router\.models\.smart\.deployments\.0: .*unknown provider 'nope'"),
    ("router:\n  retry:\n    num_retries: -1\n", r"tapgate\.yaml:3: router\.retry\.num_retries"),
    ("cache:\n  ttl: 0\n", r"tapgate\.yaml:2: cache\.ttl"),
]


@pytest.mark.parametrize("text, error", CONFIG_ERRORS)
def test_errors_name_file_line_and_field(tmp_path, text, error):
    path = tmp_path / "tapgate.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=error):
        load_config(path)


def test_settings_builds_the_registry_and_prices(tmp_path):
    path = tmp_path / "tapgate.yaml"
    path.write_text(
        "custom_hosts:\n  - host: localhost:11434\n    name: ollama\n    dialect: ollama\n"
        "prices:\n  llama3.2:\n    input: 0.1\n    output: 0.2\n"
    )
    settings = Settings()
    with taddons.context(settings) as tctx:
        tctx.configure(settings, tapgate_config=str(path))
        route = settings.registry.route("localhost", 11434, "/api/chat")
        assert route.provider.name == "ollama"
        assert settings.prices.price("", "llama3.2").input == 0.1
        with pytest.raises(exceptions.OptionsError, match="cannot read config"):
            tctx.configure(settings, tapgate_config=str(tmp_path / "missing.yaml"))
