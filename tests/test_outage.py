"""Central misbehaving, then recovering: the real relay, a real ledger.db, the real central.

Each fault the reference central can act out goes through OutboxRelay ->
CentralClient -> HTTP -> central -> SQLite and back into ledger.db; after
recovery central holds every event once and the lane's outbox is all acked.
The last tests run the daemon itself: quarantine and clock skew in health and
metrics, and a central that is down for a while and comes back on its port.
"""

from __future__ import annotations

import http.server
import json
import logging
import random
import subprocess
import sys
import threading
from datetime import UTC, datetime
from pathlib import Path

import pytest

from posd.storage.ledger import LaneIdentity, Ledger
from posd.storage.outbox import LedgerOutbox
from posd.sync.central.faults import FAULTS
from posd.sync.central.server import CentralServer
from posd.sync.lane.client import CentralClient
from posd.sync.lane.puller import SyncPuller
from posd.sync.lane.relay import OutboxRelay
from tests.support.central_fixture import (
    LANE_ID,
    STORE_ID,
    SECRET,
    MemoryCache,
    default_seed,
    demo_seed,
    make_client,
    running_central,
)
from tests.support.crash import CrashLane
from tests.support.lane import LaneProcess, free_port, lane_config, launch_lane
from tests.support.ledger_sql import reader

DEMO_SEED = demo_seed()


pytestmark = pytest.mark.fault  # every central fault through the real relay: CI's fault slice (make test-faults)

@pytest.fixture
def ledger(tmp_path):
    ledger = Ledger(tmp_path / "ledger.db", LaneIdentity(STORE_ID, LANE_ID))
    yield ledger
    ledger.close()


def add_accruals(ledger: Ledger, n: int, member: str = "M0001", points: int = 10) -> None:
    def write(tx):
        for _ in range(n):
            tx.append_event("accrual", {
                "transaction_id": f"T-{random.getrandbits(48):x}", "member_id": member,
                "occurred_at": "2026-11-24T09:15:00Z", "points": {"points": points},
                "program_version": "test-1", "offline": False})

    ledger.write(write)


def add_and_send(central, path: Path, n: int) -> None:
    """The lane's ledger at ``path`` opened, ``n`` accruals added, everything pending sent, closed."""
    ledger = Ledger(path, LaneIdentity(STORE_ID, LANE_ID))
    add_accruals(ledger, n)
    with ledger_client(central, ledger) as client:
        drive(ledger_relay(client, ledger), ledger)
    ledger.close()


def outbox_rows(ledger: Ledger) -> list:
    return reader(ledger).execute("SELECT seq, event_id, state FROM outbox ORDER BY seq").fetchall()


def ledger_client(central, ledger: Ledger, **kwargs):
    """A central client that sends under the ledger's sync identity, as the daemon's do."""
    return make_client(central, identity=ledger.sync_identity, **kwargs)


def ledger_relay(client, ledger: Ledger, **kwargs) -> OutboxRelay:
    return OutboxRelay(client, LedgerOutbox(ledger), identity=ledger.sync_identity, **kwargs)


def drive(relay: OutboxRelay, ledger: Ledger, limit: int = 60) -> list[str]:
    """run_once until the outbox is empty and the relay idle; the outcomes seen."""
    outcomes = []
    for _ in range(limit):
        outcomes.append(relay.run_once())
        if outcomes[-1] == "idle":
            return outcomes
    raise AssertionError(f"not drained after {limit} steps: {outcomes[-10:]}")


def assert_delivered_once(central, ledger: Ledger, points_each: int = 10) -> None:
    rows = outbox_rows(ledger)
    events = central.store.events(STORE_ID, LANE_ID)
    assert [r["state"] for r in rows] == ["acked"] * len(rows)
    assert [(e["seq"], e["event_id"], e["status"]) for e in events] == [
        (r["seq"], r["event_id"], "accepted") for r in rows]
    assert central.store.member("M0001")["balances"] == {"points": 1840 + points_each * len(rows)}


@pytest.mark.parametrize("fault", FAULTS)
def test_each_push_fault_then_recovery_loses_and_duplicates_nothing(tmp_path, ledger, fault, caplog):
    with running_central(tmp_path / "central") as central:
        client = ledger_client(central, ledger, timeout=(1.0, 0.5))
        relay = ledger_relay(client, ledger, max_events=3, backoff_base=0.01)
        add_accruals(ledger, 4)
        assert relay.run_once() == "sent"  # seqs 1-3
        central.inject("push", fault, count=2, delay={"timeout": 1.0, "slow": 0.1}.get(fault))
        add_accruals(ledger, 5)
        with caplog.at_level(logging.WARNING, logger="posd.sync.relay"):
            first = relay.run_once()
        expected = {"slow": "sent", "401": "auth_failed"}.get(fault, "backoff")
        assert first == expected
        if fault == "401":
            status = relay.status()
            assert status["state"] == "auth_failed" and "401" in status["last_error"]
            assert status["central_answered"] is True  # central refused: not silence
            assert [r for r in caplog.records if getattr(r, "alert", False)], "401 must raise an alert"
        add_accruals(ledger, 2)
        drive(relay, ledger)
        client.close()
        assert_delivered_once(central, ledger)
        assert relay.status()["consecutive_failures"] == 0


@pytest.mark.parametrize("fault", [f for f in FAULTS if f not in ("slow",)])
def test_each_member_pull_fault_keeps_the_cursor_and_recovers(tmp_path, fault):
    with running_central(tmp_path / "central") as central:
        cache = MemoryCache()
        with make_client(central, timeout=(1.0, 0.5)) as client:
            puller = SyncPuller(client, cache, page_limit=2)
            assert puller.run_once() == "updated"
            cursor = cache.cursor
            central.store.upsert_member({"member_id": "M0042", "display_name": "New"})
            central.inject("members", fault, delay=1.0 if fault == "timeout" else None)
            assert puller.run_once() in ("backoff", "auth_failed")
            assert cache.cursor == cursor and "M0042" not in cache.members
            assert puller.run_once() == "updated" and "M0042" in cache.members


def test_a_long_outage_queues_then_drains_in_order(tmp_path, ledger):
    """Central is gone (its port closed) for a while, then comes back on the same port and db."""
    with running_central(tmp_path / "central") as central:
        port, db = central.port, central.store.path
        client = ledger_client(central, ledger, timeout=(0.5, 0.5))
    relay = ledger_relay(client, ledger, max_events=50, backoff_base=0.01)
    for _ in range(5):
        add_accruals(ledger, 40)
        assert relay.run_once() == "backoff"
    assert relay.status()["consecutive_failures"] == 5 and "unreachable" in relay.status()["last_error"]
    central = CentralServer(db, default_seed(), port=port).start()
    try:
        drive(relay, ledger)
        client.close()
        assert_delivered_once(central, ledger)
    finally:
        central.stop()


# --- the daemon: health, metrics, clock skew ----------------------------------------------------------


def sale(tid: str, member: str) -> dict:
    return {"transaction_id": tid, "member": member, "occurred_at": datetime.now(UTC).isoformat(),
            "currency": "PLN", "total": 5000,
            "lines": [{"sku": "5901234123457", "category": "grocery", "quantity": 1, "unit_price": 5000}]}


def archive_ledger(lane: LaneProcess, aside) -> None:
    """Stop the lane, move its ledger.db* aside (docs/install.md, archiving), start it again."""
    lane.stop()
    aside.mkdir()
    for made in lane.state.glob("ledger.db*"):
        made.rename(aside / made.name)
    lane.start(timeout=30)


def test_a_rejected_event_is_quarantined_shown_in_health_and_metrics_and_does_not_block(tmp_path):
    with running_central(tmp_path / "central", DEMO_SEED) as central:
        lane = launch_lane(tmp_path / "lane", central)
        try:
            # The lane can't refresh members, so it still sells to a member central has erased.
            central.inject("members", "503", count=10_000)
            central.store.upsert_member({**DEMO_SEED["members"][1], "status": "deleted"})
            assert lane.post("/v1/transactions", sale("T-q1", "2900000000025")).status_code == 200
            assert lane.post("/v1/transactions", sale("T-q2", "2900000000018")).status_code == 200
            lane.wait_drained()
            health = lane.health()
            assert health["sync"]["quarantined"] == 1 and health["status"] in ("degraded", "error")
            assert "posd_outbox_quarantined 1" in lane.get("/metrics").text
            events = central.store.events("S001", "L01")
            assert [(e["transaction_id"], e["status"], e["code"]) for e in events] == [
                ("T-q1", "rejected", "member_deleted"), ("T-q2", "accepted", None)]
            # what and why, for store IT: in health (the newest) and `posd ledger quarantine` (all)
            (shown,) = health["sync"]["quarantined_recent"]
            assert (shown["type"], shown["code"], shown["ref"]) == ("accrual", "member_deleted", "T-q1"), shown
            listed = subprocess.run([sys.executable, "-m", "posd", "ledger", "quarantine", "--json", "--config",
                                     str(lane.config)], capture_output=True, text=True, timeout=60, check=True)
            assert json.loads(listed.stdout) == [shown]
            table = subprocess.run([sys.executable, "-m", "posd", "ledger", "quarantine", "--config",
                                    str(lane.config)], capture_output=True, text=True, timeout=60, check=True)
            assert "member_deleted" in table.stdout and "T-q1" in table.stdout
            # The member desk dealt with it: store IT says so, and health stops warning (it stayed
            # degraded for good: nothing but archiving ledger.db cleared it). A new refusal warns again.
            quarantine = [sys.executable, "-m", "posd", "ledger", "quarantine", "--acknowledge", "--config",
                          str(lane.config)]

            def doctor_warns() -> bool:
                run = subprocess.run([sys.executable, "-m", "posd", "doctor", "--json", "--no-central", "--config",
                                      str(lane.config)], capture_output=True, text=True, timeout=120)
                return any(c["check"] == "sync.quarantined" for c in json.loads(run.stdout)["checks"])

            assert doctor_warns()
            done = subprocess.run(quarantine, capture_output=True, text=True, timeout=60, check=True)
            assert done.stdout.startswith("acknowledged 1 quarantined event(s), up to seq "), done.stdout
            health = lane.health()
            assert "quarantined" not in {i["code"] for i in health["issues"]}, health["issues"]
            assert (health["sync"]["quarantined"], health["sync"]["quarantined_acknowledged"]) == (1, 1)
            assert not doctor_warns()
            again = subprocess.run(quarantine, capture_output=True, text=True, timeout=60, check=True)
            assert again.stdout.startswith("every quarantined event is acknowledged already"), again.stdout
            # --json with --acknowledge printed that prose, which a script's JSON reader fails on
            scripted = subprocess.run([*quarantine, "--json"], capture_output=True, text=True, timeout=60, check=True)
            assert json.loads(scripted.stdout) == {"acknowledged": 0, "up_to_seq": shown["seq"]}, scripted.stdout
            assert lane.post("/v1/transactions", sale("T-q3", "2900000000025")).status_code == 200
            lane.wait_drained()
            health = lane.health()
            (warned,) = [i for i in health["issues"] if i["code"] == "quarantined"]
            assert warned["values"]["count"] == 1 and health["sync"]["quarantined"] == 2, health
            # ledger.db archived (moved aside, as docs/install.md says; the acknowledgement stays behind): a
            # refusal in the new ledger's seqs that the old acknowledgement would cover still warns
            subprocess.run(quarantine, capture_output=True, text=True, timeout=60, check=True)
            archive_ledger(lane, tmp_path / "aside")
            assert lane.post("/v1/transactions", sale("T-q4", "2900000000025")).status_code == 200
            lane.wait_drained()
            health = lane.health()
            (warned,) = [i for i in health["issues"] if i["code"] == "quarantined"]
            assert warned["values"]["count"] == 1 and health["sync"]["quarantined_acknowledged"] == 0, health
            assert doctor_warns()
        finally:
            lane.stop()


def test_a_pos_retry_after_the_ledger_was_replaced_is_counted_once_at_central(tmp_path):
    """ledger.db moved aside (archived, or lost with central holding everything): the lane starts its new
    history as L01.2. A POS still retrying a sale and a redemption the old ledger had answered gets them
    recorded at the lane again (it cannot know), but central counts each once: the sale is quarantined
    (counted_by_earlier_identity), the redemption refused at once (409 redemption_id_conflict)."""
    with running_central(tmp_path / "central", DEMO_SEED) as central:
        lane = launch_lane(tmp_path / "lane", central)
        try:
            body = sale("T-old-1", "2900000000018")
            first = lane.post("/v1/transactions", body)
            assert first.status_code == 200, first.text
            earned = first.json()["accrual"]["points"]["points"]
            redeem = {"redemption_id": "R-old-1", "member": "2900000000018", "reward_id": "free-coffee"}
            assert lane.post("/v1/redemptions", redeem).json()["authorised"] == "online"
            lane.wait_drained()
            balance = central.store.member("M0001")["balances"]["points"]
            # central slow to tell the lane its history: the retry must not be asked under L01 meanwhile
            # (answered from the old ledger's approval), but wait, within the budget, for L01.2
            central.inject("lane", "slow", count=1, delay=0.5)
            config = lane.config.read_text()  # a budget that outlasts the slow answer on a busy machine
            lane.config.write_text(config.replace("[central]\n", "[central]\nauthorise_timeout_ms = 3000\n", 1))
            archive_ledger(lane, tmp_path / "aside")
            again = lane.post("/v1/redemptions", redeem)
            assert (again.status_code, again.json().get("code")) == (409, "redemption_id_conflict"), again.text
            assert lane.post("/v1/transactions", body).json()["accrual"]["points"]["points"] == earned
            new = lane.post("/v1/transactions", sale("T-new-1", "2900000000018"))
            lane.wait_drained()
            assert lane.health()["sync"]["sync_lane_id"] == "L01.2"
            assert [(e["transaction_id"], e["status"], e["code"]) for e in central.store.events("S001", "L01.2")] == [
                ("T-old-1", "rejected", "counted_by_earlier_identity"), ("T-new-1", "accepted", None)]
            assert central.store.member("M0001")["balances"]["points"] == balance + new.json()["accrual"]["points"]["points"]
            health = lane.health()
            assert health["sync"]["quarantined"] == 1
            # central counted it once and the lane took the copy out of its balances: nothing for store IT
            assert not [i for i in health["issues"] if i["code"] == "quarantined"], health["issues"]
            assert health["status"] == "ok", health
            table = subprocess.run([sys.executable, "-m", "posd", "ledger", "quarantine", "--config",
                                    str(lane.config)], capture_output=True, text=True, timeout=60, check=True)
            head, row = table.stdout.splitlines()
            assert "counted_by_earlier_identity" in row
            assert head.index("refused at") == row.index("20"), table.stdout  # the columns stay in line
        finally:
            lane.stop()


def test_clock_skew_against_centrals_date_is_in_health(tmp_path):
    import time

    with running_central(tmp_path / "central", DEMO_SEED, clock=lambda: time.time() + 120) as central:
        lane = launch_lane(tmp_path / "lane", central)
        try:
            skew = lane.wait_for(lambda: lane.health()["sync"]["clock_skew_s"], what="clock skew measured")
            assert 110 <= skew <= 130
            assert lane.health()["sync"]["pull"]["state"] == "ok"
        finally:
            lane.stop()


# --- a lost or restored ledger.db: never the same (lane, seq) twice ---------------------------------------


def lose_a_ledger(tmp_path: Path, central) -> Ledger:
    """A ledger whose 3 events central has, lost with its disk; the fresh one that replaces it, with 2."""
    first = Ledger(tmp_path / "first" / "ledger.db", LaneIdentity(STORE_ID, LANE_ID))
    add_accruals(first, 3)
    with ledger_client(central, first) as client:
        drive(ledger_relay(client, first), first)
    first.close()  # ... and the disk dies: a new ledger.db starts at seq 1 again
    fresh = Ledger(tmp_path / "fresh" / "ledger.db", LaneIdentity(STORE_ID, LANE_ID))
    add_accruals(fresh, 2)
    return fresh


def test_a_lost_ledger_syncs_under_a_new_lane_id_and_nothing_collides(tmp_path):
    (tmp_path / "first").mkdir()
    (tmp_path / "fresh").mkdir()
    with running_central(tmp_path / "central") as central:
        fresh = lose_a_ledger(tmp_path, central)
        told = []
        fresh.sync_identity.subscribe(told.append)
        with ledger_client(central, fresh) as client:
            relay = ledger_relay(client, fresh)
            drive(relay, fresh)
        assert told == ["L01.2"] and relay.status()["sync_lane_id"] == "L01.2"
        assert [e["status"] for e in central.store.events(STORE_ID, "L01")] == ["accepted"] * 3
        assert [e["status"] for e in central.store.events(STORE_ID, "L01.2")] == ["accepted"] * 2
        assert central.store.member("M0001")["balances"] == {"points": 1840 + 50}
        fresh.close()

        fresh = Ledger(tmp_path / "fresh" / "ledger.db", LaneIdentity(STORE_ID, LANE_ID))  # the next start
        fresh.sync_identity.subscribe(told.append)
        add_accruals(fresh, 1)  # keeps the claimed id
        with ledger_client(central, fresh) as client:
            drive(ledger_relay(client, fresh), fresh)
        assert told == ["L01.2"] and len(central.store.events(STORE_ID, "L01.2")) == 3
        assert fresh.sync_identity.lane_id == "L01.2"
        fresh.close()


def test_a_client_that_does_not_follow_the_ledgers_identity_sends_nothing(tmp_path):
    """Wiring the relay to the identity but the client to a fixed lane id would send seqs that collide."""
    (tmp_path / "first").mkdir()
    (tmp_path / "fresh").mkdir()
    with running_central(tmp_path / "central") as central:
        fresh = lose_a_ledger(tmp_path, central)
        with make_client(central) as fixed:
            relay = ledger_relay(fixed, fresh)
            assert relay.run_once() == "backoff"
        assert "claimed lane id" in relay.status()["last_error"]
        assert fresh.sync_identity.lane_id == "L01.2"  # claimed: a client that follows it sends there
        assert len(central.store.events(STORE_ID, LANE_ID)) == 3 and central.store.events(STORE_ID, "L01.2") == []
        assert [r["state"] for r in outbox_rows(fresh)] == ["pending", "pending"]
        fresh.close()


def test_a_second_till_under_the_same_lane_id_stops_instead_of_quarantining_its_sales(tmp_path):
    """Two tills running as one lane (a PC replaced while the old one ran on, a copied config), both
    checked against central before either pushed: the second to push found central holding the other's
    events at its seqs, seq_conflict, and quarantined its sales (their points gone at the lane, never at
    central). It stops for a person instead (identity_conflict), every event kept pending."""
    for name in ("one", "two"):
        (tmp_path / name).mkdir()
    with running_central(tmp_path / "central") as central:
        one = Ledger(tmp_path / "one" / "ledger.db", LaneIdentity(STORE_ID, LANE_ID))
        two = Ledger(tmp_path / "two" / "ledger.db", LaneIdentity(STORE_ID, LANE_ID))
        try:
            with ledger_client(central, one) as first, ledger_client(central, two) as second:
                relay = ledger_relay(second, two)
                assert relay.run_once() == "idle"  # checked: central has nothing under L01 yet
                add_accruals(one, 3)
                drive(ledger_relay(first, one), one)
                add_accruals(two, 2)
                assert relay.run_once() == "identity_conflict"
                status = relay.status()
                assert status["state"] == "identity_conflict" and "seq 1" in status["last_error"], status
                assert status["quarantined_events"] == 0
            assert [r["state"] for r in outbox_rows(two)] == ["pending", "pending"]
            assert [e["event_id"] for e in central.store.events(STORE_ID, LANE_ID)] == [
                r["event_id"] for r in outbox_rows(one)]
        finally:
            one.close()
            two.close()


def test_a_ledger_restored_from_an_old_backup_stops_instead_of_reusing_seqs(tmp_path):
    import shutil

    (tmp_path / "lane").mkdir()
    with running_central(tmp_path / "central") as central:
        add_and_send(central, tmp_path / "lane" / "ledger.db", 2)
        shutil.copytree(tmp_path / "lane", tmp_path / "backup")
        add_and_send(central, tmp_path / "lane" / "ledger.db", 3)

        restored = Ledger(tmp_path / "backup" / "ledger.db", LaneIdentity(STORE_ID, LANE_ID))
        add_accruals(restored, 1)  # seq 3 again, another event
        client = ledger_client(central, restored)
        relay = ledger_relay(client, restored)
        assert relay.run_once() == "identity_conflict"
        assert relay.status()["state"] == "identity_conflict" and relay.status()["next_attempt_in_s"] > 250
        assert [r["state"] for r in outbox_rows(restored)] == ["acked", "acked", "pending"]
        assert central.store.last_seq(STORE_ID, LANE_ID) == 5  # nothing overwritten, nothing quarantined
        client.close()
        restored.close()


def test_burns_wait_for_the_lane_id_check_only_while_the_relay_may_make_it(tmp_path, ledger):
    """Burns wait (within their budget) for the relay's first check of the lane id; a relay parked until
    a person acts (central refuses the lane's credentials) lets them go at once: they are asked, and
    refused on their own, instead of each waiting out the budget."""
    with running_central(tmp_path / "central") as central:
        identity = ledger.sync_identity
        with ledger_client(central, ledger) as client:
            central.inject("lane", "503")
            assert ledger_relay(client, ledger).run_once() == "backoff"
            assert not identity.wait_settled(0)  # central did not answer: the next try makes the check
        with ledger_client(central, ledger, secret=b"wrong") as bad:
            assert ledger_relay(bad, ledger).run_once() == "auth_failed"
            assert identity.wait_settled(0) and identity.lane_id == LANE_ID


# --- central back: one part of the lane reaching it ends the others' backoff -------------------------------


def test_an_answer_to_the_relay_ends_the_pullers_backoff_once_and_keeps_a_429_slot(tmp_path, ledger):
    with running_central(tmp_path / "central") as central:
        add_accruals(ledger, 1)
        answered = []
        with make_client(central) as pull_client, \
                ledger_client(central, ledger, on_answer=lambda: answered.append(1)) as push_client:
            puller = SyncPuller(pull_client, MemoryCache(), backoff_base=60.0)
            relay = ledger_relay(push_client, ledger)
            central.inject("members", "503", count=2)
            assert puller.run_once() == "backoff"
            assert relay.run_once() == "sent" and answered and set(answered) == {1}  # news for the others
            puller.central_reached()
            status = puller.status()
            assert (status["state"], status["consecutive_failures"], status["last_error"]) == ("reconnecting", 0, None)
            assert status["next_attempt_in_s"] == 0
            # its own route still fails: back off again, and further answers elsewhere do not cut it (once per outage)
            assert puller.run_once() == "backoff"
            puller.central_reached()
            assert puller.status()["state"] == "backoff" and puller.status()["consecutive_failures"] == 1
            assert puller.run_once() == "updated"
            # a slot central handed out (429 with Retry-After) is kept
            central.inject("members", "429")
            assert puller.run_once() == "backoff"
            puller.central_reached()
            assert puller.status()["state"] == "backoff" and puller.status()["consecutive_failures"] == 1
        # refusals of our credentials are not news that central is reachable
        with ledger_client(central, ledger, secret=b"wrong", on_answer=lambda: answered.append(2)) as bad:
            add_accruals(ledger, 1)
            assert ledger_relay(bad, ledger).run_once() == "auth_failed"
        assert set(answered) == {1}


def test_a_5xx_retry_after_is_kept_when_central_answers_the_lane_elsewhere(tmp_path):
    """A central shedding load answers pushes 503 with Retry-After: 20 and pulls 200: the relay came
    back 0.5 s later, as soon as a pull was answered, not after the 20 s central asked for."""
    class Shedding(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = b'{"code": "unavailable", "message": "shedding load"}'
            self.send_response(503)
            self.send_header("Retry-After", "20")
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *_: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Shedding)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        client = CentralClient(f"http://127.0.0.1:{server.server_address[1]}", "S001", "L01", SECRET, timeout=(2, 2))
        with client:
            puller = SyncPuller(client, MemoryCache(), backoff_base=0.5)
            assert puller.run_once() == "backoff"
            puller.central_reached()  # the relay's push got through meanwhile
            status = puller.status()
            assert status["next_attempt_in_s"] > 15, status  # central's wait stays
            # ... but central answers: the lane is not offline (its burns still ask central)
            assert not puller.failing() and status["consecutive_failures"] == 0 and status["last_error"] is None
    finally:
        server.shutdown()
        server.server_close()


def test_a_push_that_reaches_central_clears_unreachable_at_once_and_brings_the_pull_forward(tmp_path):
    with running_central(tmp_path / "central", DEMO_SEED) as central:
        lane = launch_lane(tmp_path / "lane", central)
        try:
            central.inject("members", "reset", count=10_000)  # no answer at all: unreachable, not central_error

            def pull_backing_off() -> bool:
                pull = lane.health()["sync"]["pull"]
                return pull["state"] == "backoff" and (pull["next_attempt_in_s"] or 0) >= 4

            lane.wait_for(pull_backing_off, timeout=120, what="the puller in a long backoff")
            assert "central_unreachable" in [i["code"] for i in lane.health()["issues"]]
            central.faults.clear()
            assert lane.post("/v1/transactions", sale("T-back", "2900000000018")).status_code == 200
            lane.wait_drained()
            health = lane.health()
            assert "central_unreachable" not in [i["code"] for i in health["issues"]], health["problems"]
            assert health["sync"]["online"] is True and health["sync"]["pull"]["consecutive_failures"] == 0
            assert health["sync"]["pull"]["state"] in ("reconnecting", "ok")  # not left in its backoff
            lane.wait_for(lambda: lane.health()["sync"]["pull"]["state"] == "ok", what="the pull brought forward")
            assert lane.health()["status"] == "ok"
        finally:
            lane.stop()


def test_a_pipelined_drain_killed_between_central_applying_and_the_ack_loses_and_doubles_nothing(tmp_path):
    """A backlog drains with the next batch in flight while the last one's acks are written: kill -9
    the daemon right after central answered its second batch, before that answer is written. Started
    again, it sends what is unacked; central holds every event once and the outbox is all acked."""
    with running_central(tmp_path / "central") as central:
        state = tmp_path / "lane" / "state"
        state.mkdir(parents=True)
        backlog = Ledger(state / "ledger.db", LaneIdentity(STORE_ID, LANE_ID))
        add_accruals(backlog, 3500)
        backlog.close()
        secret = "hex:" + central.store.store_secret(STORE_ID).hex()
        port = free_port()
        cfg = lane_config(tmp_path / "lane", central_url=central.url, secret=secret, printer="none", port=port)
        lane = CrashLane(cfg, port, state=state)
        try:
            lane.spawn(POSD_LOG_LEVEL="warning", POSD_CRASH_AT="after_central_applied_before_ack@2")
            assert lane.proc.wait(120) != 0  # killed itself at the crash point
        finally:
            lane.reap()
        ledger = Ledger(state / "ledger.db", LaneIdentity(STORE_ID, LANE_ID))
        try:
            acked = sum(1 for r in outbox_rows(ledger) if r["state"] == "acked")
        finally:
            ledger.close()
        assert acked == 1000 and len(central.store.events(STORE_ID, LANE_ID)) >= 2000
        lane = LaneProcess(cfg, port, state=state).start()
        try:
            lane.wait_drained(timeout=120)
        finally:
            lane.stop()
        ledger = Ledger(state / "ledger.db", LaneIdentity(STORE_ID, LANE_ID))
        try:
            assert_delivered_once(central, ledger)
        finally:
            ledger.close()


def test_a_copy_taken_before_its_events_were_sent_counts_them_once(tmp_path):
    """A copy of ledger.db taken while two sales waited for central, restored after the till that made them
    sent them and went on: the copy stops for a person (identity_conflict), and the two, which central holds
    as they are at their seqs, are recorded as central answered them when they were compared (duplicate:
    acked; the one central had refused: quarantined, as at the till that sent it): the lane's balances
    count them in central's figure, not again as unsynced. The sale the copy recorded since
    is another event at a seq central holds: it stays pending, and central is left as it was."""
    import shutil

    (tmp_path / "lane").mkdir()
    with running_central(tmp_path / "central") as central:
        add_and_send(central, tmp_path / "lane" / "ledger.db", 2)
        ledger = Ledger(tmp_path / "lane" / "ledger.db", LaneIdentity(STORE_ID, LANE_ID))
        add_accruals(ledger, 1, member="NOBODY")  # seq 3, which central will refuse (unknown_member)
        add_accruals(ledger, 1)  # seq 4: neither sent yet when the copy is taken
        ledger.close()
        shutil.copytree(tmp_path / "lane", tmp_path / "backup")
        add_and_send(central, tmp_path / "lane" / "ledger.db", 1)
        before = central.store.events(STORE_ID, LANE_ID)

        restored = Ledger(tmp_path / "backup" / "ledger.db", LaneIdentity(STORE_ID, LANE_ID))
        add_accruals(restored, 1)  # seq 5 again, another event
        with ledger_client(central, restored) as client:
            relay = ledger_relay(client, restored)
            assert relay.run_once() == "identity_conflict"
            assert relay.run_once() == "identity_conflict"  # checked again later: the same, nothing more
        # seq 3 as central answered it the first time (quarantined), not where the compare stops
        assert [r["state"] for r in outbox_rows(restored)] == ["acked", "acked", "quarantined", "acked", "pending"]
        assert restored.view().outbox_stats().last_acked_seq == 4
        assert central.store.events(STORE_ID, LANE_ID) == before
        restored.close()


def test_a_lane_started_from_an_old_copy_shows_balances_as_central_counts_them(tmp_path):
    """A copy of the lane's folder taken while a sale waited for central; the lane sent it afterwards and
    sold on. A till started from the copy stops sending (identity_conflict), and showed that sale's points
    twice: in central's confirmed figure and again as its own unsynced entry (spendable offline). Central
    holds it as it is, so the copy records it as central's: the member's balance there is central's."""
    import shutil

    with running_central(tmp_path / "central", DEMO_SEED) as central:
        lane = launch_lane(tmp_path / "lane", central)
        try:
            assert lane.post("/v1/transactions", sale("T-copy-1", "2900000000018")).status_code == 200
            lane.wait_drained()
            central.inject("push", "503", count=10_000)
            assert lane.post("/v1/transactions", sale("T-copy-2", "2900000000018")).status_code == 200
            lane.stop()
            shutil.copytree(lane.state, tmp_path / "copy")  # the copy: T-copy-2 not sent
            central.store.clear_faults()
            lane.start(timeout=30)
            assert lane.post("/v1/transactions", sale("T-copy-3", "2900000000018")).status_code == 200
            lane.wait_drained()
        finally:
            lane.stop()
        central_points = central.store.member("M0001")["balances"]["points"]
        copy = tmp_path / "copy-lane"
        copy.mkdir()
        shutil.move(str(tmp_path / "copy"), copy / "state")
        (copy / "state" / "cache.db").unlink()  # a new PC: the member cache comes from central
        restored = launch_lane(copy, central)
        try:
            restored.wait_for(lambda: restored.health()["sync"]["state"] == "identity_conflict",
                              what="the copy stopping for a person")
            member = restored.get("/v1/members/2900000000018").json()
            assert member["balances"]["points"]["pending"] == 0, member["balances"]
            assert member["balances"]["points"]["total"] == central_points, member["balances"]
        finally:
            restored.stop()
