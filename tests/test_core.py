"""core/ is the call logic both doors share: it loads without mitmproxy or aiohttp's server, and it
never reaches back into a door (addons/) or the CLI (issue 12, "A core without mitmproxy")."""

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
CORE = sorted((ROOT / "core").rglob("*.py"))
MODULES = [".".join(p.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__") for p in CORE]


def test_importing_every_core_module_loads_neither_mitmproxy_nor_aiohttps_server():
    """In a fresh interpreter, so that nothing else imported them first."""
    probe = (f"import importlib, json, sys\nfor m in {MODULES!r}: importlib.import_module(m)\n"
             "print(json.dumps(sorted(m for m in sys.modules if m.split('.')[0] in {'mitmproxy', 'addons', 'cli'}"
             " or m == 'aiohttp.web' or m.startswith('aiohttp.web_'))))")
    done = subprocess.run([sys.executable, "-c", probe], cwd=ROOT, capture_output=True, text=True, check=True)
    assert json.loads(done.stdout) == []
    assert len(MODULES) > 20  # the probe imported the whole package, not an empty list


def _imports(path: Path) -> list[str]:
    tree = ast.parse(path.read_text())
    names = [n.module or "" for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.level == 0]
    return names + [a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names]


@pytest.mark.parametrize("path", CORE, ids=lambda p: str(p.relative_to(ROOT / "core")))
def test_a_core_module_imports_no_door_and_no_cli(path):
    """Also under TYPE_CHECKING: the core names what it needs from a door as a Protocol of its own."""
    assert [m for m in _imports(path) if m.split(".")[0] in {"addons", "cli", "mitmproxy"}] == []


def test_the_pipeline_runs_its_stages_in_the_documented_order():
    """The order core/pipeline.py's docstring and CONTRIBUTING.md give, for both doors' pipelines."""
    from core.pipeline import Stages

    class Named:
        def __init__(self, name):
            self.name = name

    names = ["identify", "tag", "admit", "input_policies", "cache", "output_policies", "record"]
    stages = Stages(*(Named(n) for n in names))
    assert stages.pipeline(Named("send")).names == [*names[:5], "send", *names[5:]]
