"""The script mitmdump loads: `mitmdump -s addons/gateway.py`. It only wires the pipeline's stages
(core/pipeline.py) and builds the addon list."""

from addons.alerts import Alerts
from addons.attribution import Attribution
from addons.auth import Auth
from addons.cache import Cache
from addons.capture import Capture
from addons.console import Console
from addons.dashboard import Dashboard
from addons.evals import Evals
from addons.metrics import Metrics
from addons.router import Router
from addons.router.observability import add_routes
from addons.settings import Settings
from addons.shadow import Shadow
from addons.shared import Shared
from addons.shared_cache import CacheSharing
from addons.sockets import Sockets
from addons.spend import Spend
from addons.store import Store
from addons.telemetry import Telemetry
from addons.trim import Trim
from addons.tunnel import Tunnel
from core.keys import KeyRing
from core.metrics import shared_cache_gauges
from core.recorder import Recorder
from core.stages import standard

settings = Settings()
store = Store()
dashboard = Dashboard()  # tapgate_dashboard: Console hands it each row and stays quiet while it draws
console = Console(dashboard=dashboard)
ring = KeyRing()  # every gateway key, following the store
spend = Spend(settings, store, ring)  # the ring: every key's budgets for the budgets table
shadow = Shadow(settings)  # routing.shadow: hears every recorded call, records its own through the recorder
cache = Cache(settings, store)
metrics = Metrics(store, spend)
telemetry = Telemetry()
metrics.sources.append(telemetry.gauges)  # its backlog and drops on /metrics
metrics.sources.append(shared_cache_gauges(cache))  # the shared cache's Redis hits, misses and errors
recorder = Recorder(settings, store,
                    listeners=[spend.settle, console.show, shadow.offer, metrics.observe, telemetry.submit])
shadow.recorder = recorder
# The stages both doors run, in order (core/stages/__init__.py); each door adds its own send.
stages = standard(settings, ring, spend, cache, recorder)
alerts = Alerts(settings, spend, ring)
capture = Capture(settings, store, stages)
attribution = Attribution()
spend.on_crossing.append(alerts.fire)  # thresholds crossed become alerts, sent off the event loop
router = Router(settings, stages, cache)  # the router's door: its own port
router.mounts.append(lambda app, r: add_routes(app, r, metrics))  # /health/live, /health/ready, /metrics
evals = Evals(settings, store, router)
recorder.listeners.append(evals.scorer.offer)  # the record stage offers both doors' calls to online scoring
recorder.listeners.append(alerts.policy_blocked)  # a block by a guardrail policy with `alert: true`

# Hooks run in this order. Settings first: every other addon reads what it parsed.
# Capture before Auth: its requestheaders makes the Call, so Auth's requestheaders knows an LLM call
# and hands it the credential (and removes X-Tapgate-Key) before Capture's request runs the pipeline.
# The cache after Capture: a leading miss's answer is kept once Capture has recorded it answered.
# Alerts after Spend: at start it re-offers the thresholds Spend's restored ledger has passed.
# The store is last so that its done() (the final flush) runs after every other addon's.
addons = [
    settings,
    Trim(),  # tapgate_trim: fewer mitmproxy addons on every hook of every flow
    Tunnel(settings),
    capture,  # passthrough's door
    # Attribution after Capture (its requestheaders made the call) and before Auth, which would otherwise
    # read `tapgate run`'s tags in the proxy URL as a gateway key.
    attribution,
    Sockets(capture, attribution),  # calls over a WebSocket; before Auth, which keeps a socket's credential
    Auth(settings, ring, stages.identify),  # gateway keys: proxy authentication, X-Tapgate-Key
    cache,
    spend,
    Shared(spend, ring, router),  # tapgate_redis: after Spend, whose ledger and policies it shares
    CacheSharing(cache),  # tapgate_redis_cache*: the response cache in Redis too
    router,
    metrics,  # tapgate_metrics*: the collectors observe() counts into
    telemetry,  # tapgate_otlp_*: spans to an OpenTelemetry collector, built in a worker process it feeds
    alerts,  # budget alerts: Slack, webhook, email; its own thread and store connection
    # Evals before the store: its done() scores what is queued while the store still journals.
    evals,
    shadow,  # before the store: its done() waits for the shadows in flight, whose rows the store then flushes
    console,
    dashboard,
    store,
]
