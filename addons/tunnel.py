"""Tunnel: connections to hosts that are not LLM providers pass through untouched, never decrypted,
so pip, git or a client that pins certificates keeps working behind the same proxy."""

from __future__ import annotations

from mitmproxy.proxy import layers, mode_specs
from mitmproxy.proxy.layer import NextLayer

from addons.provider_layer import ProviderHttpLayer
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
        if nextlayer.layer is not None or context.server.address is None:
            return
        host, port = context.server.address[:2]
        provider = self.settings.registry.is_provider_host(host, port)
        if context.client.tls or context.server.tls:
            # Already decrypting: the HTTP inside a provider's TLS. mitmproxy's own choice, with its
            # HTTP layer swapped for the one that answers its errors in the provider's shape.
            if provider and (chooser := ctx.master.addons.get("nextlayer")) is not None:
                chooser.next_layer(nextlayer)
                if type(nextlayer.layer) is layers.HttpLayer:
                    nextlayer.layer = ProviderHttpLayer(context, nextlayer.layer.mode,
                                                        ctx.options.tapgate_max_request_bytes)
            return
        if ctx.options.tapgate_decrypt_all or isinstance(context.client.proxy_mode, mode_specs.ReverseMode):
            return  # every host decrypted, or the operator chose the upstream explicitly
        if not provider:
            nextlayer.layer = layers.TCPLayer(context, ignore=True)
