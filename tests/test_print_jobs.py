"""The print worker against a TCP printer emulator: held, printed once, expired, idempotent.

Real ledger.db, real TCP on loopback; "printed" means the slip's complete
bytes arrived at the emulator, and each test counts complete copies.
"""

from __future__ import annotations

import json
import time

import pytest

from posd.core.slip import SlipData, build_slip
from posd.drivers import registry
from posd.lane.events import EventBus
from posd.lane.print_worker import PrintWorker
from posd.storage.ledger import LaneIdentity, Ledger
from tests.support.ledger_sql import execute, reader
from tests.support.printer_emulator import PrinterEmulator

WAIT = 15.0


def slip_json(slip_id: str) -> dict:
    return {"slip_id": slip_id, "store_id": "S001", "lane_id": "L01", "transaction_id": slip_id,
            "occurred_at": "2026-11-24 10:15", "member_name": "Anna K.", "tier_name": "Gold",
            "earned": {"points": 194}, "balance": {"points": 2034}}


class Lane:
    def __init__(self, path, emulator: PrinterEmulator) -> None:
        self.path, self.emulator = path, emulator
        self.ledger = Ledger(path / "ledger.db", LaneIdentity("S001", "L01"))
        self.bus = EventBus(self.ledger.boot)
        self.printer = registry.open_printer("printer", emulator.url + "?timeout=2")
        self.worker = PrintWorker(self.ledger, self.printer, self.bus, "en", retry_base=0.05, retry_cap=0.2)

    def queue(self, slip_id: str, **kw) -> str:
        job, _ = self.ledger.write(lambda tx: tx.queue_print_job(slip_id=slip_id, kind=kw.pop("kind", "slip"),
                                                                 slip=slip_json(slip_id), **kw))
        return job  # the ledger wakes the worker once the job is committed

    def rendered(self, slip_id: str) -> bytes:
        return self.printer.render(build_slip(SlipData.from_json(slip_json(slip_id)), "en"))

    def copies(self, slip_id: str) -> int:
        expected = self.rendered(slip_id)
        return sum(job.count(expected) for job in self.emulator.jobs)

    def statuses(self, job_id: str) -> list[tuple[str, str | None]]:
        events, _ = self.bus.replay_after(0)
        return [(e.data["state"], e.data["reason"]) for e in events
                if e.type == "print.status" and e.data["job_id"] == job_id]

    def wait_status(self, job_id: str, state: str) -> None:
        deadline = time.monotonic() + WAIT
        while time.monotonic() < deadline:
            if any(s == state for s, _ in self.statuses(job_id)):
                return
            time.sleep(0.02)
        raise AssertionError(f"no {state} for {job_id}: {self.statuses(job_id)}")

    def row(self, job_id: str):
        return reader(self.ledger).execute("SELECT * FROM print_jobs WHERE job_id = ?", (job_id,)).fetchone()

    def close(self) -> None:
        self.worker.stop()
        self.ledger.close()


@pytest.fixture
def emulator():
    with PrinterEmulator(idle_timeout=3.0) as emu:
        yield emu


@pytest.fixture
def lane(tmp_path, emulator):
    lane = Lane(tmp_path, emulator)
    yield lane
    lane.close()


def test_a_job_prints_once_with_status_before_and_after(lane, emulator):
    job = lane.queue("T-1")
    lane.worker.start()
    lane.wait_status(job, "printed")
    assert lane.copies("T-1") == 1
    assert emulator.status_queries[:3] == [1, 2, 4] and len(emulator.status_queries) == 6
    assert lane.row(job)["state"] == "printed"


@pytest.mark.parametrize("state", ["paper_out", "cover_open", "offline"])
def test_printer_not_ready_holds_the_job_then_prints_it_once(lane, emulator, state):
    emulator.state = state
    job = lane.queue("T-2")
    lane.worker.start()
    lane.wait_status(job, "held")
    assert lane.statuses(job) == [("held", state)]
    assert lane.copies("T-2") == 0
    emulator.state = "online"
    lane.wait_status(job, "printed")
    assert lane.copies("T-2") == 1
    assert lane.statuses(job) == [("held", state), ("printed", None)]


@pytest.mark.parametrize("state", ["paper_out", "cover_open", "offline"])
def test_every_slip_waiting_for_the_printer_is_told_held_and_then_printed(lane, emulator, state):
    """Not only the first waiting slip: the POS hears about each one, also one queued while held."""
    emulator.state = state
    jobs = [lane.queue(f"T-h{i}") for i in range(3)]
    lane.worker.start()
    for job in jobs:
        lane.wait_status(job, "held")
    late = lane.queue("T-h3")  # queued while the printer is still not ready
    lane.wait_status(late, "held")
    assert emulator.jobs == []
    emulator.state = "online"
    for job in [*jobs, late]:
        lane.wait_status(job, "printed")
        assert lane.statuses(job) == [("held", state), ("printed", None)], job
    assert [lane.copies(f"T-h{i}") for i in range(4)] == [1, 1, 1, 1]


@pytest.mark.parametrize("state", ["paper_out", "cover_open"])
def test_paper_out_mid_job_is_finished_by_the_printer_not_resent(lane, emulator, state):
    emulator.fail_after(300, state)
    job = lane.queue("T-3")
    lane.worker.start()
    lane.wait_status(job, "held")
    assert lane.row(job)["send_state"] == "delivered"
    time.sleep(0.3)  # several retries while the printer still reports the problem
    emulator.state = "online"
    lane.wait_status(job, "printed")
    emulator.wait_for_connections(emulator.connections)
    assert lane.copies("T-3") == 1
    assert len(emulator.jobs) == 1  # the rest were status checks, never the slip again


def test_power_loss_mid_job_prints_the_slip_once_when_the_printer_is_back(lane, emulator):
    emulator.fail_after(300, "offline", drop=True)
    job = lane.queue("T-4")
    lane.worker.start()
    lane.wait_status(job, "held")
    assert lane.row(job)["send_state"] == "sending"
    assert lane.copies("T-4") == 0  # only a partial slip came out
    emulator.power_on()
    lane.wait_status(job, "printed")
    assert lane.copies("T-4") == 1
    assert emulator.buffer_clears >= 1  # leftovers cleared before the resend


def test_the_same_client_job_id_twice_prints_once(lane):
    first = lane.queue("T-5", kind="reprint", client_job_id="pos-42")
    again = lane.queue("T-5", kind="reprint", client_job_id="pos-42")
    assert first == again
    lane.worker.start()
    lane.wait_status(first, "printed")
    lane.queue("T-6")
    lane.wait_status("T-6", "printed")
    assert lane.copies("T-5") == 1
    count = reader(lane.ledger).execute("SELECT COUNT(*) FROM print_jobs WHERE client_job_id = 'pos-42'")
    assert count.fetchone()[0] == 1


def test_reprint_of_a_known_slip_is_a_new_job(lane):
    lane.queue("T-7")
    job = lane.ledger.write(lambda tx: tx.queue_reprint("T-7", client_job_id="copy-1"))
    assert job != "T-7" and lane.ledger.write(lambda tx: tx.queue_reprint("T-7", client_job_id="copy-1")) == job
    assert lane.ledger.write(lambda tx: tx.queue_reprint("nope")) is None
    lane.worker.start()
    lane.wait_status(job, "printed")
    slip = json.loads(lane.row(job)["slip"])
    assert slip["reprint"] is True


def test_a_job_that_waited_past_its_ttl_expires_and_never_prints(lane, emulator):
    emulator.state = "paper_out"
    job = lane.queue("T-8", ttl_s=0.4)
    lane.worker.start()
    lane.wait_status(job, "expired")
    emulator.state = "online"
    lane.queue("T-9")
    lane.wait_status("T-9", "printed")
    assert lane.copies("T-8") == 0
    assert lane.row(job)["state"] == "expired"
    assert ("expired", "ttl") in lane.statuses(job)


def test_a_voucher_slip_lives_as_long_as_a_sale_slip(lane):
    """A redemption's slip (its voucher) took the fallback's 5 minutes: a printer out of paper for
    six let the member's voucher slip expire unprinted while the sale's before it printed."""
    for slip_id, kind in (("T-10", "slip"), ("R-10~r", "redemption"), ("T-10#r", "reprint")):
        row = lane.row(lane.queue(slip_id, kind=kind))
        lived = (time.mktime(time.strptime(row["expires_at"][:19], "%Y-%m-%dT%H:%M:%S"))
                 - time.mktime(time.strptime(row["created_at"][:19], "%Y-%m-%dT%H:%M:%S")))
        assert lived == (300 if kind == "reprint" else 900), (kind, lived)


def test_a_drawer_kick_never_fires_late(lane, emulator):
    emulator.power_off()
    job = lane.queue("T-10", kind="drawer", ttl_s=0.3)
    lane.worker.start()
    lane.wait_status(job, "expired")
    emulator.power_on()
    ok = lane.queue("T-11", kind="drawer")
    lane.wait_status(ok, "printed")
    emulator.wait_for_connections(emulator.connections)
    kicks = sum(job.count(b"\x1bp\x00") for job in emulator.jobs)
    assert kicks == 1  # the fresh one only


def test_after_a_crash_a_delivered_job_is_not_sent_again(tmp_path, emulator):
    lane = Lane(tmp_path, emulator)
    job = lane.queue("T-12")
    lane.ledger.write(lambda tx: tx.update_print_job(job, state="printing", send_state="delivered"))
    lane.ledger.close()
    lane = Lane(tmp_path, emulator)  # the restart: the ledger puts 'printing' back in the queue
    try:
        lane.worker.start()
        lane.wait_status(job, "printed")
        assert lane.copies("T-12") == 0 and emulator.jobs == []
    finally:
        lane.close()


def test_after_a_crash_mid_send_the_job_is_cleared_and_sent_once(tmp_path, emulator):
    lane = Lane(tmp_path, emulator)
    job = lane.queue("T-13")
    lane.ledger.write(lambda tx: tx.update_print_job(job, state="printing", send_state="sending"))
    lane.ledger.close()
    lane = Lane(tmp_path, emulator)
    try:
        lane.worker.start()
        lane.wait_status(job, "printed")
        assert lane.copies("T-13") == 1 and emulator.buffer_clears == 1
    finally:
        lane.close()


def test_a_job_that_cannot_be_rendered_is_set_aside_and_later_slips_still_print(tmp_path):
    """A bug in one job must not kill the worker or hold every later slip behind it."""
    import json as _json
    import time as _time
    from datetime import timedelta as _td

    from posd.storage.db import iso as _iso
    from posd.storage.db import utcnow as _utcnow

    ledger = Ledger(tmp_path / "ledger.db", LaneIdentity("S", "L"))
    printed = []

    class Paper:
        def print_document(self, doc, before_send=None):
            if before_send:
                before_send()
            printed.append(doc.slip_id)

    good = {"slip_id": "good", "store_id": "S", "lane_id": "L", "transaction_id": "good",
            "occurred_at": "2026-11-24 10:00", "member_name": "A", "tier_name": None, "earned": {}, "balance": {}}
    execute(ledger, "INSERT INTO print_jobs (job_id, slip_id, kind, slip, created_at) VALUES (?, ?, 'slip', ?, ?)",
            ("bad", "bad", _json.dumps({"not": "a slip"}), _iso(_utcnow() - _td(hours=1))))
    execute(ledger, "UPDATE print_jobs SET expires_at = '2999-01-01T00:00:00.000Z'")
    ledger.write(lambda tx: tx.queue_print_job(slip_id="good", kind="slip", slip=good))
    bus = EventBus(1)
    worker = PrintWorker(ledger, Paper(), bus, "en", retry_base=0.01, retry_cap=0.02)
    worker.start()
    deadline = _time.monotonic() + 20
    while "good" not in printed and _time.monotonic() < deadline:
        _time.sleep(0.05)
    worker.stop()
    assert printed == ["good"] and worker.alive is False
    state = reader(ledger).execute("SELECT state FROM print_jobs WHERE job_id = 'bad'").fetchone()[0]
    assert state == "failed"
    assert any(e.type == "print.status" and e.data.get("state") == "failed" for e in bus._ring)
    ledger.close()


def test_finished_jobs_are_forgotten_after_the_retention_period(tmp_path):
    from datetime import timedelta as _td

    from posd.lane.print_worker import JOB_RETENTION
    from posd.storage.db import iso as _iso
    from posd.storage.db import utcnow as _utcnow
    from posd.storage.ledger import LaneIdentity, Ledger

    ledger = Ledger(tmp_path / "ledger.db", LaneIdentity("S", "L"))
    old = _iso(_utcnow() - JOB_RETENTION - _td(days=1))
    rows = [("old-printed", "printed", old), ("old-expired", "expired", old), ("old-queued", "queued", old),
            ("new-printed", "printed", _iso(_utcnow()))]
    execute(ledger, "INSERT INTO print_jobs (job_id, slip_id, kind, slip, state, created_at) "
            "VALUES (?, ?, 'slip', '{}', ?, ?)", [(job, job, state, at) for job, state, at in rows], many=True)
    removed = ledger.write(lambda tx: tx.forget_finished_jobs(_utcnow() - JOB_RETENTION))
    left = {r[0] for r in reader(ledger).execute("SELECT job_id FROM print_jobs")}
    assert removed == 2 and left == {"old-queued", "new-printed"}
    ledger.close()


def _idle(lane: Lane) -> int:
    """Start the worker on an empty queue and wait for its first idle housekeeping (one commit): the
    ledger's commit count from which a test counts."""
    lane.worker.start()
    deadline = time.monotonic() + WAIT
    while lane.ledger.commits < 1 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert lane.ledger.commits == 1
    return lane.ledger.commits


def test_a_printed_slip_costs_two_durable_commits(lane):
    """Taking a job is a read; the commit before its first byte and `printed` are the slip's only writes."""
    _idle(lane)
    for i in range(5):
        before = lane.ledger.commits
        job = lane.queue(f"T-c{i}")
        lane.wait_status(job, "printed")
        assert (lane.ledger.commits, lane.ledger.units) == (before + 3, before + 3), job  # queued, sending, printed
        assert lane.copies(f"T-c{i}") == 1
        row = lane.row(job)
        assert (row["state"], row["send_state"], row["attempts"]) == ("printed", "sending", 1)


def test_a_drawer_kick_and_a_reprint_cost_two_durable_commits_each(lane, emulator):
    _idle(lane)
    lane.queue("T-d0")
    lane.wait_status("T-d0", "printed")
    for queue in (lambda: lane.ledger.write(lambda tx: tx.queue_reprint("T-d0")),
                  lambda: lane.queue("T-d1", kind="drawer")):
        before = lane.ledger.commits
        job = queue()
        lane.wait_status(job, "printed")
        assert lane.ledger.commits == before + 3, job
        assert lane.row(job)["attempts"] == 1
    emulator.wait_for_connections(emulator.connections)
    assert sum(job.count(b"\x1bp\x00") for job in emulator.jobs) == 1


def test_a_held_job_counts_each_attempt_in_the_one_commit_that_puts_it_back(lane, emulator):
    """The printer offline before the job: nothing is sent, each retry is one commit, and it counts."""
    emulator.state = "offline"
    start = _idle(lane)
    job = lane.queue("T-held")
    lane.wait_status(job, "held")
    deadline = time.monotonic() + WAIT
    while lane.row(job)["attempts"] < 3 and time.monotonic() < deadline:
        time.sleep(0.02)
    lane.worker.stop()  # no attempt in flight from here on
    row = lane.row(job)
    assert row["attempts"] >= 3 and (row["state"], row["send_state"], row["last_error"]) == ("queued", None, "offline")
    assert lane.ledger.commits == start + 1 + row["attempts"]  # queued, then one commit per attempt
    assert emulator.jobs == [] and lane.statuses(job) == [("held", "offline")]


def test_a_held_job_that_waited_past_its_ttl_is_expired_and_told_once(lane, emulator):
    emulator.state = "paper_out"
    _idle(lane)
    job = lane.queue("T-ttl", ttl_s=0.3)
    lane.wait_status(job, "expired")
    lane.worker.stop()
    row = lane.row(job)
    assert (row["state"], row["last_error"]) == ("expired", "ttl")
    assert lane.statuses(job) == [("held", "paper_out"), ("expired", "ttl")] and lane.copies("T-ttl") == 0


def test_a_job_failing_for_its_own_reasons_is_set_aside_after_its_attempts(tmp_path):
    """Each failed attempt is counted by the commit that puts the job back; the fourth sets it aside."""
    ledger = Ledger(tmp_path / "ledger.db", LaneIdentity("S", "L"))

    class Paper:
        def print_document(self, doc, before_send=None):
            raise AssertionError("a slip that cannot be built reached the printer")

    ledger.write(lambda tx: tx.queue_print_job(slip_id="bad", kind="slip", slip={"not": "a slip"}))
    bus = EventBus(1)
    worker = PrintWorker(ledger, Paper(), bus, "en", retry_base=0.01, retry_cap=0.02)
    worker.start()
    deadline = time.monotonic() + WAIT
    while not any(e.type == "print.status" for e in bus._ring) and time.monotonic() < deadline:
        time.sleep(0.02)
    worker.stop()
    row = reader(ledger).execute("SELECT state, attempts, send_state FROM print_jobs WHERE job_id = 'bad'").fetchone()
    assert tuple(row) == ("failed", 4, None)
    assert [e.data["state"] for e in bus._ring if e.type == "print.status"] == ["failed"]
    ledger.close()


def test_a_job_waiting_behind_a_held_one_expires_in_its_time_and_never_prints(lane, emulator):
    """Overdue jobs are found anywhere in the queue, not only at its head: told expired while the
    slip ahead of them is still held, and never printed once the printer is back."""
    emulator.state = "offline"
    first = lane.queue("T-ahead")
    kick = lane.queue("T-behind", kind="drawer", ttl_s=0.5)
    lane.worker.start()
    lane.wait_status(kick, "expired")
    assert lane.statuses(first) == [("held", "offline")]  # still waiting, never expired
    assert lane.statuses(kick) == [("held", "offline"), ("expired", "ttl")]
    emulator.state = "online"
    lane.wait_status(first, "printed")
    lane.queue("T-after")
    lane.wait_status("T-after", "printed")
    emulator.wait_for_connections(emulator.connections)
    assert sum(job.count(b"\x1bp\x00") for job in emulator.jobs) == 0
    assert lane.row(kick)["state"] == "expired" and lane.copies("T-ahead") == 1


def test_an_idle_printer_that_goes_away_is_seen_before_the_next_slip(tmp_path):
    """Health said ready for a printer switched off while nothing printed, until the next
    customer's slip was held: an idle printer is asked its status now and then."""
    from posd.drivers.base import DeviceState

    with PrinterEmulator() as emulator:
        lane = Lane(tmp_path, emulator)
        lane.worker = PrintWorker(lane.ledger, lane.printer, lane.bus, "en", retry_base=0.05, retry_cap=0.2,
                                  idle_check_s=0.2)
        lane.worker.start()
        try:
            job = lane.queue("T-idle")
            lane.wait_status(job, "printed")
            assert lane.printer.state is DeviceState.IDLE
            emulator.power_off()
            deadline = time.monotonic() + WAIT
            while lane.printer.state is not DeviceState.ERROR and time.monotonic() < deadline:
                time.sleep(0.05)
            assert (lane.printer.state, lane.printer.reason) == (DeviceState.ERROR, "offline")
            emulator.power_on("paper_out")
            deadline = time.monotonic() + WAIT
            while lane.printer.reason != "paper_out" and time.monotonic() < deadline:
                time.sleep(0.05)
            assert lane.printer.reason == "paper_out"
        finally:
            lane.worker.stop()
            lane.ledger.close()



def test_a_file_printer_is_not_opened_while_idle(tmp_path):
    """Opening a regular file as a printer truncates it: the idle status check emptied a spool file."""
    ledger = Ledger(tmp_path / "ledger.db", LaneIdentity("S001", "L01"))
    spool = tmp_path / "spool.bin"
    printer = registry.open_printer("printer", f"file://{spool}")
    worker = PrintWorker(ledger, printer, EventBus(ledger.boot), "en", retry_base=0.05, retry_cap=0.2,
                         idle_check_s=0.05)
    worker.start()
    try:
        ledger.write(lambda tx: tx.queue_print_job(slip_id="T-file", kind="slip", slip=slip_json("T-file")))
        deadline = time.monotonic() + WAIT
        while not (spool.exists() and spool.stat().st_size) and time.monotonic() < deadline:
            time.sleep(0.05)
        printed = spool.read_bytes()
        assert printed
        time.sleep(0.5)  # ten idle checks' worth
        assert spool.read_bytes() == printed
    finally:
        worker.stop()
        ledger.close()


def test_a_refused_commit_is_one_log_line_not_one_per_retry_and_a_bug_keeps_its_traceback(lane, emulator, caplog):
    """The storage refusing the worker's commits (a full disk) is expected: told once, without a traceback,
    however often the job is retried, and once more when a commit succeeds; the job is not sent before
    its commit. Anything else escaping an attempt is a bug: its traceback is logged."""
    import logging
    import sqlite3

    from posd.storage.db import write_refused

    refusing, failing, writes = [True], [0], lane.ledger.write

    def write(fn):
        if refusing[0]:
            raise write_refused(sqlite3.OperationalError("database or disk is full"))
        if failing[0] and "update_print_job" in fn.__code__.co_names:  # a commit of the job in hand
            failing[0] -= 1
            raise RuntimeError("a bug")
        return writes(fn)

    job = lane.queue("T-full")
    lane.ledger.write = write
    caplog.set_level(logging.INFO, logger="posd.print")
    lane.worker.start()
    time.sleep(1.5)  # retried every 0.2 s at most: several refused attempts
    assert lane.copies("T-full") == 0 and lane.statuses(job) == []
    told = [r for r in caplog.records if r.name == "posd.print"]
    assert [(r.levelname, r.exc_info) for r in told] == [("WARNING", None)], [r.getMessage() for r in told]
    assert "the disk is full" in told[0].getMessage()

    refusing[0] = False
    lane.wait_status(job, "printed")
    assert lane.copies("T-full") == 1
    assert lane.row(job)["attempts"] == 1  # the refused attempts never reached the printer: not counted
    again = [r.getMessage() for r in caplog.records if r.name == "posd.print" and "writable again" in r.getMessage()]
    assert len(again) == 1, again

    emulator.state = "paper_out"  # the commit that holds the job raises something that is no refusal
    failing[0] = 1
    second, _ = writes(lambda tx: tx.queue_print_job(slip_id="T-bug", kind="slip", slip=slip_json("T-bug")))
    deadline = time.monotonic() + WAIT
    while not any(r.exc_info for r in caplog.records) and time.monotonic() < deadline:
        time.sleep(0.02)
    bug = [r for r in caplog.records if r.exc_info]
    assert len(bug) == 1 and "unexpected error while printing" in bug[0].getMessage()
    assert isinstance(bug[0].exc_info[1], RuntimeError)
    emulator.state = "online"
    lane.wait_status(second, "printed")
    assert lane.copies("T-bug") == 1
