"""Anthropic's Messages API, on api.anthropic.com and Vertex AI."""
