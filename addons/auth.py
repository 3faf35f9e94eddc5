"""Auth: the gateway key a caller presents through the proxy, from proxy authentication
(`http://<key>@gateway`) or an X-Tapgate-Key header, so apps whose SDK still holds the provider's key
get per-key spend. It hands LLM calls the credential (the identify stage checks it), challenges bad
proxy credentials as a proxy does, and keeps the key ring following the store."""

from __future__ import annotations

import base64
import binascii

from mitmproxy import connection, ctx, http

from addons.capture import CHALLENGE, CREDENTIAL
from addons.settings import Settings
from addons.sockets import SOCKET
from addons.store import store_location
from core import database
from core.errors import Refusal
from core.keys import SHARED_REFRESH, KeyRing, hash_secret
from core.pipeline import Credential
from core.stages.identify import HOW, Identify

KEY_HEADER = "x-tapgate-key"


class Auth:
    """Remembers the key each client connection authenticated with at CONNECT: it holds for every
    request inside the tunnel, and is checked again on each (revoked or rotated since: refused)."""

    def __init__(self, settings: Settings, ring: KeyRing, identify: Identify) -> None:
        self.settings = settings
        self.ring = ring
        self.identify = identify
        self.connections: dict[str, str] = {}  # client connection id -> hash of its proxy-auth key
        self._running = False

    def configure(self, updated: set[str]) -> None:
        if ("tapgate_db" in updated or "tapgate_postgres" in updated) and self._running:
            self._open()

    def running(self) -> None:
        # Not in configure at start-up: Store, later in the list, creates and migrates the file there.
        self._running = True
        self._open()

    def _open(self) -> None:
        where = store_location()
        if database.is_postgres(where):  # several gateways share it: a revoke is seen by all within a second
            self.ring.refresh = min(self.ring.refresh, SHARED_REFRESH)
        self.ring.open(where)

    def done(self) -> None:
        self.ring.close()

    # -- hooks ---------------------------------------------------------------------------------

    def http_connect(self, flow: http.HTTPFlow) -> None:
        """A tunnel's credentials hold for every request inside it; bad ones get a 407 at once."""
        value = flow.request.headers.pop("proxy-authorization", None)
        if value is not None:
            if (refusal := self._remember(flow, Credential(_digest_of(value), "proxy"))) is not None:
                flow.response = _plain(407, refusal.message)
        elif self.settings.config.require_key and not self._decrypts(flow.request.host, flow.request.port):
            # Nothing inside this tunnel will be read, so proxy authentication is the only way to name a key.
            flow.response = _plain(407, f"This gateway requires a gateway key: {HOW}.")

    def requestheaders(self, flow: http.HTTPFlow) -> None:
        req = flow.request
        header = req.headers.pop(KEY_HEADER, None)  # never sent upstream
        proxy = req.headers.pop("proxy-authorization", None)  # plain-HTTP requests sent to a proxy
        refusal = None
        if header is not None:
            credential = Credential(hash_secret(header.strip()), "X-Tapgate-Key")
        elif proxy is not None:
            credential = Credential(_digest_of(proxy), "proxy")
            refusal = self._remember(flow, credential)
        elif (digest := self.connections.get(flow.client_conn.id)) is not None:
            credential = Credential(digest, "tunnel")  # checked again: revoked or rotated since, refused
        else:
            credential = None
        # An LLM call, or a provider's socket whose turns will be (addons/sockets.py): identify checks it.
        if flow.metadata.get("tapgate") is not None or SOCKET in flow.metadata:
            if credential is not None:
                flow.metadata[CREDENTIAL] = credential
        elif refusal is not None:  # any other request: bad proxy credentials are challenged as a proxy does
            flow.response = _plain(407, refusal.message)
        elif credential is None and self.settings.config.require_key and req.first_line_format == "absolute":
            flow.response = _plain(407, f"This gateway requires a gateway key: {HOW}.")

    def client_disconnected(self, client: connection.Client) -> None:
        self.connections.pop(client.id, None)

    # -- proxy credentials -----------------------------------------------------------------------

    def _remember(self, flow: http.HTTPFlow, credential: Credential) -> Refusal | None:
        """Good proxy credentials are remembered for the client's connection; bad ones are refused."""
        try:
            self.identify.check(credential)
        except Refusal as e:
            return e
        self.connections[flow.client_conn.id] = credential.digest
        return None

    def _decrypts(self, host: str, port: int) -> bool:
        """Whether the gateway will read what goes through a tunnel to host (as Tunnel decides)."""
        return ctx.options.tapgate_decrypt_all or self.settings.registry.is_provider_host(host, port)


def _digest_of(value: str) -> str:
    """The hash of the gateway key in a Proxy-Authorization value; "" when it carries none."""
    secret = proxy_secret(value)
    return hash_secret(secret) if secret else ""


def proxy_secret(value: str) -> str:
    """The gateway key in a Proxy-Authorization value: Basic's user name (`http://<key>@host`), or its
    password when the user name is empty; a Bearer token as it is. "" when there is none."""
    scheme, _, token = value.strip().partition(" ")
    token = token.strip()
    if scheme.lower() == "bearer":
        return token
    if scheme.lower() != "basic":
        return ""
    try:
        user, _, password = base64.b64decode(token, validate=True).decode("utf-8").partition(":")
    except (binascii.Error, UnicodeDecodeError):
        return ""
    return user or password


def _plain(status: int, message: str) -> http.Response:
    """What a proxy answers: the caller's SDK sees a proxy error, not a provider's reply."""
    return http.Response.make(status, message + "\n", {"content-type": "text/plain; charset=utf-8", **CHALLENGE})
