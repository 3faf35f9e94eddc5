"""Auth's hooks on hand-made flows: where a call's gateway key comes from, which header never goes
upstream, and what a caller with a bad, missing or too narrow key gets back."""

import base64
import json
import time

import pytest
from mitmproxy import http
from mitmproxy.test import taddons, tflow, tutils
from support import Rows, hook, passthrough_door

from addons.auth import Auth, proxy_secret
from addons.settings import Settings
from addons.store import Store
from addons.tunnel import Tunnel
from cli import keyadmin
from core.config import TapgateConfig
from core.keys import KeyRing
from core.schema import open_db
from core.stages.identify import Identify

BODY = {"model": "gpt-4o", "messages": [{"role": "user", "content": "hi"}]}


def basic(user, password=""):
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


@pytest.fixture
def gw(tmp_path):
    """Settings, Capture and Auth in gateway order, over a store with three keys."""
    db = open_db(tmp_path / "t.db")
    good, good_secret = keyadmin.create_key(db, "good", [])
    narrow, narrow_secret = keyadmin.create_key(db, "narrow", [], models=["gpt-4o-mini*"])
    gone, gone_secret = keyadmin.create_key(db, "gone", [])
    keyadmin.revoke_key(db, gone.id)
    db.close()
    settings, rows = Settings(), Rows()
    capture, auth = passthrough_door(settings, rows)
    auth.ring.open(tmp_path / "t.db")
    with taddons.context(settings, Tunnel(settings), capture, auth) as tctx:
        tctx.configure(capture)
        yield type("GW", (), dict(settings=settings, rows=rows, capture=capture, auth=auth, good=good,
                                  good_secret=good_secret, narrow_secret=narrow_secret, gone=gone,
                                  gone_secret=gone_secret))
    auth.ring.close()


def connect(host="api.openai.com", port=443, **headers):
    flow = tflow.tflow()
    flow.request = tutils.treq(method=b"CONNECT", host=host, port=port, path=b"", scheme=b"",
                               authority=f"{host}:{port}".encode(), headers=http.Headers(**headers))
    return flow


def llm(body=BODY, host="api.openai.com", path="/v1/chat/completions", client=None, **headers):
    req = tutils.treq(host=host, port=443, scheme=b"https", path=path.encode(), method=b"POST",
                      headers=http.Headers(host=host, content_type="application/json", **headers),
                      content=json.dumps(body).encode())
    flow = tflow.tflow(req=req)
    if client is not None:
        flow.client_conn = client
    flow.request.timestamp_start = time.time()
    return flow


def send(gw, flow):
    """The request hooks in gateway order, then the recorded row (a stand-in response if it went upstream)."""
    for name in ("requestheaders", "request"):
        for addon in (gw.capture, gw.auth):
            hook(addon, name, flow)
    went_upstream = flow.response is None
    if went_upstream:
        flow.response = http.Response.make(200, json.dumps({"model": "gpt-4o", "usage": {
            "prompt_tokens": 1, "completion_tokens": 1}}), {"content-type": "application/json"})
    gw.capture.response(flow)
    return went_upstream, gw.rows.tables["requests"][-1]


def test_proxy_secret_reads_the_user_name_or_the_password():
    assert proxy_secret(basic("tg-key")) == "tg-key"
    assert proxy_secret(basic("", "tg-key")) == "tg-key"
    assert proxy_secret(basic("tg-key", "ignored")) == "tg-key"
    assert proxy_secret("Bearer tg-key") == "tg-key"
    assert proxy_secret("Basic !!!") == "" and proxy_secret("Digest x") == "" and proxy_secret(basic("")) == ""


def test_a_good_connect_holds_for_the_tunnel_and_its_header_is_removed(gw):
    flow = connect(proxy_authorization=basic(gw.good_secret))
    gw.auth.http_connect(flow)
    assert flow.response is None and "proxy-authorization" not in flow.request.headers
    went, row = send(gw, llm(client=flow.client_conn))
    assert went and row["key_id"] == gw.good.id and row["status"] == "ok"
    gw.auth.client_disconnected(flow.client_conn)
    assert gw.auth.connections == {}


@pytest.mark.parametrize("which, message", [("unknown", "not known"), ("gone", "was revoked"), ("empty", "no gateway key")])
def test_a_bad_connect_gets_a_407_challenge(gw, which, message):
    value = {"unknown": basic("tg-nope"), "gone": basic(gw.gone_secret), "empty": basic("")}[which]
    flow = connect(proxy_authorization=value)
    gw.auth.http_connect(flow)
    assert flow.response.status_code == 407
    assert flow.response.headers["proxy-authenticate"] == 'Basic realm="tapgate"'
    assert message in flow.response.text and gw.auth.connections == {}


def test_the_header_wins_and_never_goes_upstream(gw):
    tunnel = connect(proxy_authorization=basic(gw.narrow_secret))
    gw.auth.http_connect(tunnel)
    flow = llm(client=tunnel.client_conn, x_tapgate_key=gw.good_secret)
    went, row = send(gw, flow)
    assert went and "x-tapgate-key" not in flow.request.headers
    assert row["key_id"] == gw.good.id  # not narrow's, which would not even allow gpt-4o


def test_a_key_revoked_after_the_connect_is_refused_inside_the_tunnel(gw, tmp_path):
    tunnel = connect(proxy_authorization=basic(gw.good_secret))
    gw.auth.http_connect(tunnel)
    db = open_db(tmp_path / "t.db")
    keyadmin.revoke_key(db, gw.good.id)
    db.close()
    gw.auth.ring.reload()
    flow = llm(client=tunnel.client_conn)
    went, row = send(gw, flow)
    assert not went and flow.response.status_code == 401  # inside a tunnel a proxy cannot challenge again
    assert (row["status"], row["key_id"]) == ("refused", gw.good.id)


@pytest.mark.parametrize("secret, code, message", [
    ("tg-nope", "invalid_gateway_key", "The gateway key in X-Tapgate-Key is not known to this gateway."),
    ("gone", "invalid_gateway_key", "was revoked"),
])
def test_a_bad_header_key_is_a_401_in_the_callers_dialect_and_recorded(gw, secret, code, message):
    secret = gw.gone_secret if secret == "gone" else secret
    flow = llm(x_tapgate_key=secret)
    went, row = send(gw, flow)
    assert not went and flow.response.status_code == 401
    error = flow.response.json()["error"]
    assert (error["type"], error["code"], error["param"]) == ("authentication_error", code, "X-Tapgate-Key")
    assert message in error["message"]
    assert (row["status_code"], row["status"]) == (401, "refused")
    assert secret not in json.dumps(row)


def test_anthropic_callers_get_anthropics_shape(gw):
    flow = llm({"model": "claude-sonnet-4-6", "max_tokens": 5, "messages": BODY["messages"]},
               host="api.anthropic.com", path="/v1/messages", x_tapgate_key="tg-nope")
    send(gw, flow)
    body = flow.response.json()
    assert flow.response.status_code == 401
    assert (body["type"], body["error"]["type"]) == ("error", "authentication_error")


def test_a_model_outside_the_keys_globs_is_a_403(gw):
    flow = llm(x_tapgate_key=gw.narrow_secret)
    went, row = send(gw, flow)
    assert not went and flow.response.status_code == 403
    error = flow.response.json()["error"]
    assert (error["type"], error["code"], error["param"]) == ("permission_error", "model_not_allowed", "model")
    assert "'gpt-4o'" in error["message"] and "gpt-4o-mini*" in error["message"]
    went, row = send(gw, llm({**BODY, "model": "gpt-4o-mini"}, x_tapgate_key=gw.narrow_secret))
    assert went and row["status"] == "ok"


def test_require_key(gw):
    went, row = send(gw, llm())
    assert went and row["key_id"] is None  # allowed by default; no provider key in this call either
    gw.settings.config = TapgateConfig(require_key=True)
    flow = llm()
    went, row = send(gw, flow)
    assert not went and flow.response.status_code == 401
    assert flow.response.json()["error"]["code"] == "gateway_key_required"
    assert row["status"] == "refused"
    # a tunnel to a host the gateway does not decrypt can only carry a key in proxy authentication
    elsewhere = connect("pypi.org")
    gw.auth.http_connect(elsewhere)
    assert elsewhere.response.status_code == 407 and "requires a gateway key" in elsewhere.response.text
    provider = connect()
    gw.auth.http_connect(provider)
    assert provider.response is None  # its calls may still bring X-Tapgate-Key
    keyed = connect("pypi.org", proxy_authorization=basic(gw.good_secret))
    gw.auth.http_connect(keyed)
    assert keyed.response is None


def test_plain_http_proxy_requests(gw):
    """Absolute-form requests carry Proxy-Authorization on each request; other hosts get a plain 407."""
    def plain(**headers):
        req = tutils.treq(host="example.com", port=80, scheme=b"http", path=b"/", method=b"GET",
                          authority=b"example.com", headers=http.Headers(host="example.com", **headers))
        flow = tflow.tflow(req=req)
        gw.capture.requestheaders(flow)
        gw.auth.requestheaders(flow)
        return flow

    assert plain(proxy_authorization=basic("tg-nope")).response.status_code == 407
    ok = plain(proxy_authorization=basic(gw.good_secret))
    assert ok.response is None and "proxy-authorization" not in ok.request.headers
    assert gw.auth.connections[ok.client_conn.id]  # good credentials are remembered for the connection
    assert plain().response is None
    gw.settings.config = TapgateConfig(require_key=True)
    assert plain().response.status_code == 407


def test_the_ring_opens_on_the_store_when_running_and_follows_a_new_tapgate_db(tmp_path):
    paths = []
    for name in ("a.db", "b.db"):
        db = open_db(tmp_path / name)
        paths.append((tmp_path / name, keyadmin.create_key(db, name, [])[1]))
        db.close()
    settings, store = Settings(), Store()
    ring = KeyRing()
    auth = Auth(settings, ring, Identify(settings, ring))
    with taddons.context(settings, auth, store) as tctx:
        try:
            tctx.configure(store, tapgate_db=str(paths[0][0]))
            auth.configure({"tapgate_db"})  # before running: the store may not be migrated yet
            assert len(auth.ring) == 0
            auth.running()
            assert auth.ring.find(paths[0][1]) is not None
            tctx.configure(store, tapgate_db=str(paths[1][0]))
            auth.configure({"tapgate_db"})
            assert auth.ring.find(paths[1][1]) is not None and auth.ring.find(paths[0][1]) is None
        finally:
            auth.done()
            store.done()
