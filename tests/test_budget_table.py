"""The budgets table Spend writes for the dashboards: every budget in force, a key's before its first
call, a row only when a budget's standing changed, and a capless row for one no longer in force."""

from dataclasses import replace
from datetime import UTC, datetime

import pytest
import redis.asyncio as aredis
from known_store import request
from mitmproxy.test import taddons
from services import clear_prefix, redis_server, unique_prefix

from addons.settings import Settings
from addons.spend import Spend
from core.config import Budget, Policy, TapgateConfig
from core.database import iso
from core.keys import GatewayKey
from core.ledger import Amount
from core.schema import open_db
from core.shared.gate import SharedGate
from core.shared.ledger import SharedLedger

DAY = Budget(unit="requests", period="day", cap=5)


class Ring:
    def __init__(self, *keys: GatewayKey) -> None:
        self.list = list(keys)

    def keys(self) -> list[GatewayKey]:
        return self.list


class Rows:
    def __init__(self) -> None:
        self.written: list[dict] = []

    def add(self, table: str, row: dict) -> None:
        assert table == "budgets"
        self.written.append(row)

    def take(self) -> dict[str, dict]:
        out, self.written = {r["id"]: r for r in self.written}, []
        return out


def test_budgets_in_force_are_written_when_they_change_and_retired_when_gone():
    settings = Settings()
    settings.config = TapgateConfig(budgets=[Budget(unit="usd", period="month", cap=100)],
                                    customers={"acme": Policy(budgets=[Budget(unit="usd", period="day", cap=1)])})
    key = GatewayKey(id="key_1", name="a", prefix="tg-x", created_at="", budgets=(DAY,))
    revoked = GatewayKey(id="key_2", name="b", prefix="tg-y", created_at="", budgets=(DAY,), revoked_at="2025")
    ring, rows = Ring(key, revoked), Rows()
    spend = Spend(settings, rows, ring)
    spend._write_snapshot()
    first = rows.take()
    assert set(first) == {"global::usd/month", "key:key_1:requests/day", "customer:acme:usd/day"}  # no call yet
    assert (first["key:key_1:requests/day"]["cap"], first["key:key_1:requests/day"]["spent"]) == (5, 0)

    spend._write_snapshot()
    assert rows.take() == {}  # nothing changed: nothing written

    reservation = spend.ledger.reserve([(("key", "key_1"), DAY)], Amount(0.0, 10, 1))
    spend.ledger.settle(reservation, Amount(0.0, 10, 1))
    ring.list = [replace(key, budgets=(DAY.model_copy(update={"cap": 3}),))]  # keys update
    spend._write_snapshot()
    assert {i: (r["spent"], r["cap"]) for i, r in rows.take().items()} == {"key:key_1:requests/day": (1, 3)}

    ring.list = [replace(key, budgets=(Budget(unit="usd", period="day", cap=2),))]
    spend._write_snapshot()
    changed = rows.take()
    assert changed["key:key_1:usd/day"]["cap"] == 2
    assert changed["key:key_1:requests/day"]["cap"] is None  # retired: the dashboards show capped budgets only
    spend._write_snapshot()
    assert rows.take() == {}  # retired once


class StoreOption:
    """Declares tapgate_db, which Spend reads its restored totals from, without the Store's writer."""

    def load(self, loader) -> None:
        loader.add_option("tapgate_db", str, "", "")


def test_a_restart_restores_spend_and_retires_the_budgets_an_earlier_run_wrote(tmp_path):
    db = open_db(tmp_path / "t.db")
    db["requests"].insert(request(id="a" * 32, started_at=iso(datetime.now(UTC)), key_id="key_1", cost_usd=0.25))
    db["budgets"].insert({"id": "key:key_gone:usd/day", "name": "key key_gone usd/day", "scope": "key",
                          "scope_id": "key_gone", "unit": "usd", "period": "day", "spent": 0.5, "cap": 1.0})
    db.close()
    settings = Settings()
    settings.config = TapgateConfig(budgets=[Budget(unit="usd", period="day", cap=1)])
    rows = Rows()
    spend = Spend(settings, rows, Ring())
    with taddons.context(StoreOption()) as tctx:
        tctx.options.tapgate_db = str(tmp_path / "t.db")
        spend.running()
        spend.done()
    spend._write_snapshot()
    written = rows.take()
    assert written["global::usd/day"]["spent"] == 0.25  # the earlier run's spend counts
    assert written["key:key_gone:usd/day"]["cap"] is None  # no longer in force: retired


def test_a_call_refused_after_admission_gives_its_reservation_back():
    """A stage after admit may still refuse the call (a malformed cache field, a routing rule): what
    admit reserved must not stay held."""

    from core.call import Call
    from core.errors import BadRequest
    from providers import ENDPOINTS
    from providers.base import Route

    settings = Settings()
    settings.config = TapgateConfig(budgets=[DAY])
    spend = Spend(settings, Rows(), Ring())
    call = Call(id="c", trace_id="t", span_id="s", parent_span_id=None, started=0.0, mode="passthrough",
                route=Route(ENDPOINTS["openai"].provider, "chat.completions"), host="h", path="/")
    assert spend.admit(call, None) is None
    assert spend.ledger.standing(("global", ""), DAY)[1] == 1  # one request reserved
    call.refuse(BadRequest("cache_ttl must be above 0"))
    spend.settle(request(id="c", cost_usd=None, input_tokens=None, output_tokens=None), call)
    assert spend.ledger.standing(("global", ""), DAY)[:2] == (0, 0)


@pytest.mark.anyio
async def test_with_shared_budgets_every_process_writes_the_redis_counters():
    url, prefix = redis_server(), unique_prefix()
    settings = Settings()
    settings.config = TapgateConfig(customers={"acme": Policy(budgets=[DAY])})
    processes = []
    try:
        for _ in range(2):
            gate = SharedGate(SharedLedger(aredis.from_url(url), prefix), lambda: {})
            await gate.start()
            spend = Spend(settings, Rows(), Ring())
            spend.shared = gate
            processes.append((spend, spend.store, gate))
        ledger = processes[0][2].ledger
        held = await ledger.admit([(("customer", "acme"), DAY)], [], Amount(0.0, 0, 1))
        await ledger.settle(held, Amount(0.0, 10, 1))  # a call through the first process only
        written = []
        for spend, rows, _ in processes:
            await spend.write_shared_snapshot()
            written.append(rows.take()["customer:acme:requests/day"])
        assert [(w["spent"], w["reserved"], w["cap"]) for w in written] == [(1, 0, 5)] * 2
        assert written[0]["resets_at"] == written[1]["resets_at"]
    finally:
        for spend, _, gate in processes:
            spend.stop()
            await gate.stop()
        clear_prefix(url, prefix)
