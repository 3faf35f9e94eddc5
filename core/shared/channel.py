"""A Redis pub/sub channel followed for as long as the process runs: each message handed on as it
comes, the subscription made again after Redis went away (what is published meanwhile is missed, so
its users also poll or count on the heartbeat)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

log = logging.getLogger(__name__)


async def follow(client, channel: str, on_message: Callable[[bytes | str], None], what: str,
                 retry_seconds: float = 1.0) -> None:
    """Run until cancelled; `what` names the channel in the debug log when it is lost."""
    while True:
        try:
            async with client.pubsub() as pubsub:
                await pubsub.subscribe(channel)
                async for message in pubsub.listen():
                    if message.get("type") == "message":
                        on_message(message["data"])
        except asyncio.CancelledError:
            raise
        except Exception as e:
            log.debug("tapgate: %s lost: %s", what, e)
            await asyncio.sleep(retry_seconds)
