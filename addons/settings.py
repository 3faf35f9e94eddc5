"""Settings: loads the config file once and holds what every other addon reads (registry, prices)."""

from __future__ import annotations

import logging

from mitmproxy import ctx, exceptions
from mitmproxy.proxy import mode_specs

from core.config import ConfigError, TapgateConfig, load_config
from providers import Registry, custom_provider
from providers.pricing import PriceTable

log = logging.getLogger(__name__)


class Settings:
    """Parses `tapgate_config` when it changes; other addons keep a reference and read its fields."""

    def __init__(self) -> None:
        self.config = TapgateConfig()
        self.registry = Registry()
        self.prices = PriceTable.load()

    def load(self, loader) -> None:
        loader.add_option(
            "tapgate_config",
            str,
            "",
            "Path of tapgate's YAML config file (custom hosts, price overrides). Empty: built-in defaults.",
        )

    async def running(self) -> None:
        """Safe default: a proxy that decrypts API keys listens on loopback unless told otherwise.

        mitmdump binds its servers before it loads scripts, so an unset listen_host is applied by
        rebinding once at start-up (`--listen-host 0.0.0.0` listens on every interface)."""
        if ctx.options.listen_host or (proxyserver := ctx.master.addons.get("proxyserver")) is None:
            return
        ctx.options.listen_host = "127.0.0.1"
        modes = [mode_specs.ProxyMode.parse(m) for m in ctx.options.mode]
        await proxyserver.servers.update([])
        await proxyserver.servers.update(modes)

    def configure(self, updated: set[str]) -> None:
        if "tapgate_config" in updated:
            try:
                config = load_config(ctx.options.tapgate_config)
                custom = {
                    h.host.lower(): custom_provider(h.name, h.host.rsplit(":", 1)[0].lower(), h.price_prefix, h.dialect)
                    for h in config.custom_hosts
                }
            except (ConfigError, ValueError) as e:
                raise exceptions.OptionsError(str(e)) from None
            self.config = config
            self.registry = Registry(custom=custom)
            self.prices = PriceTable.load({k: v.model_dump(exclude_none=True) for k, v in config.prices.items()})
