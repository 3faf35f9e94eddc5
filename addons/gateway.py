"""The script mitmdump loads: `mitmdump -s addons/gateway.py`. It only builds the addon list."""

from addons.alerts import Alerts
from addons.auth import Auth
from addons.cache import Cache
from addons.capture import Capture
from addons.console import Console
from addons.dashboard import Dashboard
from addons.router import Router
from addons.settings import Settings
from addons.spend import Spend
from addons.store import Store
from addons.trim import Trim
from addons.tunnel import Tunnel

settings = Settings()
store = Store()
console = Console()
auth = Auth(settings)
spend = Spend(settings, store, auth.ring)  # the ring: every key's budgets for the budgets table
capture = Capture(settings, store, listeners=[spend.settle, console.show])
cache = Cache(settings, store)
alerts = Alerts(settings, spend)
spend.on_crossing.append(alerts.fire)  # thresholds crossed become alerts, sent off the event loop

# Hooks run in this order. Settings first: every other addon reads what it parsed.
# Auth right after Capture, before Spend. Every addon's requestheaders runs before any addon's
# request, so Auth's requestheaders has put the caller's gateway key (and removed X-Tapgate-Key)
# before Capture's request records the key id; Auth's request then sees the model Capture parsed,
# refuses bad keys and disallowed models through Capture's call (recorded as refused), and does so
# before Spend reserves anything.
# Spend after Capture: it refuses or reserves a call once Capture knows its model, size and tags.
# Alerts after Spend (and Auth): at start it re-offers the thresholds Spend's restored ledger has
# passed (the alerts table ignores those it has), with key budgets from Auth's key ring.
# The store is last so that its done() (the final flush) runs after every other addon's.
addons = [
    settings,
    Trim(),  # tapgate_trim: fewer mitmproxy addons on every hook of every flow
    Tunnel(settings),
    capture,
    auth,  # gateway keys: proxy authentication, X-Tapgate-Key, require_key, allowed models
    # The cache after Auth (a refused call is never served from it; the tenant is the caller's key) and
    # before Spend (a hit costs nothing, so it reserves nothing).
    cache,
    spend,
    # The router serves its own port; it records through Capture's recorder and asks Auth's key ring
    # and Spend, so it comes after them.
    Router(settings, capture.recorder, auth, spend, cache),
    alerts,  # budget alerts: Slack, webhook, email; its own thread and store connection
    console,
    Dashboard(),  # tapgate_dashboard: Console hands it each row and stays quiet while it draws
    store,
]
