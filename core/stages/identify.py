"""Identify: who is calling. The one gateway-key check for both doors: a known, usable key names the
caller; the router's master key names the operator; an unknown, revoked or expired key, or none where
one is required, is refused in words that say where the key was looked for."""

from __future__ import annotations

import hmac
import os

from core.call import Call, Caller
from core.config import Configured, RouterConfig
from core.errors import ProxyAuthRequired, Refusal, Unauthorized
from core.keys import GatewayKey, KeyRing

HOW = "put the key in the proxy URL (HTTPS_PROXY=http://<key>@<gateway>) or an X-Tapgate-Key header"
# Where a passthrough credential was found, as an error names it.
WHERE = {"X-Tapgate-Key": "in X-Tapgate-Key", "proxy": "in the proxy URL", "tunnel": "in the proxy URL"}


def master_key(config: RouterConfig) -> str | None:
    return config.master_key or os.environ.get(config.master_key_env) or None


class Identify:
    name = "identify"

    def __init__(self, settings: Configured, ring: KeyRing) -> None:
        self.settings = settings
        self.ring = ring

    async def __call__(self, call: Call, ask) -> None:
        # Named by the provider key's fingerprint until (and unless) a gateway key names it, refused too.
        call.caller = Caller(key_id=ask.fingerprint)
        caller = self.router(ask.credential) if ask.door == "router" else self.passthrough(ask.credential)
        if caller.key_id or caller.master:
            call.caller = caller

    # -- passthrough: X-Tapgate-Key, proxy credentials, or the tunnel's ------------------------------

    def passthrough(self, credential) -> Caller:
        if credential is None:
            if self.settings.config.require_key:
                raise Unauthorized(f"This gateway requires a gateway key: {HOW}.", code="gateway_key_required")
            return Caller()
        key = self.check(credential)
        return Caller(key, key.id)

    def check(self, credential) -> GatewayKey:
        """The usable key a passthrough credential names; raises the refusal its source calls for
        (407 for proxy credentials, as a proxy challenges; 401 for a header or a tunnel's key)."""
        param = "X-Tapgate-Key" if credential.source == "X-Tapgate-Key" else None
        kind: type[Refusal] = ProxyAuthRequired if credential.source == "proxy" else Unauthorized
        if not credential.digest:
            raise ProxyAuthRequired(f"Proxy-Authorization carries no gateway key: {HOW}.")
        key = self.ring.by_hash(credential.digest)
        if key is None:
            raise kind(f"The gateway key {WHERE[credential.source]} is not known to this gateway.",
                       param=param, code="invalid_gateway_key")
        if problem := key.problem():
            raise kind(problem[0].upper() + problem[1:] + ".", param=param, code="invalid_gateway_key", key=key)
        return key

    # -- the router: the master key, a gateway key, or nobody -----------------------------------------

    def router(self, credential) -> Caller:
        """None named for the master key, or for anyone when the router has no master key and keys
        are not required; an error names the header the caller sent its key in."""
        config = self.settings.config
        master = master_key(config.router)
        secret = credential.secret if credential is not None else ""
        if master and secret and hmac.compare_digest(secret.encode(), master.encode()):
            return Caller(master=True)
        if secret and (key := self.ring.by_hash(credential.digest)) is not None:
            if problem := key.problem():
                raise Unauthorized(problem[0].upper() + problem[1:] + ".", key=key)
            return Caller(key, key.id)
        if not master and not config.require_key:
            return Caller()
        source = credential.source if credential is not None else "bearer"
        where = {"X-Tapgate-Key": "in the X-Tapgate-Key header", "bearer": "as the Bearer token",
                 "x-api-key": "in the x-api-key header"}[source]
        raise Unauthorized(f"Incorrect API key: send the gateway master key or a gateway key {where}."
                           if secret else f"Missing API key: send a gateway key {where}.")
