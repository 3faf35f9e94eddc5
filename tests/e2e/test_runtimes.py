"""`tapgate shell-init` proven with the real clients of each runtime, no code change in them: curl, the
official OpenAI and Anthropic Node SDKs (from npm) and bare fetch on the machine's Node, and small programs
on the machine's JDK and Go toolchain. Each call must arrive at the gateway and be recorded with its tokens."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from harness import ROOT
from services import require

CACHE = ROOT / "tests" / ".cache" / "node"  # ignored by git; npm installs the SDKs here once
HERE = Path(__file__).parent / "runtimes"
NODE_PACKAGES = ("openai@6", "@anthropic-ai/sdk")


@pytest.fixture(scope="module")
def node_sdks() -> Path:
    npm = require("npm", "apt-get install npm: the Node SDK tests install the SDKs with it")
    require("node", "apt-get install nodejs")
    if not all((CACHE / "node_modules" / name).is_dir() for name in ("openai", "@anthropic-ai/sdk")):
        CACHE.mkdir(parents=True, exist_ok=True)
        done = subprocess.run([npm, "install", "--no-audit", "--no-fund", "--prefix", str(CACHE), *NODE_PACKAGES],
                              capture_output=True, text=True, timeout=600)
        assert done.returncode == 0, f"npm install failed:\n{done.stdout}\n{done.stderr}"
    shutil.copy(HERE / "sdks.mjs", CACHE / "sdks.mjs")  # ES modules resolve packages beside the script
    return CACHE


@pytest.fixture(scope="module")
def shell_env(gateway, tmp_path_factory) -> dict[str, str]:
    """The environment a shell has after `eval "$(tapgate shell-init)"` (only the lines' own variables)."""
    tmp = tmp_path_factory.mktemp("shell-init")
    out = subprocess.run([str(Path(sys.executable).parent / "tapgate"), "shell-init", "--proxy", gateway.proxy,
                          "--confdir", str(gateway.ca.parent), "--bundle", str(tmp / "bundle.pem"),
                          "--java-store", str(tmp / "java-truststore")], capture_output=True, text=True, check=True,
                         timeout=120).stdout
    clean = {k: v for k, v in os.environ.items() if k.upper() not in {
        "HTTPS_PROXY", "HTTP_PROXY", "NO_PROXY", "SSL_CERT_FILE", "REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE",
        "NODE_EXTRA_CA_CERTS", "NODE_OPTIONS", "NODE_USE_ENV_PROXY", "JAVA_TOOL_OPTIONS"}}
    dump = subprocess.run(["sh", "-c", out + "\nenv -0"], capture_output=True, env=clean, check=True, timeout=10).stdout
    return dict(item.split("=", 1) for item in dump.decode().split("\0") if "=" in item)


def recorded(gateway, customer: str) -> dict:
    row = gateway.rows(customer)[0]
    assert row["status"] == "ok" and row["input_tokens"] > 0 and row["output_tokens"] > 0, row
    return row


def test_curl(gateway, shell_env, customer):
    curl = require("curl", "apt-get install curl")
    done = subprocess.run([curl, "-sS", "-f", "https://api.openai.com/v1/chat/completions", "-H",
                           "authorization: Bearer sk-curl", "-H", "content-type: application/json", "-H",
                           f"x-tapgate-customer-identifier: {customer}",
                           "-d", '{"model":"gpt-4o-mini","messages":[{"role":"user","content":"hi"}]}'],
                          capture_output=True, text=True, env=shell_env, timeout=60)
    assert done.returncode == 0, done.stderr
    assert recorded(gateway, customer)["provider"] == "openai"


def test_node_sdks_and_fetch(gateway, shell_env, node_sdks, customer):
    done = subprocess.run(["node", "sdks.mjs", customer], cwd=node_sdks, capture_output=True, text=True,
                          env=shell_env, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.split() == ["openai", "true", "anthropic", "true", "fetch", "200"]
    assert recorded(gateway, f"{customer}-openai")["provider"] == "openai"
    anthropic = recorded(gateway, f"{customer}-anthropic")
    assert anthropic["provider"] == "anthropic" and anthropic["stream"] == 1
    recorded(gateway, f"{customer}-fetch")


def test_node_without_the_preload_goes_around_the_gateway(shell_env, node_sdks, customer):
    """Why the preload is there: Node 20's fetch ignores HTTPS_PROXY, so the SDK tries the provider
    directly (no network here: it fails to resolve, on a real machine the call would go unrecorded)."""
    env = {k: v for k, v in shell_env.items() if k != "NODE_OPTIONS"}
    major = int(subprocess.run(["node", "-p", "process.versions.node.split('.')[0]"], capture_output=True,
                               text=True, check=True).stdout)
    if major >= 24:
        pytest.skip("this Node reads HTTPS_PROXY itself under NODE_USE_ENV_PROXY")
    done = subprocess.run(["node", "sdks.mjs", customer], cwd=node_sdks, capture_output=True, text=True,
                          env=env, timeout=120)
    assert done.returncode != 0 and "Connection error" in done.stderr


def test_java(gateway, shell_env, customer, tmp_path):
    java = require("java", "apt-get install default-jdk-headless")
    require("keytool", "a JDK: shell-init makes the Java trust store with keytool")
    assert "JAVA_TOOL_OPTIONS" in shell_env
    done = subprocess.run([java, str(HERE / "Call.java"), customer], capture_output=True, text=True,
                          env=shell_env, cwd=tmp_path, timeout=180)
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.split() == ["status", "200", "body"]
    assert recorded(gateway, customer)["provider"] == "openai"


def test_go(gateway, shell_env, customer, tmp_path):
    go = require("go", "apt-get install golang-go")
    # A build cache of the test's own: the machine's may belong to another user or be read-only.
    # GOTOOLCHAIN=local: a newer Go must not try to download another toolchain (no internet).
    env = {**shell_env, "GOCACHE": str(tmp_path / "go-cache"), "GOPATH": str(tmp_path / "go"), "GOTOOLCHAIN": "local"}
    done = subprocess.run([go, "run", str(HERE / "call.go"), customer], capture_output=True, text=True,
                          env=env, cwd=tmp_path, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.split() == ["status", "200", "body", "true"]
    assert recorded(gateway, customer)["provider"] == "openai"
