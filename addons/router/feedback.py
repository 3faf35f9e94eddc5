"""`POST /v1/feedback` on the router's port: a user's score for a call, journaled to the scores table."""

from __future__ import annotations

from aiohttp import web

from addons.router.request import credential, read_json
from core.errors import BadRequest, Refusal
from core.evals.feedback import BadFeedback, feedback_row
from providers import FRONTS

MAX_FEEDBACK_BYTES = 64 * 1024


def handler(identify, store):
    """The route's handler: the caller is identified as for a call (identify.router); errors in OpenAI's
    shape. Not a call itself, so it does not go through the pipeline and makes no row."""
    front = FRONTS["/v1/chat/completions"]

    async def feedback(request: web.Request) -> web.Response:
        try:
            identify.router(credential(request, front))
            try:
                row = feedback_row(await read_json(request, MAX_FEEDBACK_BYTES))
            except BadFeedback as e:
                raise BadRequest(str(e), param=e.param) from None
        except Refusal as e:
            return web.Response(status=e.status, body=front.error(e.status, e.body()),
                                content_type="application/json", headers=e.headers)
        store.add("scores", row)
        return web.json_response({"id": row["id"], "call_id": row["call_id"], "evaluator": row["evaluator"],
                                  "value": row["value"], "label": row["label"]})

    return feedback
