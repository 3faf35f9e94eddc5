"""The script mitmdump loads: `mitmdump -s addons/gateway.py`. It only builds the addon list."""

from addons.capture import Capture
from addons.console import Console
from addons.dashboard import Dashboard
from addons.settings import Settings
from addons.spend import Spend
from addons.store import Store
from addons.trim import Trim
from addons.tunnel import Tunnel

settings = Settings()
store = Store()
console = Console()
spend = Spend(settings, store)

# Hooks run in this order. Settings first: every other addon reads what it parsed.
# Spend after Capture: it refuses or reserves a call once Capture knows its model, size and tags.
# The store is last so that its done() (the final flush) runs after every other addon's.
addons = [
    settings,
    Trim(),  # tapgate_trim: fewer mitmproxy addons on every hook of every flow
    Tunnel(settings),
    Capture(settings, store, listeners=[spend.settle, console.show]),
    spend,
    console,
    Dashboard(),  # tapgate_dashboard: Console hands it each row and stays quiet while it draws
    store,
]
