"""Hypothesis stateful test of the loyalty ledger: earn, return, redeem, use vouchers, sync.

In process (real ledger.db and cache.db files, the lane services, no HTTP) so
Hypothesis can run many sequences. "Sync" plays central: it acks every pending
event and publishes the member's new confirmed balance with the watermark,
exactly as the reference central does. A simple model keeps what each member
should have; after every step the lane must agree with it.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import tempfile
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from posd.core.program import parse_program
from posd.core.rules import Basket, EarnContext, compute_accrual
from posd.lane import Lane
from posd.lane.errors import LaneError
from posd.lane.events import EventBus
from posd.lane.rewards import OfflineLimits, RedemptionInput
from posd.lane.sales import ReturnInput, TransactionInput
from posd.storage.cache import Cache
from posd.storage.ledger import LaneIdentity, Ledger
from posd.storage.outbox import LedgerOutbox
from posd.sync.lane.ports import EventResult
from tests.support.ledger_sql import reader
from tests.test_loyalty_scenarios import PROGRAM, line

MEMBERS = ["m1", "m2"]
SKUS = [("A", 1250, "grocery"), ("B", 333, "grocery"), ("C", 10000, "toys"), ("CIG", 2000, "tobacco"),
        ("COF", 800, "coffee_to_go")]


def run(coro):
    return asyncio.run(coro)


class LoyaltyLedger(RuleBasedStateMachine):
    def __init__(self):
        super().__init__()
        self.dir = Path(tempfile.mkdtemp(prefix="posd-model-"))
        self.ledger = Ledger(self.dir / "ledger.db", LaneIdentity("S001", "L01"))
        self.cache = Cache(self.dir / "cache.db", "L01")
        self.cache.store_program(PROGRAM, "e1")
        self.confirmed = {m: {"points": 3000, "coffee": 0} for m in MEMBERS}
        self.watermark = {m: 0 for m in MEMBERS}
        self.n = 0
        self._publish()
        self.now = datetime(2026, 11, 18, 12, tzinfo=UTC)
        self.lane = Lane(store_id="S001", lane_id="L01", locale="en", ledger=self.ledger, cache=self.cache,
                         bus=EventBus(self.ledger.boot), printer_enabled=False, timezone="Europe/Warsaw",
                         clock=lambda: self.now, offline_limits=OfflineLimits())
        self.expected = {m: {"points": 3000, "coffee": 0} for m in MEMBERS}
        self.sales: dict[str, dict] = {}  # tid -> {"member", "earned", "reversed", "lines"}
        self.vouchers: dict[str, int] = {}  # code -> successful uses

    def teardown(self):
        self.cache.close()
        self.ledger.close()
        shutil.rmtree(self.dir, ignore_errors=True)

    def _publish(self):
        self.cache.apply_member_changes(
            [{"member_id": m, "display_name": m, "tier": "basic", "identifiers": [f"CARD-{m}"],
              "balances": dict(self.confirmed[m]), "applied_seq": {"L01": self.watermark[m]}} for m in MEMBERS],
            str(self.n))

    def _id(self, prefix: str) -> str:
        self.n += 1
        return f"{prefix}-{self.n}"

    def _credit(self, who: str, points: dict[str, int], sign: int = 1):
        for cur, pts in points.items():
            self.expected[who][cur] = self.expected[who].get(cur, 0) + sign * pts

    @rule(who=st.sampled_from(MEMBERS), picks=st.lists(st.tuples(st.integers(0, len(SKUS) - 1), st.integers(1, 3)),
                                                        min_size=1, max_size=4))
    def sale(self, who, picks):
        chosen = dict(picks)  # one line per SKU
        lines = [line(SKUS[i][0], SKUS[i][1], qty, category=SKUS[i][2]) for i, qty in sorted(chosen.items())]
        tid = self._id("T")
        total = sum(ln["quantity"] * ln["unit_price"] for ln in lines)
        tx = TransactionInput(tid, f"CARD-{who}", self.now - timedelta(hours=1), "PLN", total,
                              tuple(_basket_line(ln) for ln in lines), f"h-{tid}")
        answer = run(self.lane.sales.record_sale(tx)).response
        earned = {c: p for c, p in answer["accrual"]["points"].items() if p}
        self._credit(who, earned)
        self.sales[tid] = {"member": who, "earned": earned, "reversed": {}, "lines": {ln["sku"]: ln["quantity"] for ln in lines},
                           "returned": {}}

    @precondition(lambda self: self.sales)
    @rule(data=st.data())
    def partial_return(self, data):
        tid = data.draw(st.sampled_from(sorted(self.sales)))
        sale = self.sales[tid]
        sku = data.draw(st.sampled_from(sorted(sale["lines"])))
        qty = data.draw(st.integers(1, 3))
        ret = ReturnInput(tid, self._id("R"), ((sku, Decimal(qty)),), None, f"h-r-{self.n}")
        left = sale["lines"][sku] - sale["returned"].get(sku, 0)
        try:
            answer = run(self.lane.sales.record_return(ret)).response
        except LaneError as exc:
            assert exc.code == "return_exceeds_sale" and qty > left
            return
        assert qty <= left
        sale["returned"][sku] = sale["returned"].get(sku, 0) + qty
        for cur, pts in answer["reversed"].items():
            sale["reversed"][cur] = sale["reversed"].get(cur, 0) + pts
        self._credit(sale["member"], {c: p for c, p in answer["reversed"].items()}, sign=-1)

    @rule(who=st.sampled_from(MEMBERS), reward=st.sampled_from(["free-coffee", "tenth-coffee"]))
    def redeem(self, who, reward):
        price_cur = "points" if reward == "free-coffee" else "coffee"
        available = self.lane.members.member_view(self.cache.find_member(f"CARD-{who}"))["balances"].get(
            price_cur, {}).get("available", 0)
        req = RedemptionInput(self._id("D"), f"CARD-{who}", reward, None, None, f"h-d-{self.n}")
        try:
            answer = run(self.lane.rewards.redeem(req)).response
        except LaneError as exc:
            assert exc.code in ("insufficient_balance", "reward_limit_reached"), exc.code
            if exc.code == "insufficient_balance":
                assert available < (500 if reward == "free-coffee" else 9)
            return
        self._credit(who, answer["points"])
        self.vouchers[answer["voucher"]["code"]] = 0

    @precondition(lambda self: self.vouchers)
    @rule(data=st.data())
    def use_voucher(self, data):
        code = data.draw(st.sampled_from(sorted(self.vouchers)))
        try:
            run(self.lane.rewards.use(code, self._id("U"), None))
            self.vouchers[code] += 1
        except LaneError as exc:
            assert exc.code == "voucher_used"
            assert self.vouchers[code] == 1

    @rule()
    def sync(self):
        """Central applies everything pending, then publishes balances and watermarks."""
        outbox = LedgerOutbox(self.ledger)
        batch = outbox.pending_batch(1000, 10**7)
        for event in batch:
            body = event.body
            who = body.get("member_id")
            if who in self.confirmed:
                for cur, delta in body["points"].items():
                    self.confirmed[who][cur] = self.confirmed[who].get(cur, 0) + delta
                self.watermark[who] = max(self.watermark[who], event.seq)
        outbox.record_results([EventResult(e.seq, "accepted") for e in batch])
        self._publish()

    @invariant()
    def balances_match_the_model_and_the_ledger(self):
        for who in MEMBERS:
            view = self.lane.members.member_view(self.cache.find_member(f"CARD-{who}"))["balances"]
            for cur, want in self.expected[who].items():
                got = view.get(cur, {"total": 0})
                assert got["total"] == want, (who, cur, got, want)
                # negative only when a return took back points this member had already spent
                spent_then_returned = any(v > 0 for s in self.sales.values() if s["member"] == who
                                          for v in s["reversed"].values())
                assert got["available"] >= 0 or spent_then_returned
            ledger_sum = dict(reader(self.ledger).execute(
                "SELECT currency, SUM(points) FROM ledger_entries WHERE member_id = ? GROUP BY currency", (who,)))
            for cur, want in self.expected[who].items():
                start = 3000 if cur == "points" else 0
                assert ledger_sum.get(cur, 0) == want - start

    @invariant()
    def returns_take_back_exactly_what_the_kept_basket_no_longer_earns(self):
        for tid, sale in self.sales.items():
            for cur, back in sale["reversed"].items():
                assert 0 <= back <= sale["earned"].get(cur, 0)
            if not sale["returned"]:
                continue
            row = self._row(tid)
            kept = tuple(_basket_line({**d, "quantity": d["quantity"]}) for d in json.loads(row["basket"]))
            kept = tuple(ln.__class__(ln.sku, ln.category, ln.quantity - sale["returned"].get(ln.sku, 0),
                                      ln.unit_price, ln.discount) for ln in kept)
            kept = tuple(ln for ln in kept if ln.quantity > 0)
            still = self._replay(row, kept).points
            for cur, earned in sale["earned"].items():
                assert sale["reversed"].get(cur, 0) == max(0, earned - still.get(cur, 0)), (tid, cur)

    @invariant()
    def no_voucher_used_twice(self):
        assert all(uses <= 1 for uses in self.vouchers.values())

    @invariant()
    def replaying_a_sale_gives_the_same_points(self):
        if not self.sales:
            return
        row = self._row(max(self.sales))
        again = self._replay(row, tuple(_basket_line(d) for d in json.loads(row["basket"])))
        assert again.points == json.loads(row["response"])["accrual"]["points"]

    def _row(self, tid: str):
        return reader(self.ledger).execute("SELECT * FROM transactions WHERE transaction_id = ?", (tid,)).fetchone()

    def _replay(self, row, lines):
        program = parse_program(json.loads(reader(self.ledger).execute(
            "SELECT body FROM programs WHERE version = ?", (row["program_version"],)).fetchone()[0]))
        ctx = json.loads(row["earn_context"])
        return compute_accrual(program, Basket("PLN", sum(ln.amount for ln in lines), lines), EarnContext(
            tier_id=ctx["tier_id"], occurred_local=datetime.fromisoformat(ctx["occurred_local"]),
            birthday_bonus_used=ctx["birthday_bonus_used"]))


def _basket_line(d: dict):
    from posd.core.rules import BasketLine

    return BasketLine(d["sku"], d.get("category"), Decimal(str(d["quantity"])), int(d["unit_price"]),
                      int(d.get("discount", 0)))


# deadline off and the speed health check off: CI shares two cores with other test processes
LoyaltyLedger.TestCase.settings = settings(max_examples=20, stateful_step_count=30, deadline=None,
                                           suppress_health_check=[HealthCheck.too_slow])
TestLoyaltyLedger = LoyaltyLedger.TestCase


@pytest.mark.long
class TestLoyaltyLedgerFull(LoyaltyLedger.TestCase):
    settings = settings(max_examples=60, stateful_step_count=30, deadline=None,
                        suppress_health_check=[HealthCheck.too_slow])
