"""`tapgate replay serve`: a dataset's recorded answers served to the app's own tests, offline and
deterministic, in each provider's wire format; streams re-sent event by event at their recorded pace."""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from core.evals.matching import request_key
from providers.safe_json import parse_json


@dataclass
class Recorded:
    """The answers recorded for one request key, served in turn (the same question asked twice in the
    dataset gets its two answers in order, then again from the first)."""

    rows: list[dict[str, Any]] = field(default_factory=list)
    served: int = 0

    def next(self) -> dict[str, Any]:
        row = self.rows[self.served % len(self.rows)]
        self.served += 1
        return row


def index(rows: list[dict[str, Any]]) -> dict[str, Recorded]:
    """Dataset rows with an answer, by the key of their request. The path is not part of the key: a
    row knows its request body, and Gemini's model and streaming are read from the body's path below."""
    out: dict[str, Recorded] = {}
    for row in rows:
        if row.get("response_body") is None and not row.get("response_events"):
            continue
        body = parse_json(row["request_body"])
        path = row_path(row)
        out.setdefault(request_key(path, body), Recorded()).rows.append(row)
    return out


def row_path(row: dict[str, Any]) -> str:
    """A path standing for a recorded Gemini call (model and streaming live in its URL)."""
    endpoint = row.get("endpoint") or ""
    if endpoint in ("generateContent", "streamGenerateContent"):
        return f"/models/{row.get('model')}:{endpoint}"
    return ""


def app(rows: list[dict[str, Any]], speed: float = 1.0) -> web.Application:
    """The replay server: POST anything; the matching recorded answer, else a 404 saying so."""
    recorded = index(rows)

    async def answer(request: web.Request) -> web.StreamResponse:
        raw = await request.read()
        body = parse_json(raw.decode("utf-8", "replace"))
        path = request.path if "/models/" in request.path else ""
        found = recorded.get(request_key(path, body))
        if found is None:
            return web.json_response({"error": {"message": "tapgate replay: no recorded call matches this request "
                                                           "(model, messages, tools and parameters)",
                                                "type": "replay_miss", "code": "replay_miss"}}, status=404)
        row = found.next()
        events = row.get("response_events")
        events = json.loads(events) if isinstance(events, str) else events
        if not events:
            return web.Response(body=(row["response_body"] or "").encode(), content_type="application/json")
        response = web.StreamResponse(headers={"content-type": row.get("content_type") or "text/event-stream",
                                               "cache-control": "no-cache"})
        await response.prepare(request)
        loop, start = asyncio.get_running_loop(), asyncio.get_running_loop().time()
        for at_ms, text in events:
            if speed > 0 and (wait := start + at_ms / 1000 / speed - loop.time()) > 0:
                await asyncio.sleep(wait)  # the recorded pace: each event when it came, after the request
            await response.write(text.encode())
        await response.write_eof()
        return response

    application = web.Application(client_max_size=64 * 1024 * 1024)
    application.router.add_route("POST", "/{tail:.*}", answer)
    return application


def serve(rows: list[dict[str, Any]], host: str, port: int, speed: float, name: str) -> None:
    async def main() -> None:
        runner = web.AppRunner(app(rows, speed), access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, host, port)
        await site.start()
        bound = runner.addresses[0]
        print(f"tapgate replay of {name} ({len(rows)} calls) listening at http://{bound[0]}:{bound[1]}", flush=True)
        try:
            await asyncio.Event().wait()
        finally:
            await runner.cleanup()

    try:
        asyncio.run(main())
    except KeyboardInterrupt:
        pass
