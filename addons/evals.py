"""Evals: scores recorded calls of both doors in the background (core/evals/online.py); the judge's
calls go to this gateway's own router."""

from __future__ import annotations

from mitmproxy import exceptions

from addons.settings import Settings
from addons.store import Store
from core.evals.judge import RouterJudge
from core.evals.online import OnlineScorer
from core.evals.registry import Evaluators
from core.stages.identify import master_key
from providers.base import Usage


class Evals:
    """Start the scoring thread at start, drain it at the end; its backlog joins the writer's status."""

    def __init__(self, settings: Settings, store: Store, router) -> None:
        self.settings, self.store = settings, store
        judge = RouterJudge(lambda: router.address, lambda: master_key(settings.config.router), self._cost)
        self.scorer = OnlineScorer(settings, store, judge)
        store.status_sources.append(self.scorer.status)

    def _cost(self, model: str, usage: dict) -> float | None:
        tokens = Usage(input_tokens=usage.get("prompt_tokens"), output_tokens=usage.get("completion_tokens"))
        return self.settings.prices.cost("", model, tokens)

    def configure(self, updated: set[str]) -> None:
        if "tapgate_config" in updated:
            try:  # a Python evaluator that cannot be imported is a config error now, not a failure per call
                Evaluators(self.settings.config.evals)
            except ValueError as e:
                raise exceptions.OptionsError(f"evals: {e}") from None

    def running(self) -> None:
        self.scorer.start()

    def done(self) -> None:
        self.scorer.stop()
