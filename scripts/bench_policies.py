"""What the guardrails add per call with the example policy set of docs/policies.md (secrets blocked,
PII redacted and restored, injection flagged both ways, secrets in answers blocked): the request scan
and redaction on a 4 KB and a 100 KB prompt, p50 and p99, and the scan of an answer's stream per chunk.
Measured in-process on the functions the doors call (no network, no proxy), so the figures are the
policies' own share of a call's added time.

    python scripts/bench_policies.py [--calls 2000] [--chunks 20000]
"""

from __future__ import annotations

import argparse
import copy
import json
import random
import re
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from core.config import TapgateConfig  # noqa: E402
from core.policies.engine import Guardrails, Who  # noqa: E402

EXAMPLE = Path(__file__).resolve().parents[1] / "docs" / "policies.md"
WORDS = ("the service returns a token after the user signs in and the key rotates every day while the api "
         "answers within the budget of our team so please review the function below and explain what it does "
         "with the access log and the password policy").split()
CODE = 'def handler(event):\n    user = event["user"]\n    return {"status": 200, "items": [1, 2, 3]}\n'


def example_policies():
    from ruamel.yaml import YAML

    [block] = re.findall(r"```yaml\n(policies:.*?)```", EXAMPLE.read_text(encoding="utf-8"), re.S)
    return TapgateConfig.model_validate(YAML(typ="safe").load(block)).policies


def prompt(size: int, rng: random.Random) -> dict:
    """A chat request of about `size` bytes: prose with security words (the secret rules' keywords fire),
    a code block, numbers, and one e-mail address to redact."""
    parts = []
    while sum(map(len, parts)) < size:
        parts.append(" ".join(rng.choice(WORDS) for _ in range(40)) + f". Order {rng.randint(1000, 99999)} shipped.\n")
        if len(parts) % 5 == 0:
            parts.append(CODE)
    text = "".join(parts)[: size - 60] + " Contact ops@example.com."
    return {"model": "gpt-4o", "messages": [{"role": "system", "content": "You are a helpful assistant."},
                                            {"role": "user", "content": text}]}


def pct(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[max(0, min(len(ordered) - 1, round(p / 100 * len(ordered) + 0.5) - 1))]


def request_side(guardrails: Guardrails, body: dict, calls: int) -> list[float]:
    """Per call: choose the guard, scan the request, redact, re-serialise the body sent upstream."""
    times = []
    for _ in range(calls):
        b = copy.deepcopy(body)  # not timed: each call parses its own body
        t0 = time.perf_counter()
        guard = guardrails.for_call(Who("passthrough", "api.openai.com", "gpt-4o"))
        if guard.check_request(b):
            json.dumps(b, ensure_ascii=False).encode()
        times.append((time.perf_counter() - t0) * 1000)
        assert guard.block is None
    return times


def parse_only(body: dict, calls: int) -> list[float]:
    """The reference measured in the same run: parsing the body, which every call costs the gateway anyway."""
    raw, times = json.dumps(body).encode(), []
    for _ in range(calls):
        t0 = time.perf_counter()
        json.loads(raw)
        times.append((time.perf_counter() - t0) * 1000)
    return times


def stream_side(guardrails: Guardrails, chunks: int) -> list[float]:
    """Per OpenAI stream event of ~20 characters: restore and response policies."""
    guard = guardrails.for_call(Who("passthrough", "api.openai.com", "gpt-4o"))
    guard.check_request({"messages": [{"role": "user", "content": "write to ops@example.com"}]})
    stream, rng, times = guard.stream(), random.Random(7), []
    for i in range(chunks):
        text = " ".join(rng.choice(WORDS) for _ in range(3)) + (" <EMAIL_1>" if i % 50 == 0 else " ")
        event = {"id": "c", "object": "chat.completion.chunk", "choices": [{"index": 0, "delta": {"content": text}}]}
        t0 = time.perf_counter()
        stream.feed(event)
        times.append((time.perf_counter() - t0) * 1000)
    return times


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--calls", type=int, default=2000)
    ap.add_argument("--chunks", type=int, default=20000)
    args = ap.parse_args()
    t0 = time.perf_counter()
    guardrails = Guardrails(example_policies())
    print(f"policies: {', '.join(p.policy.name for p in guardrails.policies)} "
          f"(built in {time.perf_counter() - t0:.2f} s, once per config load)")
    rng = random.Random(13)
    print("| what | size | calls | p50 ms | p99 ms | mean ms | p50 / parsing the body |\n|---|---|---|---|---|---|---|")
    for size, calls in ((4 * 1024, args.calls), (100 * 1024, max(args.calls // 10, 50))):
        body = prompt(size, rng)
        request_side(guardrails, body, 20)  # warm
        times, parse = request_side(guardrails, body, calls), parse_only(body, calls)
        goal = " (goal <= 1 ms: " + ("met" if pct(times, 50) <= 1 else "missed") + ")" if size == 4096 else ""
        print(f"| request scan + redact | {size // 1024} KB | {calls} | {pct(times, 50):.3f}{goal} | {pct(times, 99):.3f} "
              f"| {statistics.fmean(times):.3f} | {pct(times, 50) / pct(parse, 50):.1f}x |")
    times = stream_side(guardrails, args.chunks)
    print(f"| stream event (restore + response scan) | ~20 chars | {args.chunks} | {pct(times, 50):.4f} "
          f"| {pct(times, 99):.4f} | {statistics.fmean(times):.4f} | |")


if __name__ == "__main__":
    main()
