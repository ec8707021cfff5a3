"""A magstripe reader on a real pty, read by a real daemon: a payment card leaves no trace.

Every table of ledger.db and cache.db, the daemon's log and the SSE stream
are searched for the card number and the cardholder's name after the swipe.
"""

from __future__ import annotations

import json
import os
import sqlite3
import tty
from pathlib import Path

import pytest

from tests.support.central_fixture import running_central
from tests.support.lane import LaneProcess, free_port, lane_config

SEED = json.loads((Path(__file__).parent.parent / "config" / "demo-seed.json").read_text())
SECRET = SEED["stores"]["S001"]["secret"]
PAN = "4111111111111111"
SWIPE = f"%B{PAN}^DOE/JOHN^2512101000000000000000000?;{PAN}=25121010000000000000?\r".encode()


@pytest.fixture
def msr_pty(tmp_path):
    master, slave = os.openpty()
    tty.setraw(slave)
    link = tmp_path / "lane" / "msr0"
    link.parent.mkdir(parents=True, exist_ok=True)
    link.symlink_to(os.ttyname(slave))
    yield master, link
    os.close(master)
    os.close(slave)


@pytest.fixture
def lane(tmp_path, msr_pty):
    _, link = msr_pty
    with running_central(tmp_path / "central", SEED) as central:
        port = free_port()
        cfg = lane_config(tmp_path / "lane", central_url=central.url, secret=SECRET, printer="none", port=port)
        cfg.write_text(cfg.read_text() + f'\n[[card_reader]]\nname = "msr"\nurl = "msr+serial://{link}?suffix=CR"\n')
        proc = LaneProcess(cfg, port).start()
        proc.wait_synced()
        proc.wait_for(lambda: any(d["name"] == "msr" and d["state"] == "idle" for d in proc.health()["devices"]),
                      what="card reader idle")
        yield proc
        proc.stop()


def test_swiped_payment_card_leaves_no_digits_anywhere(lane, msr_pty):
    master, _ = msr_pty
    stream = lane.sse()
    seen = []
    try:
        os.write(master, SWIPE)
        rejected = stream.next("card.rejected")
        assert {k: rejected["data"][k] for k in ("device", "reason")} == {"device": "msr", "reason": "payment_card"}
        os.write(master, b";2900000000018?\r")  # then the member's loyalty card
        identified = stream.next("member.identified")
        assert identified["data"]["member"]["member_id"] == "M0001"
        seen = [rejected, identified]
        while not stream.events.empty():
            seen.append(stream.events.get())
    finally:
        stream.close()
    lane.stop()
    for secret in (PAN, PAN[:12], "DOE/JOHN"):
        assert secret not in json.dumps(seen)
        assert secret not in lane.log.read_text()
        for db in ("ledger.db", "cache.db"):
            dump = "\n".join(sqlite3.connect(lane.state / db).iterdump())
            assert secret not in dump, (db, secret)
