"""The coding agents from npm, Claude Code and Codex CLI, run through `tapgate run` against the mock
provider: their calls recorded with tokens and cost, attributed to the agent; a Claude Code signed in
with a subscription login recorded with a shadow cost instead, its login token never stored."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from harness import ROOT, store_files
from services import require

CACHE = ROOT / "tests" / ".cache" / "agents"  # ignored by git; npm installs the agents here once
AGENTS = {"claude": "@anthropic-ai/claude-code", "codex": "@openai/codex"}
TAPGATE = str(Path(sys.executable).parent / "tapgate")
QUIET = {"DISABLE_TELEMETRY": "1", "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1", "DISABLE_AUTOUPDATER": "1",
         "DISABLE_ERROR_REPORTING": "1"}
CREDENTIALS = {"ANTHROPIC_API_KEY", "CLAUDE_CODE_OAUTH_TOKEN", "OPENAI_API_KEY", "ANTHROPIC_BASE_URL",
               "OPENAI_BASE_URL", "HTTPS_PROXY", "HTTP_PROXY", "NO_PROXY", "SSL_CERT_FILE", "NODE_OPTIONS",
               "NODE_EXTRA_CA_CERTS", "REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE", "JAVA_TOOL_OPTIONS"}


@pytest.fixture(scope="module")
def agents() -> Path:
    npm = require("npm", "apt-get install npm: the coding agents are installed from npm")
    if not all((CACHE / "node_modules" / ".bin" / name).exists() for name in AGENTS):
        CACHE.mkdir(parents=True, exist_ok=True)
        done = subprocess.run([npm, "install", "--no-audit", "--no-fund", "--prefix", str(CACHE), *AGENTS.values()],
                              capture_output=True, text=True, timeout=900)
        assert done.returncode == 0, f"npm install failed:\n{done.stdout}\n{done.stderr}"
    return CACHE / "node_modules" / ".bin"


def run_agent(gateway, tmp_path: Path, command: list[str], **env: str) -> subprocess.CompletedProcess:
    """The agent under `tapgate run`, in a fresh home (no login or settings of the developer's)."""
    home = tmp_path / "home"
    home.mkdir(exist_ok=True)
    base = {k: v for k, v in os.environ.items() if k.upper() not in CREDENTIALS}
    flags = ["--proxy", gateway.proxy, "--confdir", str(gateway.ca.parent), "--bundle", str(tmp_path / "b.pem"),
             "--no-java"]
    return subprocess.run([TAPGATE, "run", *flags, "--", *command], cwd=tmp_path, capture_output=True, text=True,
                          env={**base, **QUIET, "HOME": str(home), **env}, timeout=300)


def calls(gateway, program: str, cwd: Path) -> list[dict]:
    from harness import wait_rows

    return wait_rows(gateway.db, "SELECT * FROM requests WHERE program = ? AND cwd = ?", (program, str(cwd)))


def test_claude_code_with_an_api_key(gateway, agents, tmp_path):
    done = run_agent(gateway, tmp_path, [str(agents / "claude"), "-p", "say hi"], ANTHROPIC_API_KEY="sk-ant-api03-mock")
    assert done.returncode == 0, done.stdout + done.stderr
    rows = calls(gateway, "claude", tmp_path)
    assert {r["client"] for r in rows} == {"Claude Code"} and {r["provider"] for r in rows} == {"anthropic"}
    for row in rows:
        assert row["status"] == "ok" and row["input_tokens"] > 0 and row["output_tokens"] > 0
        assert row["cost_usd"] > 0 and row["shadow_cost_usd"] is None


def test_claude_code_on_a_subscription_login(gateway, agents, tmp_path):
    token = "sk-ant-oat01-" + os.urandom(24).hex()
    done = run_agent(gateway, tmp_path, [str(agents / "claude"), "-p", "say hi"], CLAUDE_CODE_OAUTH_TOKEN=token)
    assert done.returncode == 0, done.stdout + done.stderr
    rows = calls(gateway, "claude", tmp_path)
    for row in rows:
        assert row["client"] == "Claude Code" and row["input_tokens"] > 0
        assert row["cost_usd"] is None and row["shadow_cost_usd"] > 0  # not billed per token: a shadow cost
    for path in store_files(gateway.db):  # the login token is in no file of the store
        assert token.encode() not in path.read_bytes(), path
        assert token[12:40].encode() not in path.read_bytes(), path


def test_codex_cli_with_an_api_key(gateway, agents, tmp_path):
    done = run_agent(gateway, tmp_path, [str(agents / "codex"), "exec", "--skip-git-repo-check", "say hi"],
                     OPENAI_API_KEY="sk-codex-mock")
    assert done.returncode == 0, done.stdout + done.stderr
    rows = [r for r in calls(gateway, "codex", tmp_path) if r["status"] == "ok"]
    assert rows, "no Codex call recorded"
    for row in rows:
        assert row["client"] == "Codex CLI" and row["endpoint"] == "responses"
        assert row["input_tokens"] > 0 and row["cost_usd"] > 0
