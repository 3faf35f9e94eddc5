"""Shadow: the passthrough and router doors' calls, a share of them sent again in the background to a
candidate model (routing.shadow); the sending is core/shadow.py, this addon builds it from the config
and owns its connection pool."""

from __future__ import annotations

from mitmproxy import ctx, exceptions

from core.outcome import Outcome
from core.recorder import Recorder
from core.routing import Routes
from core.shadow import ShadowSender
from core.upstream import HttpUpstream


class Shadow:
    def __init__(self, settings) -> None:
        self.settings = settings
        self.recorder: Recorder | None = None  # Capture's, set by gateway.py: shadow rows go where all rows go
        self.upstream = HttpUpstream()
        self.sender: ShadowSender | None = None

    def configure(self, updated: set[str]) -> None:
        if "tapgate_config" not in updated and self.sender is not None:
            return
        config = self.settings.config
        if not config.routing.shadow:
            self.sender = None
            return
        try:
            routes = Routes(config.router, self.settings.prices)
        except ValueError as e:
            raise exceptions.OptionsError(f"{ctx.options.tapgate_config}: router: {e}") from None
        if bad := ShadowSender.check(config.routing.shadow, routes):
            raise exceptions.OptionsError(f"{ctx.options.tapgate_config}: " + "; ".join(bad))
        self.sender = ShadowSender(config.routing.shadow, routes, self.upstream, self._record)

    async def running(self) -> None:
        await self.upstream.start()

    async def done(self) -> None:
        if self.sender is not None:
            await self.sender.drain()
        await self.upstream.close()

    def offer(self, row: dict, call) -> None:
        """A Recorder listener."""
        if self.sender is not None:
            self.sender.offer(row, call)

    def _record(self, call, status_code, status, error, facts, chars, body) -> None:
        self.recorder.record(call, Outcome(facts, True, chars, body, status, error, status_code))
