"""The member feed pulled in a child process (posd.member_pull): the same pages, the same cursor.

A snapshot longer than the puller's small first page is decoded and written by
a child process, so lookups in the daemon never wait on its GIL. These tests
drive it against the reference central over real HTTP into a real cache.db:
what lands is exactly the feed, a child killed mid-snapshot leaves the cursor
on a page boundary with exactly the members before it, and the next pull
applies the rest once.
"""

from __future__ import annotations

import os
import signal
import threading

import pytest

from posd.member_pull import ProcessMemberPull
from posd.storage.cache import Cache, LaneChanged
from posd.sync.lane.client import CentralClient
from posd.sync.lane.errors import CentralAuthError
from posd.sync.lane.puller import PROBE_LIMIT, SyncPuller
from tests.support.central_fixture import LANE_ID, STORE_ID, default_seed, make_client, running_central
from tests.support.wait import wait_until

MEMBERS = 2500


def member(i: int, **extra) -> dict:
    return {"member_id": f"S{i:06d}", "display_name": f"Member {i}", "tier": "basic",
            "identifiers": [f"27{i:011d}"], "balances": {"points": i % 500}, "applied_seq": {LANE_ID: 0}, **extra}


@pytest.fixture
def central_seed():
    seed = default_seed()
    seed["members"] += [member(i) for i in range(MEMBERS)]
    return seed


@pytest.fixture
def cache(tmp_path):
    cache = Cache(tmp_path / "cache.db", LANE_ID)
    yield cache
    cache.close()


def puller_for(client, cache, **kwargs):
    return SyncPuller(client, cache, members=ProcessMemberPull(client, cache.path, page_limit=500), **kwargs)


def test_a_snapshot_is_applied_by_the_child_exactly_as_central_sent_it(central, client, cache):
    puller = puller_for(client, cache)
    try:
        assert puller.run_once() == "updated"
    finally:
        puller.stop()
    total = MEMBERS + 3
    assert cache.member_count() == total
    assert puller.status()["members_applied"] == total
    # the small first page here, the rest in 500-member pages by the child
    assert central.request_count("members") == 1 + -(-(total - PROBE_LIMIT) // 500)
    assert cache.find_member("2700000002499").balances == {"points": 2499 % 500}
    assert cache.find_member("2900000000018").member_id == "M0001"
    central.store.upsert_member(member(7, balances={"points": 9999}))
    assert puller.run_once() == "updated"  # a small delta stays in the daemon's own thread
    assert cache.find_member("2700000000007").balances == {"points": 9999}
    assert central.request_count("members") == 1 + -(-(total - PROBE_LIMIT) // 500) + 1


def test_a_child_killed_mid_snapshot_loses_nothing_and_applies_nothing_twice(central, client, cache):
    central.inject("members", "slow", count=100, delay=0.15)  # every page takes a while: time to kill
    bulk = ProcessMemberPull(client, cache.path, page_limit=200)
    puller = SyncPuller(client, cache, members=bulk)
    outcome = []
    thread = threading.Thread(target=lambda: outcome.append(puller.run_once()))
    thread.start()
    try:
        wait_until(lambda: int(cache.member_cursor() or 0) > PROBE_LIMIT + 200, 60, "the child's pages landing")
        with bulk._lock:
            proc = bulk._proc
        proc.kill()  # as a power cut or the OOM killer would
        thread.join(60)
    finally:
        puller.stop()
    assert outcome == ["backoff"]
    cursor, landed = int(cache.member_cursor()), cache.member_count()
    # members carry central's change number as the cursor: what landed is exactly what precedes it
    assert landed == cursor and (landed - PROBE_LIMIT) % 200 == 0
    central.faults.clear()
    restarted = puller_for(client, cache)  # as the daemon after a restart
    try:
        assert restarted.run_once() == "updated"
    finally:
        restarted.stop()
    assert cache.member_count() == MEMBERS + 3
    assert restarted.status()["members_applied"] == MEMBERS + 3 - landed  # the rest, once


def state_and_parent(pid: int | str) -> tuple[str, int] | None:
    try:
        state, ppid = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()[:2]
    except (OSError, ValueError):
        return None  # not a process, or gone meanwhile
    return state, int(ppid)


def children_of(pid: int) -> list[int]:
    """Running child processes of ``pid`` (from /proc: this kernel lists no children file)."""
    found = ((int(e), state_and_parent(e)) for e in os.listdir("/proc") if e.isdigit())
    return [child for child, seen in found if seen is not None and seen[0] != "Z" and seen[1] == pid]


def running(pid: int) -> bool:
    return (state_and_parent(pid) or ("Z", 0))[0] != "Z"


def start_slow_snapshot(central, client, cache):
    """A pull whose pages each take a while, in a thread, once its child has written a page; the
    puller, its thread, and the child (the writer)."""
    central.inject("members", "slow", count=100, delay=0.15)
    bulk = ProcessMemberPull(client, cache.path, page_limit=200)
    puller = SyncPuller(client, cache, members=bulk)
    outcome = []
    thread = threading.Thread(target=lambda: outcome.append(puller.run_once()))
    thread.start()
    wait_until(lambda: int(cache.member_cursor() or 0) > PROBE_LIMIT + 200, 60, "the child's pages landing")
    with bulk._lock:
        return puller, thread, outcome, bulk._proc


def test_a_fetch_process_killed_mid_snapshot_loses_nothing_and_the_writer_says_so(central, client, cache):
    """The child's pages are fetched and built by a process of its own (FetchProcess): when that one
    dies, the writer stops after the last page it wrote, says so, and the next pull applies the rest once."""
    puller, thread, outcome, writer = start_slow_snapshot(central, client, cache)
    try:
        fetchers = children_of(writer.pid)
        assert len(fetchers) == 1
        os.kill(fetchers[0], signal.SIGKILL)
        thread.join(60)
    finally:
        puller.stop()
    assert outcome == ["backoff"]
    assert "fetch process ended early" in puller.status()["last_error"]
    cursor, landed = int(cache.member_cursor()), cache.member_count()
    assert landed == cursor and (landed - PROBE_LIMIT) % 200 == 0
    central.faults.clear()
    restarted = puller_for(client, cache)
    try:
        assert restarted.run_once() == "updated"
    finally:
        restarted.stop()
    assert cache.member_count() == MEMBERS + 3
    assert restarted.status()["members_applied"] == MEMBERS + 3 - landed


def test_a_fetch_process_stops_when_its_writer_is_killed(central, client, cache):
    puller, thread, outcome, writer = start_slow_snapshot(central, client, cache)
    try:
        fetcher = children_of(writer.pid)[0]
        writer.kill()
        thread.join(60)
        # orphaned, it stops at its next page: the writer's end of the pipe is gone, and so is its parent
        wait_until(lambda: not running(fetcher), 30, "the fetch process stopping")
    finally:
        puller.stop()
    assert outcome == ["backoff"]
    assert cache.member_count() == int(cache.member_cursor())


def test_a_pull_for_a_lane_id_the_cache_no_longer_follows_writes_nothing(tmp_path, cache):
    cache.apply_member_changes([member(1)], "1")
    second = Cache(cache.path, LANE_ID, checked=True)  # the child's writer
    try:
        cache.use_lane(f"{LANE_ID}.2")  # the ledger moved to a new identity meanwhile
        with pytest.raises(LaneChanged):
            second.apply_member_changes([member(2)], "2")
    finally:
        second.close()
    assert cache.member_count() == 1 and cache.member_cursor() is None


def test_the_childs_errors_reach_the_puller_as_the_clients_would(central, cache):
    wrong = CentralClient(central.url, STORE_ID, LANE_ID, b"not-the-store-secret")
    try:
        with pytest.raises(CentralAuthError):
            ProcessMemberPull(wrong, cache.path).pull(10, lambda: False, lambda n: None)
    finally:
        wrong.close()
    assert cache.member_count() == 0


def test_the_settings_handed_to_the_child_make_the_same_client(central):
    with make_client(central) as client:
        again = CentralClient.from_settings(client.settings())
        try:
            assert (again.base_url, again.store_id, again.lane_id) == (client.base_url, STORE_ID, LANE_ID)
            assert again.member_changes(None, 5)[0] == client.member_changes(None, 5)[0]
        finally:
            again.close()


def test_a_daemon_takes_a_snapshot_longer_than_its_first_page(tmp_path, start_lane):
    lane = start_lane(tmp_path / "lane")
    lane.wait_for(lambda: lane.health()["cache"]["members"] == MEMBERS + 3, 60, "the whole snapshot")
    answer = lane.get("/v1/members/2700000002400").json()
    assert answer["member_id"] == "S002400" and answer["balances"]["points"]["confirmed"] == 2400 % 500


def test_members_central_deleted_are_erased_through_the_daemon_before_they_leave(tmp_path, central, client):
    erased: list[str] = []

    def erase(member_ids):  # the daemon's ledger scrub: before cache.db forgets them, in the daemon's process
        still_there = [m for m in member_ids if cache.member_by_id(m) is not None]
        assert still_there == member_ids
        erased.extend(member_ids)

    cache = Cache(tmp_path / "erasing.db", LANE_ID, on_erased=erase)
    try:
        first = SyncPuller(client, cache, members=ProcessMemberPull(client, cache.path, on_erased=erase))
        assert first.run_once() == "updated"
        first.stop()
        gone = [member(i, status="deleted") for i in range(1000, 1250)]  # more than the first small page
        for m in gone:
            central.store.upsert_member(m)
        puller = SyncPuller(client, cache, members=ProcessMemberPull(client, cache.path, on_erased=erase))
        try:
            assert puller.run_once() == "updated"
        finally:
            puller.stop()
        assert sorted(erased) == sorted(m["member_id"] for m in gone)
        assert cache.member_count() == MEMBERS + 3 - len(gone)
        assert cache.find_member("2700000001100") is None
    finally:
        cache.close()


def test_a_member_central_sends_in_a_shape_posd_cannot_read_is_named_and_nothing_of_its_page_is_written(
        central, client, cache):
    """A central that sends one member with a count that is not a number (here its own store, written
    around its checks) stops the pull at that page, with the member named in the sync error, not a
    bare TypeError; the cursor stays, so the next pull after central is fixed takes the page again."""
    with central.store._write() as conn:  # a broken central: its own checks would refuse this
        conn.execute("UPDATE members SET qualifying = 'many' WHERE member_id = ?", ("S001234",))
    puller = puller_for(client, cache)
    try:
        assert puller.run_once() == "backoff"
        error = puller.status()["last_error"]
        assert "S001234" in error and "cannot read" in error, error
        assert cache.find_member("2700000001234") is None
        with central.store._write() as conn:
            conn.execute("UPDATE members SET qualifying = 0 WHERE member_id = ?", ("S001234",))
        assert puller.run_once() == "updated"
    finally:
        puller.stop()
    assert cache.find_member("2700000001234").member_id == "S001234"
    assert cache.member_count() == MEMBERS + 3


SENDER = """
import signal, sys
from posd.member_pull import _send
signal.signal(signal.SIGUSR1, lambda *_: None)  # a handler: each signal cuts a blocked write short
print("ready", flush=True)
rows = [(f"B{i:08d}", f"Member {i}", "basic", i, b"x" * 20) for i in range(1000)]
for n in range(400):
    _send(sys.stdout.buffer, ("page", n, rows))
"""


def test_pages_cross_the_pipe_whole_while_signals_cut_the_writes_short():
    """A big buffered write that a signal (or a debugger's stop) cuts short put bytes on the pipe
    out of order: the writer read a page it could not decode. Every page arrives whole now."""
    import subprocess
    import sys
    import time

    from posd.member_pull import _receive

    child = subprocess.Popen([sys.executable, "-c", SENDER], stdout=subprocess.PIPE)
    assert child.stdout.readline() == b"ready\n"
    stop = threading.Event()

    def interrupt() -> None:
        while not stop.is_set() and child.poll() is None:
            try:
                os.kill(child.pid, signal.SIGUSR1)
            except ProcessLookupError:
                return
            time.sleep(0.0005)

    kicker = threading.Thread(target=interrupt, daemon=True)
    kicker.start()
    try:
        got = []
        while (message := _receive(child.stdout)) is not None:
            got.append(message[1])
            assert message[0] == "page" and len(message[2]) == 1000 and message[2][-1][0] == "B00000999"
        assert got == list(range(400))
    finally:
        stop.set()
        kicker.join(5)
        child.kill()
        child.wait(10)


class Feed:
    """A member feed that records which pages were asked for, and holds page ``hold`` until told."""

    def __init__(self, pages: int, hold: int | None = None, fail_at: int | None = None):
        self.pages, self.fail_at = pages, fail_at
        self.asked: list[int] = []
        self.asking = {n: threading.Event() for n in range(1, pages + 1)}
        self.hold, self.release = hold, threading.Event()

    def __iter__(self):
        for n in range(1, self.pages + 1):
            self.asked.append(n)
            self.asking[n].set()
            if n == self.hold:
                assert self.release.wait(10)
            if n == self.fail_at:
                raise CentralAuthError("central refused the lane's key", status=401)
            yield [f"m{n}"], f"c{n}", n < self.pages


def test_the_next_page_is_asked_of_central_while_the_one_before_is_built():
    """The fetch process waits for central's next answer while it builds the page before, instead of
    one after the other."""
    from posd.member_pull import _ahead

    feed = Feed(3, hold=2)
    pages = _ahead(iter(feed), 10)
    assert next(pages) == (["m1"], "c1", True)
    assert feed.asking[2].wait(5), "page 2 was not asked for while page 1 was being built"
    feed.release.set()
    assert [p[1] for p in pages] == ["c2", "c3"]
    assert feed.asked == [1, 2, 3]


def test_pages_fetched_ahead_stop_at_the_most_asked_for_and_at_the_last():
    from posd.member_pull import _ahead

    feed = Feed(5)
    assert [p[1] for p in _ahead(iter(feed), 2)] == ["c1", "c2"]
    assert feed.asked == [1, 2], "a page past max_pages was fetched"
    feed = Feed(2)
    assert [p[1] for p in _ahead(iter(feed), 10)] == ["c1", "c2"]
    assert feed.asked == [1, 2]
    assert list(_ahead(iter(Feed(3)), 0)) == []


def test_centrals_error_while_fetching_ahead_comes_after_the_pages_before_it():
    from posd.member_pull import _ahead

    got = []
    with pytest.raises(CentralAuthError):
        for page in _ahead(iter(Feed(4, fail_at=3)), 10):
            got.append(page[1])
    assert got == ["c1", "c2"]
