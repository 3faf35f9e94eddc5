"""Requests and tokens per minute per scope, over a sliding 60-second window kept in memory."""

from __future__ import annotations

import math
from collections import deque

WINDOW = 60.0


class Window:
    """Requests as they start, provider-reported tokens as calls end; entries older than a minute drop."""

    def __init__(self) -> None:
        self.requests: deque[float] = deque()
        self.tokens: deque[tuple[float, int]] = deque()
        self.token_sum = 0

    def _expire(self, now: float) -> None:
        while self.requests and self.requests[0] <= now - WINDOW:
            self.requests.popleft()
        while self.tokens and self.tokens[0][0] <= now - WINDOW:
            self.token_sum -= self.tokens.popleft()[1]

    def check(self, rpm: int | None, tpm: int | None, now: float) -> tuple[str, int] | None:
        """(which limit, seconds until it has room) when a new call is over a limit, else None."""
        self._expire(now)
        if rpm is not None and len(self.requests) >= rpm:
            return "requests", max(1, math.ceil(self.requests[len(self.requests) - rpm] + WINDOW - now))
        if tpm is not None and self.token_sum >= tpm:
            # room comes back as the oldest tokens leave the window
            excess, wait = self.token_sum - tpm, 0.0
            for at, n in self.tokens:
                excess -= n
                wait = at + WINDOW - now
                if excess < 0:
                    break
            return "tokens", max(1, math.ceil(wait))
        return None

    def add_request(self, now: float) -> None:
        self.requests.append(now)

    def add_tokens(self, tokens: int, now: float) -> None:
        if tokens > 0:
            self.tokens.append((now, tokens))
            self.token_sum += tokens
