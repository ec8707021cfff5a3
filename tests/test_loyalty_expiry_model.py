"""Hypothesis stateful test with time: earn, redeem, return, sync, and the clock moving on.

The lane services run in process against real ledger.db / cache.db files; the
central side is the reference central's SQLite store itself (its lots and expiry sweep),
on the same moving clock. Points expire 30 days after they are earned.
Invariants: time alone never raises a balance; once everything is synced, the
lane shows exactly central's balance; central accepts every event the lane
made; the ledger holds exactly what the lane answered.
"""

from __future__ import annotations

import asyncio
import shutil
import tempfile
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from posd.core.rules import BasketLine
from posd.lane import Lane
from posd.lane.errors import LaneError
from posd.lane.events import EventBus
from posd.lane.rewards import OfflineLimits, RedemptionInput
from posd.lane.sales import ReturnInput, TransactionInput
from posd.storage.cache import Cache
from posd.storage.ledger import LaneIdentity, Ledger
from posd.storage.outbox import LedgerOutbox
from posd.sync.central.store_sqlite import SqliteStore
from posd.sync.lane.ports import EventResult
from tests.support.ledger_sql import reader

MEMBERS = ("m1", "m2")
PROGRAM = {
    "version": "expiry-1",
    "currencies": [{"code": "points", "kind": "redeemable", "expiry": {"policy": "rolling_days", "days": 30}}],
    "rules": [{"id": "base", "type": "base_rate", "currency": "points",
               "rates": {"PLN": {"spend_minor": 100, "points": 1}}}],
    "rewards": [{"id": "coffee", "kind": "free_item", "sku": "COF", "currency": "points", "price": 50}],
}


class LoyaltyWithTime(RuleBasedStateMachine):
    def __init__(self):
        super().__init__()
        self.dir = Path(tempfile.mkdtemp(prefix="posd-expiry-"))
        self.now = datetime(2026, 11, 18, 12, tzinfo=UTC)
        self.central = SqliteStore(self.dir / "central.db", clock=lambda: self.now.timestamp())
        self.central.seed({"stores": {"S001": {"secret": "s"}}, "program": PROGRAM, "members": [
            {"member_id": m, "display_name": m, "identifiers": [f"CARD-{m}"], "balances": {"points": 0}}
            for m in MEMBERS]})
        self.ledger = Ledger(self.dir / "ledger.db", LaneIdentity("S001", "L01"))
        self.cache = Cache(self.dir / "cache.db", "L01")
        self.cache.store_program(PROGRAM, "e1")
        self.cursor = "0"
        self._pull()
        self.lane = Lane(store_id="S001", lane_id="L01", locale="en", ledger=self.ledger, cache=self.cache,
                         bus=EventBus(self.ledger.boot), printer_enabled=False, timezone="Europe/Warsaw",
                         clock=lambda: self.now, offline_limits=OfflineLimits())
        self.net = {m: 0 for m in MEMBERS}  # what the lane answered: earned - reversed - redeemed
        self.sales: list[tuple[str, str, int]] = []  # (tid, member, total)
        self.returned: set[str] = set()
        self.debits_since_sync = False  # redemptions/returns may draw other lots than central would
        self.n = 0

    def teardown(self):
        self.cache.close()
        self.ledger.close()
        self.central.close()
        shutil.rmtree(self.dir, ignore_errors=True)

    def _pull(self):
        members, cursor, _ = self.central.member_changes("S001", int(self.cursor), 1000)
        self.cache.apply_member_changes(members, cursor)
        self.cursor = cursor

    def _view(self, who: str) -> dict[str, int]:
        return self.lane.members.member_view(self.cache.find_member(f"CARD-{who}"))["balances"].get(
            "points", {"total": 0, "available": 0})

    @rule(who=st.sampled_from(MEMBERS), amount=st.integers(500, 20000))
    def sale(self, who, amount):
        self.n += 1
        tid = f"T{self.n}"
        tx = TransactionInput(tid, f"CARD-{who}", self.now - timedelta(minutes=1), "PLN", amount,
                              (BasketLine("A", "grocery", Decimal(1), amount, 0),), f"h{tid}")
        answer = asyncio.run(self.lane.sales.record_sale(tx)).response
        self.net[who] += answer["accrual"]["points"]["points"]
        self.sales.append((tid, who, amount))

    @rule(who=st.sampled_from(MEMBERS))
    def redeem(self, who):
        self.n += 1
        available = self._view(who)["available"]
        try:
            answer = asyncio.run(self.lane.rewards.redeem(
                RedemptionInput(f"D{self.n}", f"CARD-{who}", "coffee", None, None, f"hd{self.n}"))).response
        except LaneError as exc:
            assert exc.code == "insufficient_balance" and available < 50
            return
        assert available >= 50
        self.net[who] -= 50
        self.debits_since_sync = True
        assert answer["balance"]["points"]["available"] == available - 50

    @precondition(lambda self: len(self.returned) < len(self.sales))
    @rule(data=st.data())
    def full_return(self, data):
        tid, who, amount = data.draw(st.sampled_from([s for s in self.sales if s[0] not in self.returned]))
        answer = asyncio.run(self.lane.sales.record_return(ReturnInput(tid, f"R{tid}", None, amount, f"hr{tid}")))
        self.returned.add(tid)
        self.net[who] -= answer.response["reversed"].get("points", 0)
        self.debits_since_sync = True

    @rule(days=st.integers(1, 40) | st.just(31))  # often long enough for a lot to expire unsynced
    def time_passes(self, days):
        before = {m: self._view(m) for m in MEMBERS}
        self.now += timedelta(days=days)
        for m in MEMBERS:
            after = self._view(m)
            assert after["total"] <= before[m]["total"], (m, before[m], after)
            assert after["available"] <= before[m]["available"], (m, before[m], after)

    @rule()
    def sync(self):
        # With only sales and time since the last sync, the lane's own expiry of its unsynced
        # lots must agree with what central makes of the same events. Pull first: a confirmed
        # lot that expired at central reaches the lane at its next pull (documented), which is
        # not what this compares.
        self._pull()
        before = None if self.debits_since_sync else {m: self._view(m)["total"] for m in MEMBERS}
        outbox = LedgerOutbox(self.ledger)
        batch = outbox.pending_batch(1000, 10**7)
        if batch:
            answers = self.central.apply_batch("S001", "L01", f"b{self.n}", [e.body for e in batch],
                                               self.now.isoformat())
            assert all(a["status"] == "accepted" for a in answers), answers
            outbox.record_results([EventResult(e.seq, "accepted") for e in batch])
        self._pull()
        for m in MEMBERS:  # nothing pending: the lane shows exactly what central holds
            assert self._view(m)["total"] == self.central.member(m)["balances"].get("points", 0), m
            # also while the member owes points: central repays a debt from new credits before
            # they can expire, and the lane's balance (posd/storage/lots.py) does the same
            if before is not None:
                assert self._view(m)["total"] == before[m], (m, before[m], self._view(m))
        self.debits_since_sync = False

    @invariant()
    def the_ledger_holds_what_the_lane_answered(self):
        for m in MEMBERS:
            got = reader(self.ledger).execute(
                "SELECT COALESCE(SUM(points), 0) FROM ledger_entries WHERE member_id = ?", (m,)).fetchone()[0]
            assert got == self.net[m]


def test_a_lot_that_expires_before_it_syncs_shows_the_same_on_lane_and_central():
    """The sequence the model must always cover: earn, a month unsynced, sync."""
    machine = LoyaltyWithTime()
    try:
        machine.sale("m1", 5000)
        machine.time_passes(31)
        assert machine._view("m1")["expired"] == 50
        machine.sync()  # asserts the lane's view before equals central's after
        assert machine._view("m1")["total"] == 0
    finally:
        machine.teardown()


class _Sale:
    """Stands in for hypothesis' ``data`` in full_return: draws the named sale."""

    def __init__(self, machine: LoyaltyWithTime, tid: str):
        self.sale = next(s for s in machine.sales if s[0] == tid)

    def draw(self, _strategy):
        return self.sale


def test_a_return_of_a_synced_sale_whose_points_expired_leaves_the_live_points_alone():
    """Central takes a return from its sale's own lots first, expired or not. The lane took a synced
    sale's return from central's confirmed (live) points: after returning an old sale whose points
    had expired, the member's total fell by them and a redemption they could pay was refused."""
    machine = LoyaltyWithTime()
    try:
        machine.sale("m1", 5000)  # T1: 50 points
        machine.sync()
        machine.time_passes(31)  # T1's lot expires at central
        machine.sale("m1", 8000)  # T2: 80 points
        machine.sync()
        assert machine._view("m1")["total"] == 80
        machine.full_return(_Sale(machine, "T1"))
        assert (machine._view("m1")["total"], machine._view("m1")["available"]) == (80, 80)
        member = machine.cache.find_member("CARD-m1")
        listed = machine.ledger.view().unsynced_entries("m1", member.applied_seq, machine.now, 100)
        # what central may add for a burn's authorisation: nothing, the return takes back expired points
        assert sum(e["points"].get("points", 0) for e in listed) == 0, listed
        machine.redeem("m1")  # 50 of 80: paid, not refused
        assert machine._view("m1")["total"] == 30
        machine.sync()  # central: the return took T1's expired lot, the redemption T2's
        assert machine.central.member("m1")["balances"]["points"] == 30
    finally:
        machine.teardown()


def test_a_debt_in_the_lanes_own_unsynced_entries_is_repaid_by_the_next_credits_before_they_expire():
    """Offline: a sale, a redemption, the sale returned (a debt of the redeemed points), then a sale
    whose points expire before the sync. Central repays the debt from that credit before it becomes
    a lot that can expire; the lane did so only for a debt central reported, so it counted the
    credit expired as well and showed the debt whole."""
    machine = LoyaltyWithTime()
    try:
        machine.sale("m1", 20000)  # T1: 200 points
        machine.redeem("m1")  # 50
        machine.full_return(_Sale(machine, "T1"))  # 150 from T1's lot, 50 owed
        assert machine._view("m1")["total"] == -50
        machine.sale("m1", 3000)  # T2: 30 points, repay 30 of the 50 owed
        machine.time_passes(31)  # T2's lot expires before the sync
        assert machine._view("m1")["total"] == -20, machine._view("m1")
        machine.sync()  # asserts the lane shows central's balance
        assert machine.central.member("m1")["balances"]["points"] == -20
    finally:
        machine.teardown()


def test_a_return_beyond_its_own_lots_takes_the_rest_from_the_lanes_earlier_unsynced_lots():
    """Offline: two sales, a redemption drawn from the first, the first returned. Central takes what
    the return's own lot no longer holds from the member's live lots (the second sale's), and owes
    only the rest; the lane counted all of it a debt and the second sale's lot as expiring whole."""
    machine = LoyaltyWithTime()
    try:
        machine.sale("m1", 20000)  # T1: 200 points
        machine.sale("m1", 3000)  # T2: 30 points
        machine.redeem("m1")  # 50, from T1's lot
        machine.full_return(_Sale(machine, "T1"))  # 150 from T1's lot; central: 30 from T2's, 20 owed
        assert machine._view("m1")["total"] == -20
        machine.time_passes(31)  # T2's lot, spent by the return at central, expires before the sync
        assert machine._view("m1")["total"] == -20, machine._view("m1")
        machine.sync()  # asserts the lane shows central's balance
        assert machine.central.member("m1")["balances"]["points"] == -20
    finally:
        machine.teardown()


LoyaltyWithTime.TestCase.settings = settings(max_examples=20, stateful_step_count=30, deadline=None,
                                             suppress_health_check=[HealthCheck.too_slow])
TestLoyaltyWithTime = LoyaltyWithTime.TestCase


@pytest.mark.long
class TestLoyaltyWithTimeFull(LoyaltyWithTime.TestCase):
    settings = settings(max_examples=60, stateful_step_count=30, deadline=None,
                        suppress_health_check=[HealthCheck.too_slow])
