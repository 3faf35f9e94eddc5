"""The router port's operational endpoints: GET /health/live, GET /health/ready (JSON with a reason per
failed check; 503 while not ready) and GET /metrics (Prometheus' text format)."""

from __future__ import annotations

from aiohttp import web
from prometheus_client.exposition import choose_encoder

from core.health import readiness


def add_routes(app: web.Application, router, metrics) -> None:
    """Mount the endpoints on the router's application; `metrics` is the Metrics addon."""

    async def live(request: web.Request) -> web.Response:
        return web.json_response({"status": "live"})

    async def ready(request: web.Request) -> web.Response:
        missing = router.routes.missing_keys() if router.routes is not None else []
        state = readiness(router.stages.record.recorder.store, router.address, missing)
        return web.json_response(state.body(), status=200 if state.ready else 503)

    async def scrape(request: web.Request) -> web.Response:
        if metrics.collectors is None:
            return web.json_response({"error": {"message": "Metrics are off (tapgate_metrics).",
                                                "type": "invalid_request_error", "code": "not_found"}}, status=404)
        # The format the scraper asks for (Prometheus 2 and 3 differ), as the client's own HTTP server answers.
        encode, content_type = choose_encoder(request.headers.get("accept", ""))
        return web.Response(body=encode(metrics.collectors.registry), headers={"content-type": content_type})

    app.router.add_get("/health/live", live)
    app.router.add_get("/health/ready", ready)
    app.router.add_get("/metrics", scrape)
