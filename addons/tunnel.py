"""Tunnel: connections to hosts that are not LLM providers pass through untouched, never decrypted,
so pip, git or a client that pins certificates keeps working behind the same proxy."""

from __future__ import annotations

from mitmproxy.proxy import layers, mode_specs
from mitmproxy.proxy.layer import NextLayer

from addons.settings import Settings


class Tunnel:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    def load(self, loader) -> None:
        loader.add_option(
            "tapgate_decrypt_all",
            bool,
            False,
            "Decrypt every host, not only LLM providers (mitmproxy's own behaviour).",
        )

    def next_layer(self, nextlayer: NextLayer) -> None:
        from mitmproxy import ctx

        context = nextlayer.context
        if nextlayer.layer is not None or ctx.options.tapgate_decrypt_all or context.server.address is None:
            return
        if isinstance(context.client.proxy_mode, mode_specs.ReverseMode):
            return  # the operator chose the upstream explicitly
        if context.client.tls or context.server.tls:
            return  # already decrypting: this is the HTTP inside a provider's TLS
        host, port = context.server.address[:2]
        if not self.settings.registry.is_provider_host(host, port):
            nextlayer.layer = layers.TCPLayer(context, ignore=True)
