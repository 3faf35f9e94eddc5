"""The fallback loop against a fake upstream: which failures are retried, failed over or returned."""

from __future__ import annotations

import asyncio
import random

import pytest

from core.config import RetryPolicy
from core.errors import AllAttemptsFailed, Failure, ProviderRejected
from core.fallback import attempt_in_order, backoff, decide
from core.routing import Target
from providers import endpoint


def target(name: str) -> Target:
    return Target(name, endpoint("openai"), name.split("/")[-1], "http://127.0.0.1:9", "sk-x")


class Fake:
    """A scripted upstream: each target answers from its own queue; records every attempt and sleep."""

    def __init__(self, script: dict[str, list]):
        self.script = {k: list(v) for k, v in script.items()}
        self.calls: list[str] = []
        self.slept: list[float] = []
        self.now = 0.0

    async def send(self, t: Target, remaining: float):
        self.calls.append(t.name)
        return self.script[t.name].pop(0)

    async def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds

    def run(self, targets, policy: RetryPolicy | None = None, deadline=100.0):
        seen = []
        return asyncio.run(attempt_in_order(
            targets, self.send, policy or RetryPolicy(), deadline, lambda t, r: seen.append((t.name, r)),
            sleep=self.sleep, rng=random.Random(1), clock=lambda: self.now)), seen


A, B = target("openai/a"), target("openai/b")


@pytest.mark.parametrize("failure, action", [
    (Failure("connect", "refused"), "retry"),
    (Failure("connect_timeout", "x"), "retry"),
    (Failure("first_byte_timeout", "x"), "retry"),
    (Failure("reset", "x"), "retry"),
    (Failure("http", "x", 408), "retry"),
    (Failure("http", "x", 429), "retry"),
    (Failure("http", "x", 500), "retry"),
    (Failure("http", "x", 503), "retry"),
    (Failure("http", "x", 529), "retry"),
    (Failure("stream_error", "overloaded", 529), "retry"),
    (Failure("http", "x", 429, "insufficient_quota"), "next"),
    (Failure("http", "x", 400), "stop"),
    (Failure("http", "x", 401), "stop"),
    (Failure("http", "x", 403), "stop"),
    (Failure("http", "x", 404), "stop"),
])
def test_decide(failure, action):
    assert decide(failure) == action


def test_retries_then_falls_over_to_the_next_model():
    fake = Fake({"openai/a": [Failure("http", "busy", 503)] * 3, "openai/b": ["answer"]})
    result, seen = fake.run([A, B])
    assert result == "answer"
    assert fake.calls == ["openai/a"] * 3 + ["openai/b"]  # num_retries=2: three tries of a
    assert len(fake.slept) == 2 and all(0 <= s <= 1.0 for s in fake.slept)  # full jitter under 0.5, 1.0
    assert [type(r).__name__ for _, r in seen] == ["Failure"] * 3 + ["str"]


def test_retry_after_is_honoured_and_a_long_one_moves_on_at_once():
    fake = Fake({"openai/a": [Failure("http", "slow down", 429, retry_after=1.5), "ok"]})
    assert fake.run([A])[0] == "ok"
    assert fake.slept[0] >= 1.5
    fake = Fake({"openai/a": [Failure("http", "slow down", 429, retry_after=60)], "openai/b": ["ok"]})
    assert fake.run([A, B])[0] == "ok"
    assert fake.slept == [] and fake.calls == ["openai/a", "openai/b"]


def test_never_retried_statuses_answer_at_once():
    fake = Fake({"openai/a": [Failure("http", "bad key", 401)], "openai/b": ["ok"]})
    with pytest.raises(ProviderRejected) as e:
        fake.run([A, B])
    assert e.value.status == 401 and fake.calls == ["openai/a"]


def test_insufficient_quota_is_not_retried_but_fails_over():
    fake = Fake({"openai/a": [Failure("http", "quota", 429, "insufficient_quota")], "openai/b": ["ok"]})
    assert fake.run([A, B])[0] == "ok"
    assert fake.calls == ["openai/a", "openai/b"]


def test_everything_failing_lists_every_attempt_with_the_right_status():
    fake = Fake({"openai/a": [Failure("http", "limit", 429, retry_after=2)] * 3,
                 "openai/b": [Failure("http", "limit", 429)] * 3})
    with pytest.raises(AllAttemptsFailed) as e:
        fake.run([A, B])
    assert e.value.status == 429 and e.value.headers["retry-after"] == "2"
    assert len(e.value.attempts) == 6 and "attempt 6: openai/b: HTTP 429" in e.value.message
    fake = Fake({"openai/a": [Failure("first_byte_timeout", "no answer in 3 s")] * 3})
    with pytest.raises(AllAttemptsFailed) as e:
        fake.run([A])
    assert e.value.status == 504
    fake = Fake({"openai/a": [Failure("connect", "refused")] * 3})
    with pytest.raises(AllAttemptsFailed) as e:
        fake.run([A])
    assert e.value.status == 502


def test_the_deadline_covers_every_retry():
    fake = Fake({"openai/a": [Failure("http", "busy", 500)] * 3, "openai/b": ["ok"]})
    fake.now = 0.0
    with pytest.raises(AllAttemptsFailed) as e:
        fake.run([A, B], deadline=0.0)
    assert fake.calls == [] and e.value.status == 504


def test_retry_disabled_fails_over_at_once():
    fake = Fake({"openai/a": [Failure("http", "busy", 500)], "openai/b": ["ok"]})
    assert fake.run([A, B], RetryPolicy(retry_enabled=False))[0] == "ok"
    assert fake.calls == ["openai/a", "openai/b"] and fake.slept == []


def test_backoff_is_full_jitter_capped():
    policy = RetryPolicy(retry_after=1, max_backoff=4)
    rng = random.Random(7)
    draws = [backoff(policy, 5, None, rng) for _ in range(500)]
    assert max(draws) <= 4 and min(draws) >= 0 and max(draws) > 3  # spread over [0, cap]
