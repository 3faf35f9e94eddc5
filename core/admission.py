"""Admission: budgets and rate limits per gateway key, customer and the whole gateway. A call is refused
before any byte goes upstream when it would pass a cap, and settled to what it cost when it ends.
Both doors ask it: the Spend addon for passthrough, the router for routed calls."""

from __future__ import annotations

import asyncio
import fnmatch
import logging
import math
import threading
import time
from collections.abc import Callable
from contextlib import closing
from pathlib import Path
from typing import Any

from core import database
from core.call import Call, iso
from core.config import Budget, Configured, Policy, RateLimit
from core.ledger import LIFETIME, Amount, Crossing, Ledger, OverCap, Reservation, Scope, period_bounds, plural
from core.ratelimit import Window
from core.store import Rows
from providers.base import Usage

log = logging.getLogger(__name__)

PERIODS = ("day", "week", "month", "year", "lifetime")
SNAPSHOT_SECONDS = 2.0
RESTORE_RETRY_SECONDS = 2.0  # an unreachable PostgreSQL at start: how often its spend is asked for again
# Respan's customer_params.budget_duration -> our periods.
DURATIONS = {"daily": "day", "weekly": "week", "monthly": "month", "yearly": "year"}


def customer_params_budgets(params: dict[str, Any]) -> list[Budget]:
    """Budgets a request carries for its customer: period_budget per budget_duration, total_budget."""
    budgets = []
    period = DURATIONS.get(str(params.get("budget_duration", "monthly")).lower(), "month")
    for field, budget_period in (("period_budget", period), ("total_budget", "lifetime")):
        value = params.get(field)
        if isinstance(value, (int, float)) and not isinstance(value, bool) and value > 0:
            budgets.append(Budget(name=f"customer_params.{field}", unit="usd", period=budget_period, cap=value))
    return budgets


def restored_summary(spent: dict[tuple[Scope, str, str], Amount]) -> str | None:
    """One line for the spend read back at start (a line per scope and period was 70 lines after
    ten minutes of use): the gateway's total today, this month and in all, and how many keys and
    customers have spend. None when there is none."""
    totals = {period: amount for (scope, period, _), amount in spent.items() if scope[0] == "global"}
    if not totals.get(LIFETIME, Amount()).requests:
        return None
    parts = [f"{label} ${totals[period].usd:.6f} in {plural(totals[period].requests, 'call')}"
             for period, label in (("day", "today"), ("month", "this month"), (LIFETIME, "in all")) if period in totals]
    scopes = {kind: len({s[1] for (s, period, _) in spent if s[0] == kind and period == LIFETIME})
              for kind in ("key", "customer")}
    return (f"tapgate: restored spend from the store: {', '.join(parts)}; "
            f"{plural(scopes['key'], 'key')} and {plural(scopes['customer'], 'customer')} with spend")


class Admission:
    def __init__(self, settings: Configured, store: Rows, keyring: Any = None) -> None:
        self.settings = settings
        self.store = store
        self.keyring = keyring  # Auth's KeyRing: the budgets of every usable key, called or not
        self.ledger = Ledger()
        self.windows: dict[Scope, Window] = {}
        self.seen: dict[tuple[Scope, str], Budget] = {}  # every budget a call counted against
        self.on_crossing: list[Callable[[Crossing, Any], None]] = []
        self._refused: dict[tuple[Scope, str], str] = {}  # (scope, budget) -> period its refusal alerted in
        self._unpriced: set[str] = set()
        self._snapshot: asyncio.TimerHandle | None = None
        self._snapshot_task: asyncio.Task | None = None  # a shared snapshot reading Redis
        self._written: dict[str, tuple] = {}  # budgets table id -> what was last written for it
        self.shared: Any = None  # core/shared/gate.py's SharedGate when tapgate_redis is set
        self._restoring: threading.Event | None = None  # set to stop retrying an unreachable store

    # -- start: spend comes back from the store --------------------------------------------------

    def start(self, db: str | Path) -> None:
        """The ledger restored from the store's calls; budget snapshots every few seconds from now on."""
        self.ledger = Ledger(self.settings.config.timezone)
        try:
            totals = self._totals_from_store(db)
        except database.StoreError as e:
            if not database.is_postgres(db):
                raise
            # PostgreSQL away at start: serve now, and take its spend in when it answers
            log.warning("tapgate: SPEND NOT RESTORED: %s; budgets count from zero until it answers (retrying)", e)
            self._restore_later(db)
            totals = {}
        self.ledger.load(totals)
        if line := restored_summary(self.ledger.spent):
            log.info(line)
        self._schedule_snapshot()

    def _restore_later(self, db: str) -> None:
        """Retry reading the store's spend off the event loop; merge it in when it answers."""
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return
        stop = self._restoring = threading.Event()

        def retry() -> None:
            while not stop.wait(RESTORE_RETRY_SECONDS):
                try:
                    totals = self._totals_from_store(db)
                except database.read_errors():
                    continue
                loop.call_soon_threadsafe(self._restored_late, totals)
                return

        threading.Thread(target=retry, name="tapgate-spend-restore", daemon=True).start()

    def _restored_late(self, totals: dict[tuple[Scope, str, str], Amount]) -> None:
        """The store's spend, read after calls were counted here: the larger of each figure, as the
        calls this process counted meanwhile reach the store too (neither is counted twice)."""
        for k, stored in totals.items():
            have = self.ledger.spent.get(k)
            self.ledger.spent[k] = stored if have is None else Amount(
                max(have.usd, stored.usd), max(have.tokens, stored.tokens), max(have.requests, stored.requests))
        log.warning("tapgate: spend restored from the store after all (%d counters)", len(totals))

    def _totals_from_store(self, db: str | Path) -> dict[tuple[Scope, str, str], Amount]:
        totals: dict[tuple[Scope, str, str], Amount] = {}
        now = self.ledger.now()
        with closing(database.connect(db)) as conn:
            # budgets an earlier run wrote: the first snapshot retires those no longer in force
            self._written = dict.fromkeys(database.budget_ids(conn), ())
            for period in PERIODS:
                start, _ = period_bounds(period, now)
                label = start.isoformat() if start else "lifetime"
                since = database.iso(start) if start else ""
                for row in database.spend_by_scope(conn, since):
                    amount = Amount(row["usd"] or 0.0, row["tokens"] or 0, row["requests"])
                    scopes: list[Scope] = [("global", "")]
                    if row["key_id"]:
                        scopes.append(("key", row["key_id"]))
                    if row["customer_identifier"]:
                        scopes.append(("customer", row["customer_identifier"]))
                    for scope in scopes:
                        totals.setdefault((scope, period, label), Amount()).add(amount)
        return totals

    # -- a call starts: rate limits, then the worst case reserved ---------------------------------

    def admit(self, call: Call, key, priced: tuple[str, str] | None = None) -> tuple[str, str, dict[str, str] | None] | None:
        """Check rate limits, then reserve the call's worst case in one step (no await between check
        and reserve). None when the call may go on; else (message, code, headers) for a 429. `priced`:
        (price prefix, model) the worst case is priced at, when not the call's own (a router alias)."""
        budgets, limits = self._policies(call, key)
        if not budgets and not limits:
            return None  # nothing to enforce: keep the hot path free
        now = time.monotonic()
        for scope, limit in limits:
            if over := self.windows.setdefault(scope, Window()).check(limit.rpm, limit.tpm, now):
                which, retry_after = over
                message = (
                    f"Rate limit exceeded for {scope[0]} {scope[1]}: {which} per minute "
                    f"({limit.rpm if which == 'requests' else limit.tpm}); retry after {retry_after} s."
                )
                return message, "rate_limit_exceeded", {"retry-after": str(retry_after)}
        result = self.ledger.reserve(budgets, self._worst_case(call, priced))
        if isinstance(result, OverCap):
            self._refusing(result, call)
            return result.message(self._worst_case_text(call)), "budget_exceeded", None
        call.reservation = result
        for scope, budget in budgets:
            self.seen[scope, budget.label] = budget
        for scope, _ in limits:
            self.windows[scope].add_request(now)
        return None

    async def enter(self, call: Call, key, priced: tuple[str, str] | None = None) -> tuple[str, str, dict[str, str] | None] | None:
        """`admit`, against the counters every process shares when tapgate_redis is set (one Redis
        round trip; raises Unavailable when Redis is away and the gateway fails closed)."""
        if self.shared is None:
            return self.admit(call, key, priced)
        from core.shared.ledger import Held, RateLimited

        budgets, limits = self._policies(call, key)
        if not budgets and not limits:
            return None
        result = await self.shared.admit(budgets, limits, self._worst_case(call, priced))
        if isinstance(result, RateLimited):
            limit = result.limit.rpm if result.which == "requests" else result.limit.tpm
            return (f"Rate limit exceeded for {result.scope[0]} {result.scope[1]}: {result.which} per minute "
                    f"({limit}); retry after {result.retry_after} s."), "rate_limit_exceeded", \
                {"retry-after": str(result.retry_after)}
        if isinstance(result, OverCap):
            self._refusing(result, call)
            return result.message(self._worst_case_text(call)), "budget_exceeded", None
        call.reservation = result
        if isinstance(result, Held):
            self.shared.hold(result)
        for scope, budget in budgets:
            self.seen[scope, budget.label] = budget
        return None

    def downgrade(self, call: Call, key, model: str) -> tuple[str, str] | None:
        """(cheaper model, note) when a downgrade rule of the caller's key or customer applies to model:
        some budget of that scope with a cap is at least the rule's share spent (reservations count)."""
        config = self.settings.config
        candidates = []
        if key is not None and key.downgrade:
            candidates.append((("key", key.id), list(key.budgets), key.downgrade))
        if (customer := call.tags.customer_identifier) and (policy := config.customers.get(customer, config.customer_default)):
            if policy.downgrade:
                budgets = list(policy.budgets) + self._declared(call, key)
                candidates.append((("customer", customer), budgets, policy.downgrade))
        now = self.ledger.now()
        for scope, budgets, rules in candidates:
            standing = []
            for b in budgets:
                if b.cap:
                    spent, reserved, _ = self.ledger.standing(scope, b, now)
                    standing.append(((spent + reserved) / b.cap, b.label))
            if not standing:
                continue
            share, label = max(standing)
            for rule in rules:
                if share >= rule.above and fnmatch.fnmatchcase(model, rule.model) and rule.to != model:
                    return rule.to, (f"downgraded {model} to {rule.to}: {scope[0]} {scope[1]} has spent "
                                     f"{share:.0%} of its {label} budget (rule: above {rule.above:.0%})")
        return None

    def _declared(self, call: Call, key) -> list[Budget]:
        """The budgets the call declares for its customer, if config lets its caller declare them."""
        if not call.tags.customer_params:
            return []
        honoured = self.settings.config.customer_params_budgets
        if honoured == "none" or (honoured != "all" and (key is None or not {key.id, key.name} & set(honoured))):
            return []
        return customer_params_budgets(call.tags.customer_params)

    def _refusing(self, refusal: OverCap, call: Call) -> None:
        """A budget that starts refusing calls becomes an alert, once per budget and period. Settled
        spend rarely reaches a cap (reservations keep it under), so its crossing alone would never
        fire; the alert shares the cap crossing's id, so the alerts table keeps only the first."""
        budget = refusal.budget
        if self._refused.get((refusal.scope, budget.label)) == refusal.period_start:
            return
        self._refused[refusal.scope, budget.label] = refusal.period_start
        crossing = Crossing(refusal.scope, budget, budget.cap, refusal.spent, refusal.period_start,
                            refusal.resets_at, refusing=refusal.reserving)
        for fire in self.on_crossing:
            fire(crossing, call)

    def _worst_case_text(self, call: Call) -> str:
        """How the call's reservation was reckoned and how to make it smaller, for a refusal."""
        # The router's clients all cap output with max_tokens; passthrough names the provider's own field.
        field = call.route.provider.max_tokens_field if call.mode == "passthrough" else "max_tokens"
        if call.facts.max_tokens:
            return (f"its input plus the {call.facts.max_tokens} output tokens its {field} allows "
                    f"(a smaller {field} reserves less)")
        return (f"its input plus {self.settings.config.default_max_tokens} output tokens, assumed because it "
                f"sets no {field} (config default_max_tokens); send {field} to reserve less")

    def _policies(self, call: Call, key) -> tuple[list[tuple[Scope, Budget]], list[tuple[Scope, RateLimit]]]:
        config = self.settings.config
        budgets: list[tuple[Scope, Budget]] = [(("global", ""), b) for b in config.budgets]
        limits: list[tuple[Scope, RateLimit]] = []
        if key is not None:
            budgets += [(("key", key.id), b) for b in key.budgets]
            if key.rate_limit.rpm or key.rate_limit.tpm:
                limits.append((("key", key.id), key.rate_limit))
        if customer := call.tags.customer_identifier:
            policy: Policy = config.customers.get(customer, config.customer_default)
            scope = ("customer", customer)
            budgets += [(scope, b) for b in policy.budgets]
            budgets += [(scope, b) for b in self._declared(call, key)]
            if policy.rate_limit.rpm or policy.rate_limit.tpm:
                limits.append((scope, policy.rate_limit))
        return budgets, limits

    def _worst_case(self, call: Call, priced: tuple[str, str] | None = None) -> Amount:
        """Input at two characters a token (fewer than any tokenizer packs) plus every output token the
        call may ask for, at the model's prices."""
        facts = call.facts
        tokens_in = math.ceil(facts.prompt_chars / 2)
        tokens_out = facts.max_tokens or self.settings.config.default_max_tokens
        prefix, model = priced or (call.route.prices_under, facts.model or call.route.path_model)
        usd = None
        if model:
            usd = self.settings.prices.cost(prefix, model, Usage(tokens_in, tokens_out))
            if usd is None and model not in self._unpriced:
                self._unpriced.add(model)
                log.warning("tapgate: no price for %s: USD budgets cannot reserve its calls ahead", model)
        return Amount(usd or 0.0, tokens_in + tokens_out, 1)

    # -- a call ends: settle ---------------------------------------------------------------------

    def release(self, call: Call) -> None:
        """Give a call's reservation back, counting nothing: it was not recorded and cost nothing."""
        if call.reservation is not None:
            if self.shared is not None:
                self.shared.settle(call.reservation, Amount(), call)
            else:
                self.ledger.settle(call.reservation, Amount())

    def settle(self, row: dict[str, Any], call: Call) -> None:
        """A Recorder listener: every recorded call, once. A call refused after it was admitted (a
        malformed cache field, a routing rule, a request a deployment cannot take) gives its
        reservation back: nothing went upstream, so it cost nothing."""
        if call.refused:
            self.release(call)
            return
        tokens = (row["input_tokens"] or 0) + (row["output_tokens"] or 0)
        reservation: Reservation | None = call.reservation
        if reservation is not None and self.shared is not None:  # settled in Redis, off the hot path
            self.shared.settle(reservation, Amount(row["cost_usd"] or 0.0, tokens, 1), call)
        elif reservation is not None:
            for crossing in self.ledger.settle(reservation, Amount(row["cost_usd"] or 0.0, tokens, 1)):
                for fire in self.on_crossing:
                    fire(crossing, call)
        now = time.monotonic()
        key = (("key", row["key_id"]),) if row["key_id"] else ()
        customer = (("customer", row["customer_identifier"]),) if row["customer_identifier"] else ()
        for scope in (*key, *customer):
            if (window := self.windows.get(scope)) is not None:
                window.add_tokens(tokens, now)

    # -- where each budget stands, for `tapgate top` and Datasette -------------------------------

    def _schedule_snapshot(self) -> None:
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return
        self._snapshot = loop.call_later(SNAPSHOT_SECONDS, self._write_snapshot)

    def in_force(self) -> dict[tuple[Scope, str], Budget]:
        """Every budget that applies now, by (scope, label): the config's, every usable key's (from
        the key ring, so a key created or updated shows before its first call), each configured
        customer's and each customer's that has called (with budgets its calls carried)."""
        config = self.settings.config
        budgets = {(("global", ""), b.label): b for b in config.budgets}
        for key in self.keyring.keys() if self.keyring is not None else ():
            if key.problem() is None:
                budgets.update({(("key", key.id), b.label): b for b in key.budgets})
        budgets.update({k: b for k, b in self.seen.items() if k[0][0] == "customer"})
        called = {scope[1] for scope, _, _ in self.ledger.spent if scope[0] == "customer"}
        for customer in sorted(called | set(config.customers)):
            policy = config.customers.get(customer, config.customer_default)
            budgets.update({(("customer", customer), b.label): b for b in policy.budgets})
        return budgets

    def _write_snapshot(self) -> None:
        """Where each budget in force stands, for the dashboards: from the Redis counters when they are
        shared (so every process writes the same rows), else from this process's ledger."""
        if self.shared is not None and self.shared.up:
            self._snapshot_task = asyncio.get_running_loop().create_task(self.write_shared_snapshot())
            return
        self._write_rows(self.in_force(), self.ledger.standing)

    async def write_shared_snapshot(self) -> None:
        budgets, standing = self.in_force(), self.ledger.standing
        try:
            ledger = self.shared.ledger
            counters = {(scope, b.period): ledger.counter(scope, b.period, ledger.now()) for (scope, _), b in budgets.items()}
            found = await asyncio.wait_for(ledger.standings(list(dict.fromkeys(counters.values()))), SNAPSHOT_SECONDS)

            def standing(scope: Scope, budget: Budget, now) -> tuple[float, float, Any]:
                settled, reserved = found[counters[(scope, budget.period)]]
                return settled.of(budget.unit), reserved.of(budget.unit), period_bounds(budget.period, now)[1]
        except Exception as e:  # Redis away: this process's own view until it answers
            log.debug("tapgate: budgets snapshot from this process's ledger: %s", e)
        self._write_rows(budgets, standing)

    def _write_rows(self, budgets: dict[tuple[Scope, str], Budget], standing: Callable) -> None:
        """A row per budget when it changed, and a row with no cap for one no longer in force (a key's
        budget removed, a key revoked)."""
        try:
            now, updated = self.ledger.now(), iso(time.time())
            current = set()
            for (scope, label), budget in budgets.items():
                spent, reserved, resets = standing(scope, budget, now)
                start, _ = period_bounds(budget.period, now)
                row = {
                    "id": f"{scope[0]}:{scope[1]}:{label}",
                    "name": f"{scope[0]} {scope[1]} {label}".replace("  ", " "),
                    "scope": scope[0],
                    "scope_id": scope[1],
                    "unit": budget.unit,
                    "period": budget.period,
                    "period_start": start.isoformat() if start else "lifetime",
                    "resets_at": resets.isoformat() if resets else None,
                    "spent": spent,
                    "reserved": reserved,
                    "cap": budget.cap,
                }
                current.add(row["id"])
                self._write_budget(row, updated)
            for gone in [i for i, last in self._written.items() if i not in current and last != ("retired",)]:
                scope, scope_id, label = gone.split(":", 2)
                self._write_budget({"id": gone, "name": f"{scope} {scope_id} {label}".replace("  ", " "), "scope": scope,
                                    "scope_id": scope_id, "cap": None}, updated, retired=True)
        finally:
            self._schedule_snapshot()

    def _write_budget(self, row: dict[str, Any], updated: str, retired: bool = False) -> None:
        what = ("retired",) if retired else tuple(row.values())
        if self._written.get(row["id"]) != what:
            self._written[row["id"]] = what
            self.store.add("budgets", {**row, "updated_at": updated})

    def stop(self) -> None:
        if self._restoring is not None:
            self._restoring.set()
            self._restoring = None
        if self._snapshot is not None:
            self._snapshot.cancel()
            self._snapshot = None
        if self._snapshot_task is not None:
            self._snapshot_task.cancel()
            self._snapshot_task = None


