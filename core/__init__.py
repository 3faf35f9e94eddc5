"""tapgate's core: the call logic both doors share (keys, ledger, rate limits, cache, routing and
fallback, sending, recording, the store). It imports neither mitmproxy nor aiohttp's server."""
