"""Mid-stream failover (issue #14): a stream cut or stalled after the client saw part of the answer is
re-asked of a fallback with the partial answer as a continuation, and the new chunks are made to read as
the same stream (one id, no second role, one final usage adding both attempts)."""

from __future__ import annotations

import math
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from core.call import CHARS_PER_TOKEN
from core.sending import StreamAnswer

# Said after the partial answer to a model that cannot be given an assistant prefill.
CONTINUE = ("Your previous answer was cut off. Continue it exactly where it stopped, without repeating "
            "anything and without any preamble.")

# The relay's way back to the router: (partial text, the deployment that broke, why) -> the stream
# that continues it, or None when nothing could.
type Resume = Callable[[str, str, str], Awaitable[tuple[StreamAnswer, dict[str, int]] | None]]


def continuation_body(body: dict[str, Any], partial: str, prefill: bool) -> dict[str, Any]:
    """The client's OpenAI chat body with the partial answer after its messages: as a trailing assistant
    message (a prefill, which Anthropic continues; it refuses one ending in whitespace), else followed by
    a user message asking to continue."""
    if not partial.strip():
        return body  # nothing was said yet: the question is asked again as it was
    messages = [*body.get("messages", []), {"role": "assistant", "content": partial.rstrip() if prefill else partial}]
    if not prefill:
        messages.append({"role": "user", "content": CONTINUE})
    return {**body, "messages": messages}


def estimated_usage(prompt_chars: int, partial: str) -> dict[str, int]:
    """The broken attempt's usage in OpenAI's names, from sizes: its usage never arrived."""
    prompt = math.ceil(prompt_chars / CHARS_PER_TOKEN)
    completion = math.ceil(len(partial) / CHARS_PER_TOKEN)
    return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}


@dataclass
class Seam:
    """Rewrites a continuation's OpenAI chunks to continue the first stream: its id, no new role, and
    the broken attempt's usage added to the continuation's."""

    chunk_id: str | None
    carried: dict[str, int]

    def join(self, chunks: list[dict[str, Any]]) -> list[dict[str, Any]]:
        for chunk in chunks:
            if self.chunk_id:
                chunk["id"] = self.chunk_id
            for choice in chunk.get("choices") or ():
                if isinstance(delta := choice.get("delta"), dict):
                    delta.pop("role", None)
            if isinstance(usage := chunk.get("usage"), dict):
                for name, value in self.carried.items():
                    usage[name] = (usage.get(name) or 0) + value
        return chunks


def resumer(dispatch, plan: list, prepare: Callable[[Any, dict[str, Any]], tuple[Any, bool]], body: dict[str, Any],
            *, prompt_chars: int, note: Callable[[str], None], **send) -> Resume:
    """The Resume of one routed call: the deployments after the broken one in its `plan`, sent the
    continuation through `dispatch` (its retries, health and attempt spans), `prepare(target, body)`
    translating it. `send`: Dispatch.send's policy, deadline, timeouts and on_attempt."""
    from core.errors import Refusal
    from providers.model_facts import facts_for

    async def resume(partial: str, broken: str, why: str) -> tuple[StreamAnswer, dict[str, int]] | None:
        names = [t.name for t in plan]
        rest = plan[names.index(broken) + 1:] if broken in names else []
        if not rest:
            return None

        def prepare_continuation(target) -> tuple[Any, bool]:
            facts = facts_for(target.endpoint.provider.price_prefix, target.model)
            return prepare(target, continuation_body(body, partial, prefill=bool(facts and facts.prefill)))

        try:
            answer = await dispatch.send(rest, prepare_continuation, stream=True, **send)
        except Refusal:  # every follower failed too (AllAttemptsFailed, ProviderRejected): the break is told
            return None
        if not isinstance(answer, StreamAnswer):
            answer.release()
            return None
        note(f"continued on {answer.target.name} after {why} ({len(partial)} characters passed on)")
        return answer, estimated_usage(prompt_chars, partial)

    return resume
