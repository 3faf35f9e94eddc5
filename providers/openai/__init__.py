"""OpenAI and the hosts that speak its API (compatible rows, Ollama)."""
