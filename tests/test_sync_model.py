"""A stateful model of one lane and central (Hypothesis).

Real parts, in process: ledger.db and cache.db on disk, the lane services,
LedgerOutbox, OutboxRelay.run_once and SyncPuller.run_once, the reference
central over HTTP on 127.0.0.1. Hypothesis interleaves sales (some answers
lost and retried), returns, redemptions, central faults (offline/online),
sync steps, crashes at the sync crash points with a restart, and jumps of the
lane's clock. After every step: central holds a prefix of the lane's outbox,
seq for seq; nothing is acked that central did not answer; nothing is in
central twice; the lane's balance view and central's balances agree with the
ledger; offline redemption caps hold. At the end, healed: they converge.

Crashes here are "the process stopped at this point" (objects dropped and the
files reopened); real SIGKILLs are tests/test_crash_harness.py's job.
"""

from __future__ import annotations

import asyncio
import copy
import json
import shutil
import tempfile
import time
from collections import Counter
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule

from posd.api.errors import STATUS
from posd.core.rules import BasketLine
from posd.lane import Lane
from posd.lane.errors import LaneError
from posd.lane.events import EventBus
from posd.lane.rewards import OfflineLimits, RedemptionInput
from posd.lane.sales import ReturnInput, TransactionInput
from posd.storage.cache import Cache
from posd.storage.ledger import LaneIdentity, Ledger
from posd.storage.outbox import LedgerOutbox
from posd.sync.central.server import CentralServer
from posd.sync.lane.client import CentralClient
from posd.sync.lane.puller import SyncPuller
from posd.sync.lane.relay import OutboxRelay
from posd.sync.protocol import secret_from_text
from tests.support.central_fixture import demo_seed
from tests.support.ledger_sql import reader

SEED = demo_seed()
STORE, LANE = "S001", "L01"
SECRET = secret_from_text(SEED["stores"][STORE]["secret"])
MEMBERS = [m for m in SEED["members"] if m.get("status", "active") == "active"]
REWARDS = [r["id"] for r in SEED["program"].get("rewards", []) if r.get("currency") == "points"]
LIMITS = OfflineLimits(member_points=1000, lane_points=1500, max_hours=24.0)
PUSH_FAULTS = ("500", "503", "429", "401", "reset", "timeout", "slow", "applied_then_lost")


def run(coro):
    return asyncio.run(coro)


class LaneAndCentral(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.dir = Path(tempfile.mkdtemp(prefix="posd-model-"))
        self.central = CentralServer(self.dir / "central.db", copy.deepcopy(SEED)).start()
        self.clock_offset = 0.0
        self.answers: dict[str, dict] = {}  # request id -> the first answer
        self.sales: list[str] = []  # transaction_ids of sales with a member
        self.next_id = 0
        self._open()

    # --- the lane's process: open, crash, reopen ------------------------------------------------

    def _client(self) -> CentralClient:
        return CentralClient(self.central.url, STORE, LANE, SECRET, timeout=(1.0, 0.3),
                             clock=lambda: time.time() + self.clock_offset, identity=self.ledger.sync_identity)

    def _open(self) -> None:
        self.ledger = Ledger(self.dir / "ledger.db", LaneIdentity(STORE, LANE))
        self.cache = Cache(self.dir / "cache.db", LANE)
        self.outbox = LedgerOutbox(self.ledger)
        self.relay = OutboxRelay(self._client(), self.outbox, max_events=3, backoff_base=0.01,
                                 identity=self.ledger.sync_identity)
        self.puller = SyncPuller(self._client(), self.cache)
        self.lane = Lane(store_id=STORE, lane_id=LANE, locale="en", ledger=self.ledger, cache=self.cache,
                         bus=EventBus(self.ledger.boot), printer_enabled=False,
                         is_offline=lambda: self.relay.status()["consecutive_failures"] > 0,
                         offline_limits=LIMITS, last_sync=self._last_sync)

    def _close(self) -> None:
        self.relay._client.close()
        self.puller._client.close()
        self.cache.close()
        self.ledger.close()

    def teardown(self) -> None:
        try:
            self._converge()
        finally:
            self._close()
            self.central.stop()
            shutil.rmtree(self.dir, ignore_errors=True)

    @initialize()
    def first_pull(self) -> None:
        assert self.puller.run_once() == "updated"

    # --- POS traffic ------------------------------------------------------------------------------

    def _id(self, prefix: str) -> str:
        self.next_id += 1
        return f"{prefix}-{self.next_id}"

    def _once(self, key: str, call, lose_answer: bool) -> None:
        """Make a request; when its answer is 'lost', the POS sends it again and must get the same."""
        try:
            first = run(call())
        except LaneError as exc:
            assert 400 <= STATUS[exc.code] < 500 and STATUS[exc.code] != 409, (STATUS[exc.code], exc.code)
            return
        if lose_answer:
            again = run(call())
            assert again.replayed and again.response == first.response
        self.answers[key] = first.response

    def _last_sync(self) -> datetime | None:
        at = self.relay.last_success_at()
        return None if at is None else datetime.fromtimestamp(at, UTC)

    @rule(member=st.sampled_from(MEMBERS), amount=st.integers(0, 60_000), lose_answer=st.booleans())
    def sell(self, member, amount, lose_answer) -> None:
        tid = self._id("T")
        tx = TransactionInput(transaction_id=tid, member=member["identifiers"][0], occurred_at=datetime.now(UTC),
                              currency="PLN", total=amount,
                              lines=(BasketLine(sku="5901234123457", category="grocery", quantity=Decimal(1),
                                                unit_price=amount, discount=0),),
                              request_hash=f"h-{tid}")
        self._once(tid, lambda: self.lane.sales.record_sale(tx), lose_answer)
        if tid in self.answers:
            self.sales.append(tid)

    @rule(data=st.data(), share=st.sampled_from([1, 2, 4]), lose_answer=st.booleans())
    def give_back(self, data, share, lose_answer) -> None:
        if not self.sales:
            return
        tid = data.draw(st.sampled_from(self.sales))
        rid = self._id("R")
        total = reader(self.ledger).execute(
            "SELECT total_minor FROM transactions WHERE transaction_id = ?", (tid,)).fetchone()[0]
        ret = ReturnInput(transaction_id=tid, return_id=rid, lines=None, amount=total // share,
                          request_hash=f"h-{rid}")
        self._once(rid, lambda: self.lane.sales.record_return(ret), lose_answer)

    @rule(member=st.sampled_from(MEMBERS), reward=st.sampled_from(REWARDS or [None]), lose_answer=st.booleans())
    def redeem(self, member, reward, lose_answer) -> None:
        if reward is None:
            return
        rid = self._id("D")
        req = RedemptionInput(redemption_id=rid, member=member["identifiers"][0], reward_id=reward, points=None,
                              transaction_id=None, request_hash=f"h-{rid}")
        self._once(rid, lambda: self.lane.rewards.redeem(req), lose_answer)

    # --- the network, the clock, crashes -------------------------------------------------------------

    @rule(fault=st.sampled_from(PUSH_FAULTS), count=st.integers(1, 4))
    def central_misbehaves(self, fault, count) -> None:
        delay = {"timeout": 0.4, "slow": 0.05}.get(fault)
        self.central.inject("push", fault, count=count, delay=delay)

    @rule(fault=st.sampled_from(("503", "reset", "401")))
    def member_pull_fails(self, fault) -> None:
        self.central.inject("members", fault)

    @rule()
    def central_recovers(self) -> None:
        self.central.faults.clear()

    @rule(offset=st.sampled_from([-3600.0, -400.0, -30.0, 0.0, 30.0, 400.0, 3600.0]))
    def lane_clock_jumps(self, offset) -> None:
        self.clock_offset = offset  # beyond 300 s central answers 401 stale_timestamp

    @rule(steps=st.integers(1, 4))
    def sync_step(self, steps) -> None:
        for _ in range(steps):
            self.relay.run_once()
        self.puller.run_once()

    @rule(where=st.sampled_from(["anywhere", "mid_batch", "after_central_applied_before_ack"]))
    def crash_and_restart(self, where) -> None:
        if where != "anywhere":
            batch = self.outbox.pending_batch(3, 1_000_000)
            if batch and where == "after_central_applied_before_ack":
                try:  # central applies; the process dies before recording the answer
                    self.relay._client.push_batch("crash-batch", [e.body for e in batch])
                except Exception:
                    pass
        self._close()
        self._open()

    # --- invariants ------------------------------------------------------------------------------------

    def _central_events(self) -> list[dict]:
        return self.central.store.events(STORE, LANE)

    def _outbox(self) -> list:
        return reader(self.ledger).execute("SELECT seq, event_id, state, body FROM outbox ORDER BY seq").fetchall()

    @invariant()
    def central_holds_a_prefix_of_the_outbox(self) -> None:
        outbox = {row["seq"]: row for row in self._outbox()}
        events = self._central_events()
        assert [e["seq"] for e in events] == list(range(1, len(events) + 1))
        for e in events:
            assert outbox[e["seq"]]["event_id"] == e["event_id"], "central holds an event the lane never sent"
        assert all(e["status"] == "accepted" for e in events), [e["code"] for e in events]
        central_seqs = {e["seq"] for e in events}
        for seq, row in outbox.items():
            if row["state"] != "pending":
                assert seq in central_seqs, f"seq {seq} is {row['state']} but central never answered it"

    @invariant()
    def every_answered_request_is_in_the_ledger_once(self) -> None:
        conn = reader(self.ledger)
        for table, key in (("transactions", "transaction_id"), ("returns", "return_id"),
                           ("redemptions", "redemption_id")):
            ids = [row[0] for row in conn.execute(f"SELECT {key} FROM {table}")]
            assert len(ids) == len(set(ids))
            assert {k for k in self.answers if k[0] == {"transactions": "T", "returns": "R",
                                                            "redemptions": "D"}[table]} <= set(ids)
        keys = Counter(json.loads(row["body"]).get("event_id") for row in self._outbox())
        assert all(n == 1 for n in keys.values())

    @invariant()
    def balances_agree_with_the_ledger(self) -> None:
        conn = reader(self.ledger)
        applied = {e["seq"] for e in self._central_events()}
        for member in MEMBERS:
            # the demo's tier currency is a qualifying one: the seeded tier points are its opening
            # balance (docs/sync-protocol.md, member wire shape)
            mid, seed = member["member_id"], {**member.get("balances", {}), "qualifying": member.get("qualifying", 0)}
            entries = conn.execute("SELECT currency, points, seq FROM ledger_entries WHERE member_id = ?",
                                   (mid,)).fetchall()
            at_central = self.central.store.member(mid)["balances"]
            cached = self.cache.find_member(mid)
            view = self.lane.members.balances(cached)
            for cur in {"points"} | {r["currency"] for r in entries}:
                ledger_sum = sum(r["points"] for r in entries if r["currency"] == cur)
                central_part = sum(r["points"] for r in entries if r["currency"] == cur and r["seq"] in applied)
                assert at_central.get(cur, 0) == seed.get(cur, 0) + central_part, (mid, cur)
                shown = view.get(cur, {"confirmed": 0, "pending": 0})
                assert shown["confirmed"] + shown["pending"] == seed.get(cur, 0) + ledger_sum, (mid, cur, shown)

    @invariant()
    def offline_redemption_caps_hold(self) -> None:
        rows = reader(self.ledger).execute(
            "SELECT r.member_id, SUM(r.points) FROM redemptions r JOIN outbox o ON o.seq = r.seq "
            "WHERE r.offline = 1 AND o.state = 'pending' GROUP BY r.member_id").fetchall()
        assert all(total <= LIMITS.member_points for _, total in rows)
        assert sum(total for _, total in rows) <= LIMITS.lane_points

    # --- the end: healed, they converge -------------------------------------------------------------------

    def _converge(self) -> None:
        self.central.faults.clear()
        self.clock_offset = 0.0
        for _ in range(200):
            if self.relay.run_once() == "idle":
                break
        assert self.puller.run_once() in ("updated", "unchanged")
        outbox = self._outbox()
        assert all(row["state"] == "acked" for row in outbox)
        assert [(r["seq"], r["event_id"]) for r in outbox] == [(e["seq"], e["event_id"])
                                                                for e in self._central_events()]
        self.balances_agree_with_the_ledger()


TestLaneAndCentral = LaneAndCentral.TestCase
TestLaneAndCentral.settings = settings(max_examples=10, stateful_step_count=30, deadline=None,
                                       suppress_health_check=list(HealthCheck))


@pytest.mark.long
class TestLaneAndCentralFull(LaneAndCentral.TestCase):
    settings = settings(max_examples=30, stateful_step_count=30, deadline=None,
                        suppress_health_check=list(HealthCheck))


@pytest.mark.slow
class TestLaneAndCentralLong(LaneAndCentral.TestCase):
    settings = settings(max_examples=300, stateful_step_count=60, deadline=None,
                        suppress_health_check=list(HealthCheck))
