"""Auth: which gateway key a call carries, from proxy authentication (`http://<key>@gateway`) or an
X-Tapgate-Key header, so apps whose SDK still holds the provider's key get per-key spend; and the
refusal of calls whose key is unknown, revoked, expired, missing when required, or not allowed the model."""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass
from pathlib import Path

from mitmproxy import connection, ctx, http

from addons.capture import refuse
from addons.settings import Settings
from core.keys import GatewayKey, KeyRing, hash_secret

KEY_HEADER = "x-tapgate-key"
CHALLENGE = {"proxy-authenticate": 'Basic realm="tapgate"'}
HOW = "put the key in the proxy URL (HTTPS_PROXY=http://<key>@<gateway>) or an X-Tapgate-Key header"


@dataclass(frozen=True)
class Denial:
    status: int
    code: str
    message: str
    key: GatewayKey | None = None  # a known key that may not be used now (revoked, expired)
    param: str | None = None


class Auth:
    """Holds the KeyRing (every key by hash, following the store) and the key each client
    connection authenticated with; puts the caller's GatewayKey in flow.metadata["tapgate_key"]."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.ring = KeyRing()
        self.connections: dict[str, str] = {}  # client connection id -> hash of its proxy-auth key
        self._running = False

    def configure(self, updated: set[str]) -> None:
        if "tapgate_db" in updated and self._running:
            self._open()

    def running(self) -> None:
        # Not in configure at start-up: Store, later in the list, creates and migrates the file there.
        self._running = True
        self._open()

    def _open(self) -> None:
        self.ring.open(Path(ctx.options.tapgate_db).expanduser())

    def done(self) -> None:
        self.ring.close()

    # -- hooks ---------------------------------------------------------------------------------

    def http_connect(self, flow: http.HTTPFlow) -> None:
        """A tunnel's credentials hold for every request inside it; bad ones get a 407 at once."""
        value = flow.request.headers.pop("proxy-authorization", None)
        if value is not None:
            found = self._check_proxy(flow, value)
            if isinstance(found, Denial):
                flow.response = _plain(407, found.message)
        elif self.settings.config.require_key and not self._decrypts(flow.request.host, flow.request.port):
            # Nothing inside this tunnel will be read, so proxy authentication is the only way to name a key.
            flow.response = _plain(407, f"This gateway requires a gateway key: {HOW}.")

    def requestheaders(self, flow: http.HTTPFlow) -> None:
        req = flow.request
        header = req.headers.pop(KEY_HEADER, None)  # never sent upstream
        proxy = req.headers.pop("proxy-authorization", None)  # plain-HTTP requests sent to a proxy
        found: GatewayKey | Denial | None = None
        if header is not None:
            found = self._check(hash_secret(header.strip()), "X-Tapgate-Key")
        elif proxy is not None:
            found = self._check_proxy(flow, proxy)
        elif (digest := self.connections.get(flow.client_conn.id)) is not None:
            found = self._check(digest, None)  # revoked or rotated since the CONNECT: refused from now on
        if isinstance(found, GatewayKey):
            flow.metadata["tapgate_key"] = found
        if flow.metadata.get("tapgate") is not None:  # an LLM call: refused in request(), once Capture parsed it
            if isinstance(found, Denial):
                flow.metadata["tapgate_denial"] = found
        elif isinstance(found, Denial) and found.status == 407:
            flow.response = _plain(407, found.message)
        elif found is None and self.settings.config.require_key and req.first_line_format == "absolute":
            flow.response = _plain(407, f"This gateway requires a gateway key: {HOW}.")

    def request(self, flow: http.HTTPFlow) -> None:
        call = flow.metadata.get("tapgate")
        if call is None or flow.response is not None:
            return
        denial: Denial | None = flow.metadata.pop("tapgate_denial", None)
        key: GatewayKey | None = flow.metadata.get("tapgate_key")
        if denial is None and key is None and self.settings.config.require_key:
            denial = Denial(401, "gateway_key_required", f"This gateway requires a gateway key: {HOW}.")
        elif denial is None and key is not None and not key.allows(call.facts.model):
            denial = Denial(403, "model_not_allowed", f"Gateway key {key.name or key.id} may not call model "
                            f"{call.facts.model!r}; it allows {', '.join(key.models)}.", param="model")
        if denial is not None:
            if denial.key is not None:
                call.key_id = denial.key.id
            refuse(flow, call, denial.status, denial.message, denial.code, denial.param,
                   CHALLENGE if denial.status == 407 else None)

    def client_disconnected(self, client: connection.Client) -> None:
        self.connections.pop(client.id, None)

    # -- checks --------------------------------------------------------------------------------

    def _check(self, digest: str, param: str | None) -> GatewayKey | Denial:
        key = self.ring.by_hash(digest)
        if key is None:
            where = "in X-Tapgate-Key" if param else "in the proxy URL"
            return Denial(401, "invalid_gateway_key", f"The gateway key {where} is not known to this gateway.",
                          param=param)
        if problem := key.problem():
            return Denial(401, "invalid_gateway_key", problem[0].upper() + problem[1:] + ".", key, param)
        return key

    def _check_proxy(self, flow: http.HTTPFlow, value: str) -> GatewayKey | Denial:
        """Proxy credentials are challenged as a proxy does (407 with Proxy-Authenticate); good ones
        are remembered for the client's connection."""
        secret = proxy_secret(value)
        if not secret:
            return Denial(407, "invalid_gateway_key", f"Proxy-Authorization carries no gateway key: {HOW}.")
        digest = hash_secret(secret)
        found = self._check(digest, None)
        if isinstance(found, Denial):
            return Denial(407, found.code, found.message, found.key)
        self.connections[flow.client_conn.id] = digest
        return found

    def _decrypts(self, host: str, port: int) -> bool:
        """Whether the gateway will read what goes through a tunnel to host (as Tunnel decides)."""
        return ctx.options.tapgate_decrypt_all or self.settings.registry.is_provider_host(host, port)


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
