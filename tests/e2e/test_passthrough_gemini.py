"""The official google-genai SDK through HTTPS_PROXY: thoughts counted as output, SSE streams,
embeddings, errors, and the key in the URL never stored."""

import json

import pytest
from google import genai
from google.genai import errors, types

KEY = "AIza-test-e2e-SECRET-gemini-0123456789"


def client(customer, **headers):
    return genai.Client(api_key=KEY, http_options=types.HttpOptions(
        headers={"X-Tapgate-Customer-Identifier": customer, **headers}))


def test_generate_content_counts_thoughts_as_output(gateway, customer):
    c = client(customer)  # keep a reference: the SDK closes its HTTP client when collected
    reply = c.models.generate_content(model="gemini-2.5-flash", contents="Hi")
    assert reply.usage_metadata.thoughts_token_count == 34
    (row,) = gateway.rows(customer)
    assert (row["provider"], row["endpoint"], row["model"], row["response_model"]) == (
        "gemini", "generateContent", "gemini-2.5-flash", "gemini-2.5-flash")
    assert (row["input_tokens"], row["output_tokens"], row["reasoning_tokens"]) == (9, 43, 34)
    assert row["cost_usd"] == pytest.approx(9 * 0.3e-6 + 43 * 2.5e-6)


def test_stream_takes_the_last_cumulative_usage(gateway, customer):
    c = client(customer)
    text = "".join(ch.text or "" for ch in c.models.generate_content_stream(model="gemini-2.5-flash", contents="Hi"))
    (row,) = gateway.rows(customer)
    assert (row["endpoint"], row["stream"], row["input_tokens"], row["output_tokens"]) == (
        "streamGenerateContent", 1, 13, 8)
    assert json.loads(row["response_body"])["text"] == text
    assert row["cost_usd"] is not None  # priced on the requested model when the answering one has no price
    assert "key=" not in row["path"] or "REDACTED" in row["path"]


def test_function_call_stream(gateway, customer):
    c = client(customer)
    tool = types.Tool(function_declarations=[types.FunctionDeclaration(name="get_weather", description="d")])
    chunks = list(c.models.generate_content_stream(model="gemini-2.5-flash", contents="Weather?",
                                                   config=types.GenerateContentConfig(tools=[tool])))
    assert any(ch.function_calls for ch in chunks)
    (row,) = gateway.rows(customer)
    assert json.loads(row["response_body"])["tool_calls"][0]["name"]


def test_embeddings(gateway, customer):
    c = client(customer)
    c.models.embed_content(model="gemini-embedding-001", contents="hello")
    (row,) = gateway.rows(customer)
    assert row["endpoint"] in ("embedContent", "batchEmbedContents") and row["status"] == "ok"


def test_errors_pass_through_in_googles_shape(gateway, customer):
    c = client(customer, **{"x-mock-status": "429"})
    with pytest.raises(errors.ClientError) as e:
        c.models.generate_content(model="gemini-2.5-flash", contents="Hi")
    assert e.value.code == 429 and e.value.status == "RESOURCE_EXHAUSTED"
    (row,) = gateway.rows(customer)
    assert (row["status_code"], row["status"]) == (429, "error") and "RESOURCE_EXHAUSTED" in row["error"]


def test_stream_without_alt_sse_is_a_json_array_parsed_as_it_passes(gateway, customer):
    """The SDKs ask for alt=sse; other clients get a streamed JSON array, which is parsed too."""
    import ssl
    import urllib.request

    opener = urllib.request.build_opener(
        urllib.request.ProxyHandler({"https": gateway.proxy}),
        urllib.request.HTTPSHandler(context=ssl.create_default_context(cafile=gateway.ca)))
    req = urllib.request.Request(
        "https://generativelanguage.googleapis.com/v1beta/models/gemini-2.5-flash:streamGenerateContent",
        data=json.dumps({"contents": [{"parts": [{"text": "Hi"}]}]}).encode(), method="POST",
        headers={"x-goog-api-key": KEY, "content-type": "application/json",
                 "X-Tapgate-Customer-Identifier": customer})
    with opener.open(req) as reply:
        body = json.loads(reply.read())
    assert isinstance(body, list) and len(body) > 1
    (row,) = gateway.rows(customer)
    assert (row["stream"], row["status"], row["input_tokens"], row["output_tokens"]) == (1, "ok", 13, 8)


def test_vertex_express_mode(gateway, customer):
    c = genai.Client(vertexai=True, api_key=KEY, http_options=types.HttpOptions(
        headers={"X-Tapgate-Customer-Identifier": customer}))
    c.models.generate_content(model="gemini-2.5-flash", contents="Hi")
    (row,) = gateway.rows(customer)
    assert (row["provider"], row["host"], row["model"]) == ("gemini", "aiplatform.googleapis.com", "gemini-2.5-flash")
    assert row["cost_usd"] is not None  # priced from the vertex_ai rows
