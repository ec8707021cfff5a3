"""A magstripe reader on a real pty, read by a real daemon: a payment card leaves no trace.

Every table of ledger.db and cache.db, the daemon's log and the SSE stream
are searched for the card number and the cardholder's name after the swipe.
"""

from __future__ import annotations

import json
import os
import sqlite3

import pytest

from tests.support.central_fixture import demo_seed

PAN = "4111111111111111"
SWIPE = f"%B{PAN}^DOE/JOHN^2512101000000000000000000?;{PAN}=25121010000000000000?\r".encode()


@pytest.fixture
def central_seed():
    return demo_seed()


@pytest.fixture
def msr_pty(tmp_path, pty_pair):
    master, slave = pty_pair()
    link = tmp_path / "lane" / "msr0"
    link.parent.mkdir(parents=True, exist_ok=True)
    link.symlink_to(os.ttyname(slave))
    return master, link


@pytest.fixture
def lane(tmp_path, msr_pty, start_lane):
    _, link = msr_pty
    proc = start_lane(tmp_path / "lane",
                      extra_config=f'\n[[card_reader]]\nname = "msr"\nurl = "msr+serial://{link}?suffix=CR"\n')
    proc.wait_for(lambda: any(d["name"] == "msr" and d["state"] == "idle" for d in proc.health()["devices"]),
                  what="card reader idle")
    return proc


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
