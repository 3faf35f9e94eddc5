"""Trim: mitmdump's default addons that have nothing to do under the options given are taken out of
the hook chain, because mitmproxy calls every hook of every flow on each of its ~36 addons."""

from __future__ import annotations

import inspect
import logging
from collections.abc import Callable

from mitmproxy import ctx

log = logging.getLogger(__name__)

# addon name -> "idle under these options". An addon is only removed when its feature is off, so
# every option a user sets keeps working; the ones marked "commands" only serve mitmproxy's
# interactive tools (console, web), which mitmdump does not have.
IDLE_WHEN: dict[str, Callable[[object], bool]] = {
    "anticache": lambda o: not o.anticache,
    "anticomp": lambda o: not o.anticomp,
    "blocklist": lambda o: not o.block_list,
    "browser": lambda o: True,  # commands
    "clientplayback": lambda o: not o.client_replay,
    "commandhistory": lambda o: True,  # commands
    "comment": lambda o: True,  # commands
    "cut": lambda o: True,  # commands
    "export": lambda o: True,  # commands
    "maplocal": lambda o: not o.map_local,
    "mapremote": lambda o: not o.map_remote,
    "modifybody": lambda o: not o.modify_body,
    "modifyheaders": lambda o: not o.modify_headers,
    "readfilestdin": lambda o: not o.rfile,
    "save": lambda o: not o.save_stream_file,
    "savehar": lambda o: not o.hardump,
    "serverplayback": lambda o: not o.server_replay,
    "stickyauth": lambda o: not o.stickyauth,
    "stickycookie": lambda o: not o.stickycookie,
    "upstreamauth": lambda o: not o.upstream_auth,
    # These act in DNS and reverse-proxy modes only.
    "dnsresolver": lambda o: all(m.split(":")[0] in ("regular", "upstream", "socks5") for m in o.mode),
    "stripdnshttpsrecords": lambda o: all(m.split(":")[0] in ("regular", "upstream", "socks5") for m in o.mode),
    "updatealtsvc": lambda o: not any(m.startswith("reverse") for m in o.mode),
}


class Trim:
    def load(self, loader) -> None:
        loader.add_option(
            "tapgate_trim",
            bool,
            True,
            "Take mitmproxy's default addons that have nothing to do under the given options out of the "
            "hook chain (fewer calls per flow). Off keeps every default addon.",
        )

    def running(self) -> None:
        if not ctx.options.tapgate_trim:
            return
        idle = [
            addon
            for name, is_idle in IDLE_WHEN.items()
            if (addon := ctx.master.addons.get(name)) is not None
            and is_idle(ctx.options)
            # remove() runs done() synchronously; an addon with an async done() stays.
            and not inspect.iscoroutinefunction(getattr(addon, "done", None))
        ]
        for addon in idle:
            ctx.master.addons.remove(addon)
        log.info("tapgate: %d idle mitmproxy addons left out of the hook chain (tapgate_trim)", len(idle))
