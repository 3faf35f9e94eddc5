"""The `policies:` block: defaults off, errors that name file, line and field, the documented example."""

import re
from pathlib import Path

import pytest

from core.config import ConfigError, load_config

EXAMPLE = Path(__file__).parent.parent / "docs" / "policies.md"

ERRORS = [
    ("policies:\n  - name: p\n    detectors: [secrets]\n    action: burn\n",
     r"tapgate\.yaml:4: policies\.0\.action: Input should be 'block', 'redact' or 'flag'"),
    ("policies:\n  - name: p\n    detectors: [dna]\n", r"tapgate\.yaml:3: policies\.0\.detectors\.0: Input should be"),
    ("policies:\n  - name: p\n    patterns:\n      - {type: ID, regex: '(unclosed'}\n",
     r"tapgate\.yaml:4: policies\.0\.patterns\.0\.regex: Value error, not a valid regular expression"),
    ("policies:\n  - name: p\n    callable: nowhere.at_all:find\n",
     r"tapgate\.yaml:3: policies\.0\.callable: Value error, cannot load 'nowhere\.at_all:find'"),
    ("policies:\n  - name: p\n    detectors: [pii]\n    restore: true\n",
     r"tapgate\.yaml:2: policies\.0: Value error, restore needs action: redact"),
    ("policies:\n  - name: p\n    action: block\n", r"tapgate\.yaml:2: policies\.0: Value error, a policy needs"),
    ("policies:\n  - name: p\n    detectors: [pii]\n    over_limit: explode\n", r"tapgate\.yaml:4: policies\.0\.over_limit"),
    ("policies:\n  - name: p\n    detectors: [pii]\n    scope:\n      modes: [tunnel]\n",
     r"tapgate\.yaml:5: policies\.0\.scope\.modes\.0"),
    ("policies:\n  - {name: p, detectors: [pii]}\n  - {name: p, detectors: [secrets]}\n",
     r"tapgate\.yaml:1: policies: Value error, policy names must be unique: p"),
]


def test_none_by_default():
    assert load_config("").policies == []


@pytest.mark.parametrize("text, error", ERRORS)
def test_errors_name_file_line_and_field(tmp_path, text, error):
    path = tmp_path / "tapgate.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=error):
        load_config(path)


def test_the_documented_example_loads(tmp_path):
    [block] = re.findall(r"```yaml\n(policies:.*?)```", EXAMPLE.read_text(encoding="utf-8"), re.S)
    path = tmp_path / "tapgate.yaml"
    path.write_text(block)
    config = load_config(path)
    assert {p.action for p in config.policies} == {"block", "redact", "flag"}
