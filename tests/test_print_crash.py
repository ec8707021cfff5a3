"""A printed slip survives a crash of posd at every step of its print, and prints once.

The real daemon, a TCP receipt printer on loopback, named crash points
(posd.faults): the daemon kills itself (SIGKILL, as a power cut) at the point,
is started again, and the POS retries its sale as it would. The slip must then
come out exactly once: one complete job at the printer, none before the crash.
"""

from __future__ import annotations

import sqlite3

import pytest
import requests

from posd.drivers.escpos_text import escpos_to_text
from tests.support.lane import LaneProcess, free_port, lane_config, sale_body

TID = "T-print-crash-1"


def job_row(lane: LaneProcess) -> tuple[str, str | None, int] | None:
    conn = sqlite3.connect(f"file:{lane.state / 'ledger.db'}?mode=ro", uri=True)
    try:
        return conn.execute("SELECT state, send_state, attempts FROM print_jobs WHERE job_id = ?", (TID,)).fetchone()
    finally:
        conn.close()


def copies(printer) -> int:
    return sum(TID in escpos_to_text(job, 48) for job in printer.jobs)


@pytest.mark.parametrize(("point", "at_crash"), [
    # taken from the queue by a read, the printer asked: nothing durable yet, the job is as queued
    ("before_print_send_commit", ("queued", None, 0)),
    # the one commit before the first byte: marked being sent, the attempt counted, nothing sent
    ("after_print_send_commit", ("printing", "sending", 1)),
])
def test_a_crash_while_a_slip_is_taken_to_the_printer_prints_it_once(tmp_path, central, printer, point, at_crash):
    port = free_port()
    secret = "hex:" + central.store.store_secret("S001").hex()
    cfg = lane_config(tmp_path / "lane", central_url=central.url, secret=secret, printer=printer.url, port=port)
    lane = LaneProcess(cfg, port)
    lane.spawn(POSD_CRASH_AT=point)
    try:
        lane.wait_healthy(30)
        lane.wait_synced(30)
        try:  # the print worker may kill the daemon before the answer leaves: the POS then retries
            lane.post("/v1/transactions", sale_body(TID))
        except requests.RequestException:
            pass
        assert lane.proc.wait(30) < 0  # killed itself at the point
        lane.stop()
        assert job_row(lane) == at_crash
        assert printer.jobs == []  # not a byte of the slip before the crash

        lane.start(timeout=30)
        retry = lane.post("/v1/transactions", sale_body(TID))  # the POS's retry: the same sale, once
        assert retry.status_code == 200, retry.text
        lane.wait_for(lambda: (job_row(lane) or ("",))[0] == "printed", what="the slip printed")
        assert job_row(lane) == ("printed", "sending", at_crash[2] + 1)
        printer.wait_for_jobs(1, timeout=15)
        assert copies(printer) == 1 and len(printer.jobs) == 1
        # one more sale prints after it, and the first slip never comes out again
        assert lane.post("/v1/transactions", sale_body("T-print-crash-2")).status_code == 200
        printer.wait_for_jobs(2, timeout=15)
        assert copies(printer) == 1
    finally:
        lane.stop()


def test_a_job_posd_keeps_dying_on_is_set_aside_and_the_lane_prints_on(tmp_path, central, printer):
    """A job in hand each time posd died, MAX_CRASHES times running (here a crash point each start:
    as a printer driver that kills the process), is set aside as failed when next taken; the lane
    then prints the slips behind it. Without the guard it would be taken, and kill posd, forever."""
    from posd.lane.print_worker import IN_HAND_FILE, MAX_CRASHES

    port = free_port()
    secret = "hex:" + central.store.store_secret("S001").hex()
    cfg = lane_config(tmp_path / "lane", central_url=central.url, secret=secret, printer=printer.url, port=port)
    lane = LaneProcess(cfg, port)
    try:
        for death in range(MAX_CRASHES):
            lane.spawn(POSD_CRASH_AT="after_print_send_commit")
            if death == 0:
                lane.wait_healthy(30)
                lane.wait_synced(30)  # the API answers before the first pull: the member must be known
                try:
                    lane.post("/v1/transactions", sale_body(TID))
                except requests.RequestException:
                    pass
            # later starts take the job back from the queue by themselves, and die on it again
            assert lane.proc.wait(30) < 0
            lane.stop()
            assert (lane.state / IN_HAND_FILE).read_text().split() == [TID, str(death)]
            assert job_row(lane)[:2] == ("printing", "sending")
        assert printer.jobs == []

        lane.start(timeout=30)
        lane.wait_for(lambda: (job_row(lane) or ("",))[0] == "failed", what="the job set aside")
        conn = sqlite3.connect(f"file:{lane.state / 'ledger.db'}?mode=ro", uri=True)
        assert conn.execute("SELECT last_error FROM print_jobs WHERE job_id = ?", (TID,)).fetchone() == ("crashed",)
        conn.close()
        assert f"print job {TID} set aside" in lane.log.read_text()
        assert lane.post("/v1/transactions", sale_body("T-print-crash-2")).status_code == 200
        printer.wait_for_jobs(1, timeout=15)
        assert [job for job in printer.jobs if "T-print-crash-2" in escpos_to_text(job, 48)] == printer.jobs
        assert lane.post(f"/v1/slips/{TID}/reprint").status_code == 202  # the POS can still have it printed
        printer.wait_for_jobs(2, timeout=15)
        assert lane.get("/v1/health").json()["status"] != "down"
    finally:
        lane.stop()
    assert (lane.state / IN_HAND_FILE).read_text() == ""  # a clean stop leaves no job in hand
