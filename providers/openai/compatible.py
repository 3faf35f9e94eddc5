"""OpenAI-compatible hosts as data: one row each, quirks from ../shared/WIRE-FORMATS.md."""

from __future__ import annotations

from providers.openai.wire import OpenAIDialect

AZURE_HOSTS = ("*.openai.azure.com", "*.cognitiveservices.azure.com", "*.services.ai.azure.com")

COMPATIBLE: tuple[OpenAIDialect, ...] = (
    # Classic deployment paths and the newer /openai/v1 paths with the model in the body.
    OpenAIDialect("azure", AZURE_HOSTS, prefixes=("/openai/v1",), price_prefix="azure/", azure_deployments=True),
    OpenAIDialect("groq", ("api.groq.com",), prefixes=("/openai/v1",), price_prefix="groq/"),
    # Mistral sends usage in the last chunk unasked and documents no stream_options.
    OpenAIDialect("mistral", ("api.mistral.ai",), price_prefix="mistral/", accepts_stream_options=False),
    OpenAIDialect("deepseek", ("api.deepseek.com",), prefixes=("", "/v1"), price_prefix="deepseek/"),
    # OpenRouter reports each call's cost in usage.cost; the price table has no openrouter rows.
    OpenAIDialect("openrouter", ("openrouter.ai",), prefixes=("/api/v1",), price_prefix="openrouter/"),
    # Together sends usage in the final chunk unasked.
    OpenAIDialect(
        "together", ("api.together.xyz", "api.together.ai"), price_prefix="together_ai/", accepts_stream_options=False
    ),
    OpenAIDialect("xai", ("api.x.ai",), price_prefix="xai/", reasoning_outside_completion=True),
    # Gemini's OpenAI-compatible endpoint (the native paths on the same host are providers/gemini/wire.py's).
    OpenAIDialect("gemini", ("generativelanguage.googleapis.com",), prefixes=("/v1beta/openai",), price_prefix="gemini/"),
    OpenAIDialect("fireworks", ("api.fireworks.ai",), prefixes=("/inference/v1",), price_prefix="fireworks_ai/"),
)
