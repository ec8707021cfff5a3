"""Crash harness: a real posd under POS traffic, SIGKILLed again and again.

A run is a sequence of episodes. Each episode starts the daemon (maybe with a
named crash point armed through POSD_CRASH_AT), sends sales as a POS would,
and ends with the daemon dead: killed by the harness at a random moment, or
killed by itself at the crash point. A sale whose request failed is sent again,
with the same transaction_id and body, after the restart, until it gets a 200
(as a real POS does). At the end the lane drains to central and ``verify``
compares the POS's answers, ledger.db and central's events.

    report = CrashRun(tmp_path, central, transactions=1000, kills=20).run()
    assert report.lost == report.duplicated == 0
"""

from __future__ import annotations

import json
import random
import signal
import sqlite3
import threading
import time
from collections import Counter
from datetime import UTC, datetime
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import requests

from posd.faults import KNOWN as KNOWN_CRASH_POINTS
from posd.sync.central.server import CentralServer
from tests.support.lane import LaneProcess, free_port, lane_config

STORE_ID, LANE_ID = "S001", "L01"
# Every named crash point the daemon has, but the printer's (these runs print nothing) and the burns'
# (these runs only sell; tests/test_chain.py kills a lane there and proves nothing stays reserved).
NAMED_POINTS = tuple(p for p in KNOWN_CRASH_POINTS
                     if p not in ("before_print_send_commit", "after_print_send_commit", "after_print_before_mark",
                                  "after_authorised_before_commit"))
# Each episode ends one way; cycling keeps every way represented in a short run.
MODES = ("random", *NAMED_POINTS, "random_boot")


class CrashLane(LaneProcess):
    """LaneProcess whose start arms a crash point and tolerates dying while starting."""

    def start(self, timeout: float = 60.0, crash_at: str | None = None) -> bool:  # type: ignore[override]
        """Spawn; True once healthy, False if it died first (a crash point fired at boot)."""
        self.spawn(POSD_LOG_LEVEL="warning", **({"POSD_CRASH_AT": crash_at} if crash_at else {}))
        return self.wait_healthy(timeout, sigkill_ok=True)

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def sigkill(self) -> bool:
        """SIGKILL now; False if it was already dead."""
        if not self.alive():
            return False
        try:
            self.proc.send_signal(signal.SIGKILL)
        except ProcessLookupError:
            return False
        return True

    def reap(self) -> int:
        """Wait for the (killed) process; its return code."""
        code = self.proc.wait(30)
        self._ended()
        return code


@dataclass
class CrashReport:
    transactions: int = 0
    kills: int = 0
    kills_by_way: Counter = field(default_factory=Counter)
    named_fired: Counter = field(default_factory=Counter)
    pos_retries: int = 0
    outbox_events: int = 0
    central_events: int = 0
    lost: int = 0
    duplicated: int = 0
    problems: list[str] = field(default_factory=list)

    def summary(self) -> dict[str, Any]:
        return {"transactions": self.transactions, "kills": self.kills, "kills_by_way": dict(self.kills_by_way),
                "named_fired": dict(self.named_fired), "pos_retries": self.pos_retries,
                "outbox_events": self.outbox_events, "central_events": self.central_events,
                "lost": self.lost, "duplicated": self.duplicated, "problems": self.problems[:20]}


class CrashRun:
    """One crash-harness run against an in-process reference central."""

    def __init__(self, work: Path, central: CentralServer, seed: dict[str, Any], *, transactions: int,
                 kills: int, rng_seed: int = 0) -> None:
        self.central, self.seed = central, seed
        self.transactions, self.kills = transactions, max(1, kills)
        self.rng = random.Random(rng_seed)
        port = free_port()
        cfg = lane_config(work, central_url=central.url, secret=seed["stores"][STORE_ID]["secret"],
                          printer="none", port=port)
        self.lane = CrashLane(cfg, port)
        self._started = datetime.now(UTC).isoformat()  # a POS must not send sales from the future
        self.members = [m for m in seed["members"] if m.get("status", "active") == "active"]
        self.sales = [self._sale(i) for i in range(transactions)]
        self.answers: dict[str, dict[str, Any]] = {}
        self.report = CrashReport()
        self._boot_killer: threading.Timer | None = None
        self._latency = 0.004  # running mean seconds per sale, sizes the random-kill window

    def _sale(self, i: int) -> dict[str, Any]:
        member = self.rng.choice(self.members)["identifiers"][0] if self.rng.random() < 0.9 else None
        price = self.rng.randint(1, 40_000)
        return {"transaction_id": f"T-{i:06d}", "member": member, "occurred_at": "2026-11-20T10:15:00+01:00",
                "currency": "PLN", "total": price,
                "lines": [{"sku": f"59{i % 97:04d}", "category": "grocery", "quantity": 1, "unit_price": price}]}

    # --- the run ------------------------------------------------------------------------------

    def run(self) -> CrashReport:
        if not self.lane.start():
            raise RuntimeError("posd died on its first start")
        self.lane.wait_synced(timeout=60)
        self._session = requests.Session()
        next_sale, quota = 0, -(-self.transactions // self.kills)
        for episode in range(self.kills):
            way = MODES[episode % len(MODES)]
            if episode > 0 and not self._start_episode(way):
                self._count_death(way, by_harness=False)
                continue
            next_sale = self._episode(way, next_sale, quota)
        self.lane.start()
        self._send_rest(next_sale)
        self.lane.wait_drained(timeout=180)
        self._wait_members_current()
        self.lane.stop()
        self._session.close()
        self.report.transactions = len(self.answers)
        verify(self, self.report)
        return self.report

    def _start_episode(self, way: str) -> bool:
        crash_at = None
        if way in NAMED_POINTS:
            nth = self.rng.randint(1, 3 if way != "after_commit_before_answer" else 20)
            crash_at = f"{way}@{nth}"
        if way == "random_boot":
            # Die somewhere in start-up: migrations, the backlog's first push, the first pull.
            self._boot_killer = threading.Timer(self.rng.uniform(0.0, 0.6), self.lane.sigkill)
            self._boot_killer.start()
        return self.lane.start(crash_at=crash_at)

    def _episode(self, way: str, next_sale: int, quota: int) -> int:
        """Sell until the daemon dies or the quota is sent; make sure it is dead at the end."""
        killer, fired = None, []
        if way == "random":
            window = quota * self._latency * 1.2
            killer = threading.Timer(self.rng.uniform(0.0, window), lambda: fired.append(self.lane.sigkill()))
            killer.start()
        sent = 0
        while next_sale < len(self.sales) and sent < quota and self.lane.alive():
            if self._sell(self.sales[next_sale]):
                next_sale, sent = next_sale + 1, sent + 1
        if way in NAMED_POINTS[1:]:
            # Give the relay's crash point its chance on the sales just made.
            deadline = time.monotonic() + 3.0
            while self.lane.alive() and time.monotonic() < deadline:
                time.sleep(0.01)
        for timer in (killer, self._boot_killer):
            if timer is not None:
                timer.cancel()
        self._boot_killer = None
        by_harness = self.lane.sigkill()
        self.lane.reap()
        if way == "random" and not any(fired):
            way = "end_of_episode"  # the sales ran out before the timer: killed idle or mid-push
        self._count_death(way, by_harness)
        return next_sale

    def _count_death(self, way: str, by_harness: bool) -> None:
        self.report.kills += 1
        fired = way in NAMED_POINTS and not by_harness
        self.report.kills_by_way[way if fired or way not in NAMED_POINTS else "random"] += 1
        if fired:
            self.report.named_fired[way] += 1

    def _sell(self, sale: dict[str, Any]) -> bool:
        """One POST; True on a 200 (answer kept), False when the daemon is gone (retry later)."""
        tid = sale["transaction_id"]
        for _ in range(50):
            t0 = time.monotonic()
            try:
                resp = self._session.post(self.lane.base + "/v1/transactions", json=sale, timeout=15,
                                          headers=self.lane.headers())
            except requests.RequestException:
                resp = None
            if resp is not None and resp.status_code == 200:
                self._latency = 0.9 * self._latency + 0.1 * (time.monotonic() - t0)
                self._keep(tid, resp.json())
                return True
            if resp is not None and resp.status_code < 500:
                raise AssertionError(f"{tid}: HTTP {resp.status_code} {resp.text[:300]}")
            self.report.pos_retries += 1
            if not self.lane.alive():
                return False
            time.sleep(0.05)  # alive but failing: a POS waits a moment and retries
        raise AssertionError(f"{tid}: no answer after 50 tries")

    def _keep(self, tid: str, answer: dict[str, Any]) -> None:
        earlier = self.answers.get(tid)
        if earlier is not None and earlier != answer:
            self.report.problems.append(f"{tid}: a retry got a different answer")
        self.answers.setdefault(tid, answer)

    def _send_rest(self, next_sale: int) -> None:
        for sale in self.sales[next_sale:]:
            if not self._sell(sale):
                raise AssertionError("posd died without being killed")

    def _wait_members_current(self) -> None:
        """Until the lane's cache has pulled central's balances after the last push."""
        def current() -> bool:
            for member in self.members:
                mine = self.lane.get(f"/v1/members/{member['identifiers'][0]}").json()
                if any(b["pending"] for b in mine["balances"].values()):
                    return False
            return True

        self.lane.wait_for(current, timeout=60, what="member balances confirmed by central")


# --- verification ------------------------------------------------------------------------------


def ledger_rows(state: Path) -> tuple[list[sqlite3.Row], list[sqlite3.Row], list[sqlite3.Row], str]:
    """(outbox, transactions, ledger_entries, integrity_check) of a stopped lane's ledger.db."""
    conn = sqlite3.connect(f"file:{state / 'ledger.db'}?mode=ro", uri=True)
    conn.row_factory = sqlite3.Row
    try:
        integrity = conn.execute("PRAGMA integrity_check").fetchone()[0]
        outbox = conn.execute("SELECT seq, event_id, state, body FROM outbox ORDER BY seq").fetchall()
        txns = conn.execute("SELECT transaction_id, seq, response FROM transactions").fetchall()
        entries = conn.execute("SELECT member_id, currency, points, transaction_id FROM ledger_entries").fetchall()
    finally:
        conn.close()
    return outbox, txns, entries, integrity


def verify(run: CrashRun, report: CrashReport) -> None:
    """Compare the POS's answers, ledger.db and central; count what is lost or duplicated."""
    outbox, txns, entries, integrity = ledger_rows(run.lane.state)
    central = run.central.store.events(STORE_ID, LANE_ID)
    report.outbox_events, report.central_events = len(outbox), len(central)
    problems = report.problems
    if integrity != "ok":
        problems.append(f"integrity_check: {integrity}")

    # The POS's view: every sale it was answered for is in the ledger once, with that answer.
    recorded = {row["transaction_id"]: row for row in txns}
    for tid, answer in run.answers.items():
        row = recorded.get(tid)
        if row is None:
            report.lost += 1
            problems.append(f"{tid}: answered 200 but not in the ledger")
        elif json.loads(row["response"]) != answer:
            problems.append(f"{tid}: the ledger's answer differs from the one the POS got")
    extra = set(recorded) - set(run.answers)
    report.duplicated += len(extra)
    problems.extend(f"{tid}: in the ledger but never sold" for tid in sorted(extra)[:5])

    # The lane's outbox: gap-free seqs, one event per sale with a member, all delivered.
    if [row["seq"] for row in outbox] != list(range(1, len(outbox) + 1)):
        problems.append("outbox seqs are not 1..N")
    per_tid = Counter(json.loads(row["body"]).get("transaction_id") for row in outbox)
    report.duplicated += sum(n - 1 for n in per_tid.values() if n > 1)
    with_member = {tid for tid, a in run.answers.items() if a.get("member_id")}
    report.lost += len(with_member - set(per_tid))
    problems.extend(f"seq {row['seq']}: {row['state']}" for row in outbox if row["state"] != "acked")

    # Central: exactly the outbox, seq for seq, event_id for event_id, every one accepted.
    lane_events = [(row["seq"], row["event_id"]) for row in outbox]
    central_events = [(e["seq"], e["event_id"]) for e in central]
    if central_events != lane_events:
        missing = set(lane_events) - set(central_events)
        report.lost += len(missing)
        problems.append(f"central differs from the outbox: {len(missing)} missing, "
                        f"{len(set(central_events) - set(lane_events))} unknown")
    central_tids = Counter(e["transaction_id"] for e in central if e["status"] == "accepted")
    report.duplicated += sum(n - 1 for n in central_tids.values() if n > 1)
    problems.extend(f"central seq {e['seq']}: {e['status']} {e['code']}" for e in central
                    if e["status"] != "accepted")
    _check_balances(run, entries, problems)


def _check_balances(run: CrashRun, entries: list[sqlite3.Row], problems: list[str]) -> None:
    """Central's balance = seed + the ledger's entries, per member and currency."""
    earned: Counter = Counter()
    for row in entries:
        earned[(row["member_id"], row["currency"])] += row["points"]
    program = run.seed.get("program") or {}
    tier = program.get("tier_currency")
    tier_points = tier if any(c.get("code") == tier and c.get("kind") == "qualifying"
                              for c in program.get("currencies", [])) else None
    for member in run.members:
        mid = member["member_id"]
        seeded = dict(member.get("balances", {}))
        if tier_points is not None and "qualifying" in member:
            seeded[tier_points] = member["qualifying"]  # seeded tier points open that balance (sync-protocol.md)
        at_central = run.central.store.member(mid)["balances"]
        for currency in set(at_central) | {c for m, c in earned if m == mid}:
            want = seeded.get(currency, 0) + earned[(mid, currency)]
            if at_central.get(currency, 0) != want:
                problems.append(f"{mid} {currency}: central has {at_central.get(currency, 0)}, ledger says {want}")
