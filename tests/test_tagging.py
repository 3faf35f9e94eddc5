"""Who a call is for: X-Tapgate-* headers, the body's own fields, traceparent; and key hygiene."""

import base64
import json

import pytest
from mitmproxy.http import Headers

from core.secrets import fingerprint_key, key_from, redact_url
from core.tagging import BadTag, strip_gateway_headers, tags_from, trace_context


def test_headers_win_over_params_which_win_over_the_body():
    params = base64.b64encode(json.dumps({"customer_identifier": "p", "thread_identifier": "t1",
                                          "metadata": {"a": 1, "b": 2}}).encode()).decode()
    h = Headers(x_tapgate_params=params, x_tapgate_metadata='{"b": 3}')
    tags = tags_from(h, "body-user", {"env": "prod"})
    assert (tags.customer_identifier, tags.thread_identifier) == ("p", "t1")
    assert tags.metadata == {"env": "prod", "a": 1, "b": 3}
    h["X-Tapgate-Customer-Identifier"] = "hdr"
    assert tags_from(h, "body-user", {}).customer_identifier == "hdr"
    assert tags_from(Headers(), "body-user", {}).customer_identifier == "body-user"


@pytest.mark.parametrize(
    "name,value,param",
    [("x-tapgate-metadata", "not json", "X-Tapgate-Metadata"), ("x-tapgate-metadata", "[1]", "X-Tapgate-Metadata"),
     ("x-tapgate-params", "%%%", "X-Tapgate-Params"),
     ("x-tapgate-params", '{"metadata": 5}', "X-Tapgate-Params.metadata"),
     ("x-tapgate-metadata", '{"a":' * 20_000 + "1" + "}" * 20_000, "X-Tapgate-Metadata"),
     ("x-tapgate-params", "[" * 20_000 + "]" * 20_000, "X-Tapgate-Params"),
     ("x-tapgate-params", base64.b64encode(b"[" * 20_000 + b"]" * 20_000).decode(), "X-Tapgate-Params")],
)
def test_malformed_headers_name_the_param(name, value, param):
    with pytest.raises(BadTag) as e:
        tags_from(Headers(**{name.replace("-", "_"): value}), None, {})
    assert e.value.param == param


def test_gateway_headers_are_stripped_and_others_kept():
    h = Headers(x_tapgate_metadata="{}", X_Tapgate_Customer_Identifier="c", authorization="Bearer k", traceparent="x")
    strip_gateway_headers(h)
    assert sorted(k.lower() for k in h.keys()) == ["authorization", "traceparent"]


def test_traceparent():
    tp = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
    assert trace_context(tp) == ("4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7")
    for bad in (None, "garbage", "00-" + "0" * 32 + "-00f067aa0ba902b7-01", "ff-" + tp[3:]):
        trace_id, parent = trace_context(bad)
        assert parent is None and len(trace_id) == 32 and trace_id != "0" * 32


def test_keys_are_found_fingerprinted_and_redacted():
    assert key_from(Headers(authorization="Bearer sk-abc")) == "sk-abc"
    assert key_from(Headers(x_api_key="sk-ant")) == "sk-ant"
    assert key_from(Headers(x_goog_api_key="AIza1")) == "AIza1"
    assert key_from(Headers(), "alt=sse&key=AIza2") == "AIza2"
    fp = fingerprint_key("sk-abc", "salt")
    assert fp.startswith("fp_") and len(fp) == 15 and "abc" not in fp
    assert fp == fingerprint_key("sk-abc", "salt") != fingerprint_key("sk-abc", "other salt")
    assert redact_url("/v1beta/models/m:streamGenerateContent?alt=sse&key=AIza2") == (
        "/v1beta/models/m:streamGenerateContent?alt=sse&key=REDACTED"
    )
