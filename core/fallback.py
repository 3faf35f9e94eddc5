"""Fallback: try deployments in order, retrying each with full-jitter exponential backoff, all within
one deadline. Pure of I/O: `send` makes one attempt and returns its result or a Failure."""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Awaitable, Callable

from core.config import RetryPolicy
from core.errors import AllAttemptsFailed, Failure, ProviderRejected
from core.routing import Target

# The provider rejected the request itself: the same request fails the same way anywhere.
NEVER_RETRIED = {400, 401, 403, 404, 413, 422}


def decide(failure: Failure) -> str:
    """"retry" the same deployment, go to the "next" one, or "stop" and answer the client now."""
    if failure.kind == "missing_key":
        return "next"  # the gateway has no key for this deployment; another may have one
    if failure.kind not in ("http", "stream_error"):
        return "retry"  # refused or reset connection, connect or first-byte timeout
    if failure.code == "insufficient_quota":
        return "next"  # this account is out of credit; retrying it is pointless, another may answer
    status = failure.status or 500
    if status in NEVER_RETRIED or (400 <= status < 500 and status not in (408, 429)):
        return "stop"
    return "retry"  # 408, 429, 5xx, 529


def backoff(policy: RetryPolicy, retry: int, retry_after: float | None, rng: random.Random) -> float:
    """Full jitter (AWS architecture blog, "Exponential Backoff And Jitter"): uniform in
    [0, min(cap, base * 2^retry)], never sooner than the provider's Retry-After."""
    delay = rng.uniform(0, min(policy.max_backoff, policy.retry_after * 2**retry))
    return max(delay, retry_after) if retry_after is not None else delay


async def attempt_in_order[T](
    targets: list[Target],
    send: Callable[[Target, float], Awaitable[T | Failure]],
    policy: RetryPolicy,
    deadline: float,
    on_result: Callable[[Target, T | Failure], None],
    *,
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    rng: random.Random | None = None,
    clock: Callable[[], float] = time.monotonic,
) -> T:
    """The first successful attempt's result. Raises ProviderRejected for a request no deployment
    will take, AllAttemptsFailed when every retry of every target failed or the deadline passed."""
    rng = rng or random.Random()
    retries = policy.num_retries if policy.retry_enabled else 0
    failures: list[tuple[str, Failure]] = []
    for target in targets:
        for retry in range(retries + 1):
            remaining = deadline - clock()
            if remaining <= 0:
                failures.append((target.name, Failure("deadline", "the call's timeout passed before this attempt")))
                raise AllAttemptsFailed(failures)
            result = await send(target, remaining)
            on_result(target, result)
            if not isinstance(result, Failure):
                return result
            failures.append((target.name, result))
            action = decide(result)
            if action == "stop":
                raise ProviderRejected(result.status or 400, result.describe(target.name), result.code)
            if action == "next" or retry == retries:
                break
            if result.retry_after is not None and result.retry_after > policy.max_backoff:
                break  # the provider's limit outlasts our patience: the next deployment may answer now
            delay = backoff(policy, retry, result.retry_after, rng)
            if clock() + delay >= deadline:
                break
            await sleep(delay)
    raise AllAttemptsFailed(failures)
