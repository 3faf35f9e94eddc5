"""Gemini (stub: being written)."""
from providers.openai import OpenAIDialect
gemini = OpenAIDialect(name="gemini", hosts=("generativelanguage.googleapis.com",), prefixes=("/nonexistent",))
