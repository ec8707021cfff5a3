"""A lane whose disk fills up: each write it cannot make is a clear 503, nothing half-written, one
log line, and the lane carries on by itself once space comes back (a real tmpfs, really full)."""

from __future__ import annotations

import sqlite3
import time
from contextlib import closing

import pytest

from tests.support.disk import fill, small_tmpfs
from tests.support.lane import launch_lane, sale_body


def recorded(state, transaction_id: str) -> tuple[int, int]:
    """(transactions rows, outbox events) the ledger has for this sale."""
    with closing(sqlite3.connect(f"file:{state / 'ledger.db'}?mode=ro", uri=True)) as conn:
        tx = conn.execute("SELECT count(*) FROM transactions WHERE transaction_id = ?", (transaction_id,)).fetchone()
        events = conn.execute("SELECT count(*) FROM outbox WHERE body LIKE ?", (f'%"{transaction_id}"%',)).fetchone()
    return tx[0], events[0]


def test_a_sale_on_a_full_disk_is_a_503_that_recovers_once_space_is_freed(tmp_path, central):
    with small_tmpfs(tmp_path / "disk", size="16m") as disk:
        lane = launch_lane(tmp_path / "lane", central, storage_dir=str(disk / "state"))
        try:
            assert lane.post("/v1/transactions", sale_body("before-full")).status_code == 200
            log_mark = lane.log.stat().st_size
            fill(disk / "runaway.log")

            # The WAL may still have room from earlier commits: sales go on until a write needs more.
            refused = None
            for n in range(400):
                r = lane.post("/v1/transactions", sale_body(f"full-{n}"))
                assert r.status_code in (200, 503), r.text
                if r.status_code == 503:
                    refused = f"full-{n}"
                    break
            assert refused is not None, "400 sales fit on a full disk"
            problem = r.json()
            assert problem["code"] == "storage_full"
            assert "full" in problem["message"]
            assert recorded(lane.state, refused) == (0, 0)  # nothing of it was kept

            again = lane.post("/v1/transactions", sale_body(refused))  # the POS retries: the same clear answer
            assert again.status_code == 503 and again.json()["code"] == "storage_full"
            health = lane.wait_for(lambda: (h := lane.health())["status"] == "error" and h,
                                   what="health red for the full disk")
            assert "ledger_unwritable" in {i["code"] for i in health["issues"]}
            time.sleep(1.5)  # the relay has tried to record central's answer on the full disk meanwhile
            codes = {i["code"] for i in lane.health()["issues"]}
            assert not codes & {"central_unreachable", "central_error"}, codes  # central is fine: the disk is not

            (disk / "runaway.log").unlink()  # store IT frees space
            retried = lane.post("/v1/transactions", sale_body(refused))
            assert retried.status_code == 200, retried.text
            assert lane.post("/v1/transactions", sale_body(refused)).json() == retried.json()  # once, not twice
            assert recorded(lane.state, refused) == (1, 1)
            lane.wait_for(lambda: "ledger_unwritable" not in {i["code"] for i in lane.health()["issues"]},
                          what="health no longer names the ledger")

            log = lane.log.read_bytes()[log_mark:].decode(errors="replace")
            assert "Traceback" not in log, log[-3000:]
            assert "ledger write refused, nothing of it kept: the disk is full" in log
        finally:
            lane.stop()


def test_a_start_on_a_full_disk_is_not_called_a_corrupt_ledger_and_may_be_retried(tmp_path, central):
    """A full disk at start is the disk's problem, not the ledger's: exit 1 (systemd starts posd again;
    2 and 3 it does not), a message that says the disk is full and names storage.dir, no advice to
    restore the ledger, the ledger untouched; once space is freed the lane starts with its history."""
    import subprocess
    import sys

    with small_tmpfs(tmp_path / "disk", size="16m") as disk:
        lane = launch_lane(tmp_path / "lane", central, storage_dir=str(disk / "state"))
        try:
            assert lane.post("/v1/transactions", sale_body("before-full")).status_code == 200
        finally:
            lane.stop()
        ledger = disk / "state" / "ledger.db"
        kept = ledger.read_bytes()
        fill(disk / "runaway.log")
        proc = subprocess.run([sys.executable, "-m", "posd", "run", "--config", str(lane.config)],
                              capture_output=True, text=True, timeout=60)
        assert proc.returncode == 1, proc.stderr
        assert "full" in proc.stderr and "storage.dir" in proc.stderr, proc.stderr
        assert "Restore" not in proc.stderr and "Traceback" not in proc.stderr, proc.stderr
        assert ledger.read_bytes() == kept

        (disk / "runaway.log").unlink()
        lane.start(timeout=30)
        try:
            assert recorded(lane.state, "before-full") == (1, 1)
        finally:
            lane.stop()


@pytest.mark.fault
def test_a_slip_waiting_on_a_full_disk_is_one_log_line_and_prints_once_space_is_freed(tmp_path, central, printer):
    """The print worker cannot commit the job it is about to send (the commit before its first byte, or the
    one that puts it back): a disk that refuses writes is expected, not a bug. One line when it starts, none
    per retry, one when writes succeed again, no traceback; the slip is not sent before its commit can be
    made and prints once after."""
    from posd.drivers.escpos_text import escpos_to_text

    with small_tmpfs(tmp_path / "disk", size="16m") as disk:
        lane = launch_lane(tmp_path / "lane", central, printer=printer.url, storage_dir=str(disk / "state"))
        try:
            printer.state = "paper_out"  # the slip waits in the queue, as one does when the disk fills
            assert lane.post("/v1/transactions", sale_body("slip-on-full")).status_code == 200
            lane.wait_for(lambda: "slip-on-full held: paper_out" in lane.log.read_text(), what="the slip held")
            log_mark = lane.log.stat().st_size
            fill(disk / "runaway.log")
            sold = ["slip-on-full"]
            for n in range(400):  # the WAL may still have room from earlier commits: used up by sales
                r = lane.post("/v1/transactions", sale_body(f"full-{n:03d}"))
                assert r.status_code in (200, 503), r.text
                if r.status_code == 503:
                    break
                sold.append(f"full-{n:03d}")
            assert r.status_code == 503, "400 sales fit on a full disk"
            log_mark = lane.log.stat().st_size
            printer.state = "online"  # the worker now needs a commit before the slip's first byte
            time.sleep(10)  # retries, each refused: two and more at the worker's longest backoff (5 s)
            assert not printer.jobs, "a slip was sent without its commit"
            during = lane.log.read_bytes()[log_mark:].decode(errors="replace")

            (disk / "runaway.log").unlink()  # store IT frees space
            printer.wait_for_jobs(len(sold), timeout=30)
            time.sleep(1.0)  # a slip sent twice would arrive meanwhile
            printed = [escpos_to_text(job, 48) for job in printer.jobs]
            for tid in sold:
                assert sum(tid in text for text in printed) == 1, (tid, printed)
            lane.wait_for(lambda: "ledger_unwritable" not in {i["code"] for i in lane.health()["issues"]},
                          what="health no longer names the ledger")
            after = lane.log.read_bytes()[log_mark:].decode(errors="replace")
        finally:
            lane.stop()
    assert "Traceback" not in after, after[-4000:]
    worker = [line for line in during.splitlines() if "posd.print" in line]
    assert 1 <= len(worker) <= 3, "\n".join(worker)
    assert any("full" in line for line in worker), "\n".join(worker)
    resumed = [line for line in after[len(during):].splitlines() if "posd.print" in line and "again" in line]
    assert len(resumed) == 1, after[len(during):]


def test_a_first_start_on_a_full_disk_leaves_no_ledger_to_refuse_once_space_is_freed(tmp_path, central):
    """A storage folder without ledger.db (a new lane, or right after archiving) on a full disk: posd
    exited 1 as it should but left a 0-byte ledger.db, which the next start, once space was freed, refused
    as a lost history (exit 3, never restarted by systemd, with advice to restore a backup)."""
    import shutil
    import subprocess
    import sys

    with small_tmpfs(tmp_path / "disk", size="16m") as disk:
        lane = launch_lane(tmp_path / "lane", central, storage_dir=str(disk / "state"))
        lane.stop()
        aside = tmp_path / "aside"
        aside.mkdir()
        for made in (disk / "state").glob("ledger.db*"):  # archived, as docs/install.md says
            shutil.move(made, aside / made.name)
        fill(disk / "runaway.log")
        proc = subprocess.run([sys.executable, "-m", "posd", "run", "--config", str(lane.config)],
                              capture_output=True, text=True, timeout=60)
        assert proc.returncode == 1 and "full" in proc.stderr, proc.stderr
        assert not list((disk / "state").glob("ledger.db*")), list((disk / "state").iterdir())
        (disk / "runaway.log").unlink()
        lane.start(timeout=30)
        try:
            assert lane.post("/v1/transactions", sale_body("after-full")).status_code == 200
        finally:
            lane.stop()


def test_a_new_lanes_first_start_on_a_full_disk_is_exit_1_not_a_config_error(tmp_path, central):
    """A storage folder that does not exist yet, on a full disk: posd said "config error at
    'storage.dir' ... No space left on device" and exited 2, which systemd never restarts, although
    `posd config check` passed the same config. A full disk at start is exit 1."""
    import subprocess
    import sys

    from tests.support.lane import free_port, lane_config

    with small_tmpfs(tmp_path / "disk", size="1m") as disk:
        fill(disk / "runaway.log")
        cfg = lane_config(tmp_path / "lane", central_url=central.url, secret="x", printer="none",
                          port=free_port(), storage_dir=str(disk / "new" / "state"))
        proc = subprocess.run([sys.executable, "-m", "posd", "run", "--config", str(cfg)],
                              capture_output=True, text=True, timeout=60)
        assert proc.returncode == 1, proc.stderr
        assert "full" in proc.stderr and "storage.dir" in proc.stderr and "config error" not in proc.stderr, \
            proc.stderr
