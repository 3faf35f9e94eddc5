"""Attribution: who made each call through the proxy: the client its User-Agent names, the tags
`tapgate run` put in the proxy URL's user name (held per client connection, as a proxy credential is),
and whether a subscription login paid for it."""

from __future__ import annotations

from mitmproxy import connection, http

from core.clients import client_of, subscription_login
from core.runtags import split
from core.secrets import key_from


class Attribution:
    """Before Auth: a run credential is taken apart here, and Auth sees only the gateway key in it."""

    def __init__(self) -> None:
        self.connections: dict[str, dict[str, str]] = {}  # client connection id -> its run tags

    def http_connect(self, flow: http.HTTPFlow) -> None:
        self._take(flow)

    def requestheaders(self, flow: http.HTTPFlow) -> None:
        self._take(flow)  # plain-HTTP requests sent to a proxy carry the credential on each request
        if (call := flow.metadata.get("tapgate")) is not None:
            self.attribute(flow, call)

    def attribute(self, flow: http.HTTPFlow, call) -> None:
        """The call's client, run tags and login, from the request that carried it (for a call made
        over a WebSocket, addons/sockets.py: the upgrade request)."""
        call.client = client_of(flow.request.headers.get("user-agent"))
        call.run = self.connections.get(flow.client_conn.id, {})
        credential = key_from(flow.request.headers, flow.request.path.partition("?")[2])
        call.subscription = subscription_login(call.route.provider, credential)

    def client_disconnected(self, client: connection.Client) -> None:
        self.connections.pop(client.id, None)

    def _take(self, flow: http.HTTPFlow) -> None:
        value = flow.request.headers.get("proxy-authorization")
        if value is None:
            return
        tags, rest = split(value)
        if tags is None:
            return
        self.connections[flow.client_conn.id] = tags
        if rest is None:
            del flow.request.headers["proxy-authorization"]
        else:
            flow.request.headers["proxy-authorization"] = rest
