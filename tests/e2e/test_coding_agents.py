"""The coding agents from npm, Claude Code and Codex CLI, run through `tapgate run` against the mock
provider: their calls recorded with tokens and cost, attributed to the agent; a Claude Code or a Codex
signed in with a subscription login recorded with a shadow cost instead, its login token never stored."""

from __future__ import annotations

import base64
import datetime
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from harness import ROOT, admin, store_files
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


def jwt(claims: dict) -> str:
    """An unsigned JWT with random bytes for a signature: Codex reads the claims and never verifies it."""
    def part(raw: bytes) -> str:
        return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()
    return ".".join((part(b'{"alg":"RS256","typ":"JWT"}'), part(json.dumps(claims).encode()), part(os.urandom(64))))


def chatgpt_login(codex_home: Path) -> tuple[str, str]:
    """What `codex login` leaves in CODEX_HOME/auth.json on a ChatGPT plan: tokens that expire in ten
    years, refreshed just now, so Codex neither refreshes them nor reaches auth.openai.com.
    Returns (the access token, the account id)."""
    account = f"acct-{os.urandom(8).hex()}"
    claims = {"exp": int(time.time()) + 10 * 365 * 86400, "https://api.openai.com/auth": {
        "chatgpt_plan_type": "plus", "chatgpt_user_id": f"user-{os.urandom(6).hex()}", "chatgpt_account_id": account}}
    access = jwt({**claims, "scp": ["openid", "profile", "email", "offline_access"]})
    tokens = {"id_token": jwt({**claims, "email": "dev@example.com"}), "access_token": access,
              "refresh_token": f"rt-{os.urandom(16).hex()}", "account_id": account}
    now = datetime.datetime.now(datetime.UTC).isoformat().replace("+00:00", "Z")
    codex_home.mkdir(parents=True, exist_ok=True)
    (codex_home / "auth.json").write_text(json.dumps({"auth_mode": "chatgpt", "OPENAI_API_KEY": None,
                                                      "tokens": tokens, "last_refresh": now}))
    return access, account


def test_codex_cli_on_a_chatgpt_login(gateway, agents, tmp_path):
    """Codex samples over a WebSocket to chatgpt.com/backend-api/codex/responses (a warm-up turn, then
    the real ones): each turn is recorded as a call, priced as a shadow cost."""
    access, account = chatgpt_login(tmp_path / "home" / ".codex")
    seen = len(gateway.process.lines)
    # A model the price table knows (Codex's default is newer than the table).
    done = run_agent(gateway, tmp_path, [str(agents / "codex"), "exec", "-m", "gpt-5.1-codex",
                                         "--skip-git-repo-check", "say hi"])
    assert done.returncode == 0, done.stdout + done.stderr
    sent = [r for r in admin(gateway.mock_port, "GET", "/_mock/requests")
            if r["path"] == "/backend-api/codex/responses" and r["headers"].get("chatgpt-account-id") == account]
    assert {r["method"] for r in sent} == {"GET", "MESSAGE"}  # the upgrade and its turns; no POST fallback
    rows = calls(gateway, "codex", tmp_path)
    assert len(rows) >= 2 and {r["status"] for r in rows} == {"ok"}, rows
    for row in rows:
        assert row["client"] == "Codex CLI" and row["provider"] == "chatgpt" and row["endpoint"] == "responses"
        assert row["model"] == "gpt-5.1-codex" and row["input_tokens"] > 0
        assert row["cost_usd"] is None and row["shadow_cost_usd"] > 0  # paid by the ChatGPT plan
    assert any(row["output_tokens"] > 0 for row in rows)  # the warm-up writes nothing; the turn does
    assert_never_kept(gateway, seen, access, account)


def test_the_chatgpt_backend_over_http_is_a_subscription_call(gateway, customer):
    """Codex's other transport (when its socket cannot be had): the same Responses stream as an HTTP
    POST, here from the OpenAI SDK with a ChatGPT login's access token as its key."""
    import openai

    access = jwt({"exp": int(time.time()) + 3600})
    account = f"acct-{os.urandom(8).hex()}"
    seen = len(gateway.process.lines)
    client = openai.OpenAI(api_key=access, base_url="https://chatgpt.com/backend-api/codex", max_retries=0)
    stream = client.responses.create(model="gpt-5.1-codex", input="say hi", stream=True, extra_headers={
        "chatgpt-account-id": account, "x-tapgate-customer-identifier": customer})
    assert any(event.type == "response.completed" for event in stream)
    row = gateway.rows(customer)[0]
    assert row["provider"] == "chatgpt" and row["status"] == "ok" and row["output_tokens"] > 0
    assert row["cost_usd"] is None and row["shadow_cost_usd"] > 0
    assert_never_kept(gateway, seen, access, account)


def assert_never_kept(gateway, seen: int, access: str, account: str) -> None:
    """Neither the login's token (whole or its signature) nor its account id is in any file of the
    store or in what the gateway printed since line `seen`."""
    signature = access.rsplit(".", 1)[1]
    for path in store_files(gateway.db):
        data = path.read_bytes()
        assert access.encode() not in data and signature.encode() not in data, path
        assert account.encode() not in data, path
    output = "\n".join(gateway.process.lines[seen:])
    assert signature not in output and account not in output
