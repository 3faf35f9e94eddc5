"""OpenAI-compatible hosts as data: one row each (host, paths, prices, quirks from
../shared/WIRE-FORMATS.md, and the key variable the router reads for it). Gemini's own
OpenAI-compatible paths are a row of providers/gemini/."""

from __future__ import annotations

from providers.openai.wire import OpenAIDialect

AZURE_HOSTS = ("*.openai.azure.com", "*.cognitiveservices.azure.com", "*.services.ai.azure.com")

COMPATIBLE: tuple[OpenAIDialect, ...] = (
    # Classic deployment paths and the newer /openai/v1 paths with the model in the body.
    OpenAIDialect("azure", AZURE_HOSTS, prefixes=("/openai/v1",), price_prefix="azure/", azure_deployments=True),
    OpenAIDialect("groq", ("api.groq.com",), prefixes=("/openai/v1",), price_prefix="groq/", key_env="GROQ_API_KEY"),
    # Mistral sends usage in the last chunk unasked and documents no stream_options.
    OpenAIDialect("mistral", ("api.mistral.ai",), price_prefix="mistral/", accepts_stream_options=False,
                  key_env="MISTRAL_API_KEY"),
    OpenAIDialect("deepseek", ("api.deepseek.com",), prefixes=("", "/v1"), price_prefix="deepseek/",
                  key_env="DEEPSEEK_API_KEY"),
    # OpenRouter reports each call's cost in usage.cost; the price table has no openrouter rows.
    OpenAIDialect("openrouter", ("openrouter.ai",), prefixes=("/api/v1",), price_prefix="openrouter/",
                  key_env="OPENROUTER_API_KEY"),
    # Together sends usage in the final chunk unasked.
    OpenAIDialect(
        "together", ("api.together.xyz", "api.together.ai"), price_prefix="together_ai/", accepts_stream_options=False,
        key_env="TOGETHER_API_KEY",
    ),
    OpenAIDialect("xai", ("api.x.ai",), price_prefix="xai/", reasoning_outside_completion=True,
                  key_env="XAI_API_KEY"),
    # Codex CLI signed in with ChatGPT: the Responses API under chatgpt.com's backend, paid by the ChatGPT
    # plan. Its bearer is the login's access token, a JWT ("eyJ..."), so a JWT means a subscription login
    # (shadow cost at OpenAI's API prices, no cost); no key variable, so the router never calls it.
    OpenAIDialect("chatgpt", ("chatgpt.com",), prefixes=("/backend-api/codex",), subscription_prefixes=("eyJ",)),
    OpenAIDialect("fireworks", ("api.fireworks.ai",), prefixes=("/inference/v1",), price_prefix="fireworks_ai/",
                  key_env="FIREWORKS_API_KEY"),
)
