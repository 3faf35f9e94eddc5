"""A local Ollama from config: native NDJSON streams, and its OpenAI-compatible /v1 paths."""

import json
import random

from support import parse_stream, random_splits

from providers import Registry, custom_provider

# Shapes per ../shared/WIRE-FORMATS.md (Ollama native: NDJSON, final object done: true with counts).
LINES = [
    {"model": "llama3.2", "message": {"role": "assistant", "content": "Hel"}, "done": False},
    {"model": "llama3.2", "message": {"role": "assistant", "content": "lo ✓"}, "done": False},
    {"model": "llama3.2", "message": {"role": "assistant", "content": ""}, "done": True, "done_reason": "stop",
     "prompt_eval_count": 26, "eval_count": 259, "total_duration": 4883583458},
]


def registry():
    return Registry(custom={"localhost:11434": custom_provider("ollama", "localhost", "ollama/", "ollama")})


def test_routes_are_keyed_by_host_and_port():
    r = registry()
    assert r.route("localhost", 11434, "/api/chat").endpoint == "ollama.chat"
    assert r.route("localhost", 11434, "/v1/chat/completions").endpoint == "chat.completions"
    assert r.route("localhost", 8000, "/api/chat") is None
    assert r.is_provider_host("localhost", 11434) and not r.is_provider_host("localhost", 22)


def test_ndjson_stream_in_random_splits():
    route = registry().route("localhost", 11434, "/api/chat")
    data = "".join(json.dumps(line, ensure_ascii=False) + "\n" for line in LINES).encode()
    whole = parse_stream(route, [data], content_type="application/x-ndjson")
    assert (whole.usage.input_tokens, whole.usage.output_tokens, whole.finished) == (26, 259, True)
    assert "".join(whole.output.text) == "Hello ✓" and whole.output.finish_reason == "stop"
    for seed in range(5):
        pieces = random_splits(data, random.Random(seed), 3)
        assert parse_stream(route, pieces, content_type="application/x-ndjson") == whole


def test_request_facts_default_to_streaming():
    route = registry().route("localhost", 11434, "/api/generate")
    facts = route.provider.request_facts(route, {"model": "llama3.2", "prompt": "hi", "options": {"num_predict": 9}})
    assert (facts.model, facts.stream, facts.max_tokens) == ("llama3.2", True, 9)
    assert route.provider.request_facts(route, {"model": "m", "stream": False}).stream is False
