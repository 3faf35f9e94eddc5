"""Anthropic's Messages API, on api.anthropic.com and on Vertex AI: wire parser (wire.py), chat
translation (chat.py, chat_stream.py), replay (replay.py) and the router's /v1/messages front
(front.py, reply.py). Exports ANTHROPIC; the registry (providers/__init__.py) reads it."""

from __future__ import annotations

from providers.anthropic.chat import anthropic_chat
from providers.anthropic.front import front
from providers.anthropic.replay import anthropic_replay
from providers.anthropic.wire import API_HOST, AnthropicMessages, anthropic
from providers.package import Endpoint, ProviderPackage

ANTHROPIC = ProviderPackage(
    name="anthropic",
    wires=(anthropic,),
    wire_type=AnthropicMessages,  # Vertex rawPredict included
    replay=anthropic_replay,
    endpoints=(
        Endpoint("anthropic", anthropic_chat, anthropic, f"https://{API_HOST}", "ANTHROPIC_API_KEY",
                 bare_models="claude*"),
    ),
    front=front,
)

__all__ = ["ANTHROPIC"]
