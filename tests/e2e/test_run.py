"""`tapgate run -- COMMAND`: the program's calls go through the gateway with no setup of its own,
tagged with its name, working directory, git repository and branch, attributed to a client by their
User-Agent, and grouped by those in `tapgate spend`."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from services import require

TAPGATE = str(Path(sys.executable).parent / "tapgate")
OPENAI_CALL = """
import openai
openai.OpenAI(api_key="sk-run-test", max_retries=0).chat.completions.create(
    model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}],
    extra_headers={"x-tapgate-customer-identifier": %r})
"""
PROXY_VARS = {"HTTPS_PROXY", "HTTP_PROXY", "NO_PROXY", "SSL_CERT_FILE", "REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE",
              "NODE_EXTRA_CA_CERTS", "NODE_OPTIONS", "NODE_USE_ENV_PROXY", "JAVA_TOOL_OPTIONS"}


@pytest.fixture
def repo(tmp_path) -> Path:
    """A git checkout on a feature branch whose origin URL holds a token (never to be stored)."""
    path = tmp_path / "proj"
    path.mkdir()
    for args in (["init", "-q", "-b", "feature-x"], ["remote", "add", "origin", "https://me:tok-secret@example.org/me/proj.git"]):
        subprocess.run(["git", *args], cwd=path, check=True, capture_output=True)
    return path


def run(gateway, tmp_path, cwd: Path, *command: str, key: str | None = None) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k.upper() not in PROXY_VARS}  # nothing set for the shell
    flags = ["--proxy", gateway.proxy, "--confdir", str(gateway.ca.parent), "--bundle", str(tmp_path / "b.pem"),
             "--no-java", *(["--key", key] if key else [])]
    return subprocess.run([TAPGATE, "run", *flags, "--", *command], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=120)


def test_a_python_program_is_tagged_and_attributed(gateway, tmp_path, repo, customer):
    done = run(gateway, tmp_path, repo, sys.executable, "-c", OPENAI_CALL % customer)
    assert done.returncode == 0, done.stderr
    row = gateway.rows(customer)[0]
    assert row["client"] == "OpenAI Python SDK"
    assert (row["program"], row["cwd"], row["branch"]) == (Path(sys.executable).name, str(repo), "feature-x")
    assert row["repo"] == "https://example.org/me/proj.git"  # the remote's token is not kept
    assert row["key_id"] is not None and row["input_tokens"] > 0 and row["cost_usd"] > 0
    spend = subprocess.run([TAPGATE, "spend", "--db", str(gateway.db), "--by", "repo", "--json"],
                           capture_output=True, text=True, check=True).stdout
    assert "https://example.org/me/proj.git" in [r["repo"] for r in map(json.loads, spend.splitlines())]
    spend = subprocess.run([TAPGATE, "spend", "--db", str(gateway.db), "--by", "client", "--json"],
                           capture_output=True, text=True, check=True).stdout
    assert "OpenAI Python SDK" in [r["client"] for r in map(json.loads, spend.splitlines())]


def test_curl_outside_a_repository(gateway, tmp_path, customer):
    curl = require("curl", "apt-get install curl")
    done = run(gateway, tmp_path, tmp_path, curl, "-sS", "-f", "https://api.openai.com/v1/chat/completions",
               "-H", "authorization: Bearer sk-curl-run", "-H", "content-type: application/json",
               "-H", f"x-tapgate-customer-identifier: {customer}",
               "-d", '{"model":"gpt-4o-mini","messages":[{"role":"user","content":"hi"}]}')
    assert done.returncode == 0, done.stderr
    row = gateway.rows(customer)[0]
    assert (row["client"], row["program"], row["cwd"], row["repo"], row["branch"]) == ("curl", "curl", str(tmp_path),
                                                                                      None, None)


def test_the_key_goes_to_the_gateway_key_check(gateway, tmp_path, repo):
    """The tags ride in the proxy user name and the key in its password: an unknown key is refused by
    Auth as any proxy credential is (407), so the key reached it."""
    curl = require("curl", "apt-get install curl")
    done = run(gateway, tmp_path, repo, curl, "-sS", "-o", "/dev/null", "-w", "%{http_code}",
               "https://api.openai.com/v1/models", key="tg-not-a-key")
    assert done.stdout.strip() in ("407", "000") and "407" in done.stdout + done.stderr


def test_exit_status_and_a_missing_program(gateway, tmp_path):
    assert run(gateway, tmp_path, tmp_path, sys.executable, "-c", "raise SystemExit(7)").returncode == 7
    missing = run(gateway, tmp_path, tmp_path, "no-such-program-tapgate")
    assert missing.returncode == 127 and "cannot start no-such-program-tapgate" in missing.stderr
    assert run(gateway, tmp_path, tmp_path).returncode == 2
