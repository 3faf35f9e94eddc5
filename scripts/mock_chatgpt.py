"""The mock's answers to the ChatGPT backend calls Codex CLI makes on a ChatGPT login besides sampling:
before its first turn it asks `/backend-api/wham/accounts/check` where the signed-in workspace is served
(and refuses to sample without an answer naming the account it sent in `chatgpt-account-id`). Sampling
itself, `/backend-api/codex/responses`, is the Responses API and answered from the catalog like
`/v1/responses`; the other backend paths (plugins, analytics, settings) are answered 404 as before."""

from __future__ import annotations

ACCOUNTS_CHECK = "/backend-api/wham/accounts/check"
ORIGIN = "https://chatgpt.com"  # where the workspace's backend is: Codex keeps sampling there


def answers(path: str) -> bool:
    return path == ACCOUNTS_CHECK


def accounts_check(headers: dict[str, str]) -> dict:
    """The account the request named, on chatgpt.com's backend with no residency constraint."""
    account = headers.get("chatgpt-account-id", "")
    return {"accounts": [{
        "id": account,
        "name": None,
        "structure": "personal",
        "plan_type": "plus",
        "is_deactivated": False,
        "workspace_backend_origin": ORIGIN,
        "account_routing_override": "NO_CONSTRAINT",
    }]}
