"""Google's Gemini API, on generativelanguage and Vertex AI: wire parser (wire.py), chat translation
(chat.py, chat_stream.py), replay (replay.py), and the OpenAI-compatible paths on its own host.
Exports GEMINI; the registry (providers/__init__.py) reads it."""

from __future__ import annotations

from providers.gemini.chat import gemini_chat
from providers.gemini.replay import gemini_replay
from providers.gemini.wire import GEMINI_API_HOST, GeminiProvider, gemini
from providers.openai.wire import OpenAIDialect
from providers.package import Endpoint, ProviderPackage

# Gemini's OpenAI-compatible endpoint (the native paths on the same host are wire.py's); its answers
# are OpenAI's, so OpenAI's replay serves them.
GEMINI_OPENAI = OpenAIDialect("gemini", (GEMINI_API_HOST,), prefixes=("/v1beta/openai",), price_prefix="gemini/")

GEMINI = ProviderPackage(
    name="gemini",
    wires=(gemini, GEMINI_OPENAI),
    wire_type=GeminiProvider,
    replay=gemini_replay,
    endpoints=(Endpoint("gemini", gemini_chat, gemini, f"https://{GEMINI_API_HOST}", "GEMINI_API_KEY"),),
)

__all__ = ["GEMINI"]
