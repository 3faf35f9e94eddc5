"""The script mitmdump loads: `mitmdump -s addons/gateway.py`. It only builds the addon list."""

from addons.capture import Capture
from addons.console import Console
from addons.settings import Settings
from addons.store import Store
from addons.tunnel import Tunnel

settings = Settings()
store = Store()
console = Console()

# Hooks run in this order. Settings first: every other addon reads what it parsed.
# The store is last so that its done() (the final flush) runs after every other addon's.
addons = [
    settings,
    Tunnel(settings),
    Capture(settings, store, show=console.show),
    console,
    store,
]
