"""Anthropic Messages (stub: being written)."""
from providers.openai import OpenAIDialect
anthropic = OpenAIDialect(name="anthropic", hosts=("api.anthropic.com",), prefixes=("/nonexistent",))
