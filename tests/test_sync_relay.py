"""OutboxRelay and SyncPuller against the real reference central over HTTP.

The outbox and cache are in-memory ports; central, sockets and SQLite are real.
Every wait is bounded; nothing asserts how long anything took.
"""

from __future__ import annotations

import dataclasses
import json
import random
import threading
import time

import pytest

from posd.sync.lane.errors import CentralRequestRejected
from posd.sync.lane.ports import EventResult
from posd.sync.lane.puller import REFRESH_BURST, REFRESH_PER_S, SyncPuller
from posd.sync.lane.relay import OutboxRelay
from posd.sync.lane.retry import RetryPolicy
from posd.sync.lane.worker import MAX_RETRY_AFTER, backoff_delay
from posd.sync.protocol import decode_batch
from tests.support.central_fixture import LANE_ID, STORE_ID, MemoryCache, MemoryOutbox, make_client
from tests.support.wait import wait_until


class TopRng(random.Random):
    """uniform() at its upper bound, so backoff ceilings are visible."""

    def uniform(self, a, b):
        return b


class BottomRng(random.Random):
    def uniform(self, a, b):
        return a


@pytest.fixture
def client(central):
    with make_client(central, timeout=(1.0, 0.5)) as c:
        yield c


def accepted_seqs(central):
    return [e["seq"] for e in central.store.events(STORE_ID, LANE_ID) if e["status"] == "accepted"]


# --- backoff -----------------------------------------------------------------------------------


def test_backoff_is_full_jitter_exponential_with_a_cap():
    top = TopRng()
    assert [backoff_delay(n, 0.5, 60.0, top) for n in range(1, 10)] == [0.5, 1, 2, 4, 8, 16, 32, 60, 60]
    assert backoff_delay(10_000, 0.5, 60.0, top) == 60.0
    assert backoff_delay(3, 0.5, 60.0, BottomRng()) == 0.0
    delays = {backoff_delay(5, 0.5, 60.0, random.Random(seed)) for seed in range(50)}
    assert len(delays) > 40 and all(0 <= d <= 8 for d in delays)


def test_retry_after_is_a_floor_with_a_sane_maximum():
    assert backoff_delay(1, 0.5, 60.0, BottomRng(), retry_after=7.0) == 7.0
    assert backoff_delay(8, 0.5, 60.0, TopRng(), retry_after=7.0) == 60.0
    assert backoff_delay(1, 0.5, 60.0, BottomRng(), retry_after=10**9) == MAX_RETRY_AFTER


def test_a_429_with_retry_after_is_a_slot_kept_whatever_the_failure_count():
    """Central-paced admission: a lane deep in backoff still comes back at its slot, not later."""
    policy = RetryPolicy(0.5, 300.0, rng=TopRng())
    waits = [policy.failed(None) for _ in range(20)]
    assert waits[:3] == [0.5, 1.0, 2.0] and waits[-1] == 300.0  # deep in an outage: the cap
    assert policy.failed(40.0, status=429) == 42.0  # the slot, jitter at most 10 % of it, at most 2 s
    assert policy.failed(4.0, status=429) == 4.4
    assert RetryPolicy(rng=BottomRng()).failed(7.0, status=429) == 7.0
    assert policy.failed(40.0, status=503) == 300.0  # a 503's Retry-After stays a floor
    assert policy.failures == 23  # health still counts paced answers as failures
    policy.succeeded()
    assert policy.failures == 0 and policy.failed(None) == 0.5
    assert RetryPolicy(rng=TopRng()).failed(10**9, status=429) == MAX_RETRY_AFTER + 2.0
    assert policy.parked() == 300.0


def test_a_429_with_a_retry_after_under_a_second_is_no_slot_and_backs_off():
    """A proxy answering 429 with Retry-After: 0 (or a date past, read as 0) had the relay push about
    22 times a second, for ever: a slot of 0 s, whatever the failure count."""
    policy = RetryPolicy(0.5, 300.0, rng=TopRng())
    assert [policy.failed(0.0, status=429) for _ in range(4)] == [0.5, 1.0, 2.0, 4.0]
    assert policy.failed(0.4, status=429) == 8.0
    assert RetryPolicy(0.5, 300.0, rng=BottomRng()).failed(0.0, status=429) == 0.0  # full jitter's first draw
    assert RetryPolicy(0.5, 300.0, rng=TopRng()).failed(1.0, status=429) == 1.1  # a one-second slot is one


def test_at_the_cap_the_wait_is_drawn_from_its_upper_half():
    """An outage: a fleet's first contact after it is spread evenly over the cap."""
    assert backoff_delay(9, 0.5, 60.0, BottomRng()) == 30.0 and backoff_delay(9, 0.5, 60.0, TopRng()) == 60.0
    assert backoff_delay(7, 0.5, 60.0, BottomRng()) == 0.0  # ceiling 32 < cap: full jitter
    assert backoff_delay(9, 0.5, 60.0, BottomRng(), spread_at_cap=False) == 0.0  # the policy before
    # before: a 429's Retry-After was a floor under the backoff draw; now it is the slot, plus jitter
    assert RetryPolicy(0.5, 60.0, rng=TopRng(), paced_429=False).failed(7.0, status=429) == 7.0
    assert RetryPolicy(0.5, 60.0, rng=TopRng()).failed(7.0, status=429) == 7.7


def test_the_relay_runs_the_retry_policy_object():
    relay = OutboxRelay(None, MemoryOutbox(), backoff_base=2.0, backoff_cap=9.0, rng=TopRng())
    assert isinstance(relay._policy, RetryPolicy)
    assert (relay._policy.base, relay._policy.cap, relay._policy.rng.__class__) == (2.0, 9.0, TopRng)


# --- relay, one step at a time ---------------------------------------------------------------------


class NamesOtherEvents:
    """central's answers, each naming another event_id than the one sent at its seq."""

    def __init__(self, client) -> None:
        self.client = client
        self.store_id, self.lane_id = client.store_id, client.lane_id

    def push_batch(self, batch_id, events):
        return [dataclasses.replace(r, event_id=f"not-{r.event_id}") for r in self.client.push_batch(batch_id, events)]


def test_an_answer_naming_another_event_acks_nothing(central, client):
    """An event leaves the outbox only on central's answer for that very event."""
    outbox = MemoryOutbox()
    for _ in range(3):
        outbox.add()
    relay = OutboxRelay(NamesOtherEvents(client), outbox)
    assert relay.run_once() == "backoff"
    assert outbox.count("acked") == 0 and outbox.count("pending") == 3
    assert "only part of the batch" in relay.status()["last_error"] and relay.status()["central_answered"]
    assert OutboxRelay(client, outbox).run_once() == "sent"  # central's own answers: duplicate, acked
    assert outbox.count("acked") == 3


def test_sends_pending_events_in_batches_then_is_idle(central, client):
    outbox = MemoryOutbox()
    for _ in range(5):
        outbox.add()
    relay = OutboxRelay(client, outbox, max_events=2)
    assert [relay.run_once() for _ in range(4)] == ["sent", "sent", "sent", "idle"]
    assert outbox.count("acked") == 5 and accepted_seqs(central) == [1, 2, 3, 4, 5]
    status = relay.status()
    assert status["state"] == "idle" and status["consecutive_failures"] == 0 and status["last_success_at"]
    assert status["sent_events"] == 5 and status["running"] is False
    assert central.store.member("M0001")["balances"] == {"points": 1840 + 50}


def test_applied_then_lost_is_retried_and_central_holds_each_event_once(central, client):
    outbox = MemoryOutbox()
    for _ in range(3):
        outbox.add()
    central.inject("push", "applied_then_lost")
    relay = OutboxRelay(client, outbox, backoff_base=0.01)
    assert relay.run_once() == "backoff"
    assert outbox.count("pending") == 3 and accepted_seqs(central) == [1, 2, 3]
    assert relay.run_once() == "sent"
    assert outbox.recorded[-1] == [EventResult(s, "duplicate") for s in (1, 2, 3)]
    assert outbox.count("acked") == 3 and accepted_seqs(central) == [1, 2, 3]
    assert central.store.member("M0001")["balances"] == {"points": 1870}


def test_503_backs_off_and_counts_failures_then_recovers(central, client):
    outbox = MemoryOutbox()
    outbox.add()
    central.inject("push", "503", count=2)
    relay = OutboxRelay(client, outbox, rng=TopRng(), backoff_base=0.5)
    assert relay.run_once() == "backoff"
    assert relay.run_once() == "backoff"
    status = relay.status()
    assert status["state"] == "backoff" and status["consecutive_failures"] == 2
    assert "503" in status["last_error"] and 0 < status["next_attempt_in_s"] <= 1.0
    assert relay.failing()  # what every sale asks (its offline flag)
    assert relay.run_once() == "sent"
    assert relay.status()["consecutive_failures"] == 0 and relay.status()["last_error"] is None
    assert not relay.failing()


def test_central_answering_a_push_ends_the_offline_flag_before_its_answers_free_the_caps(central):
    """A push's answers free the offline caps its burns held. The relay still counted its failures
    while it wrote them, so a burn deciding then went offline and spent the caps just freed. The
    client's on_answer (the daemon's) comes with the answer, before the acks are written."""
    answered = []
    with make_client(central, timeout=(1.0, 0.5), on_answer=lambda: answered.append(time.monotonic())) as c:
        outbox = MemoryOutbox()
        outbox.add()
        central.inject("push", "503")
        relay = OutboxRelay(c, outbox, backoff_base=0.01)
        assert relay.run_once() == "backoff" and relay.out_of_reach(None)
        flag_while_acked = []
        record = outbox.record_results

        def recording(results):
            flag_while_acked.append(relay.out_of_reach(answered[-1]))  # what a burn asks while they are written
            record(results)

        outbox.record_results = recording
        assert relay.run_once() == "sent"
        assert flag_while_acked == [False] and not relay.out_of_reach(answered[-1])
        central.inject("push", "503")
        outbox.add()
        assert relay.run_once() == "backoff" and relay.out_of_reach(answered[-1])  # a later failure counts again


class AnswersFirstOnly:
    """A central answering only the first event of each batch (a partial answer)."""

    def __init__(self, client) -> None:
        self.client = client
        self.store_id, self.lane_id = client.store_id, client.lane_id

    def push_batch(self, batch_id, events):
        return self.client.push_batch(batch_id, events)[:1]


def test_the_lane_is_in_reach_once_central_answers_any_part_of_it(central):
    """The offline flag (posd.daemon: relay or puller out of reach): a push's answer freed the caps
    its burns held while the puller still failed (its own request to a central that was down under
    way, or its backoff cut once already this outage), and burns went offline against the caps
    freed. A worker is out of reach only while its last unanswered failure is later than central's
    last answer to any part of the lane."""
    answered = []
    with make_client(central, timeout=(1.0, 0.5), on_answer=lambda: answered.append(time.monotonic())) as c:
        puller = SyncPuller(c, MemoryCache(), backoff_base=0.01)
        puller._failed("central unreachable: ConnectionError", None)  # as a pull to a central that was down
        assert puller.out_of_reach(None)
        with puller._lock:  # its next pull under way, sent to the central that was down
            puller._in_step, puller._step_began = True, time.monotonic()
        outbox = MemoryOutbox()
        outbox.add()
        assert OutboxRelay(c, outbox).run_once() == "sent"  # central answers the relay
        puller.central_reached()  # in a step: leaves it be
        assert puller.failing() and not puller.out_of_reach(answered[-1])
        puller._failed("central timed out: ConnectTimeout", None)  # that pull, sent before the answer
        assert not puller.out_of_reach(answered[-1])
        with puller._lock:
            puller._in_step = False
        puller._failed("central unreachable: ConnectionError", None)  # one asked after that answer counts
        assert puller.out_of_reach(answered[-1])


def test_a_push_central_answers_in_part_keeps_the_lane_in_reach(central):
    """A partial answer (or a retryable refusal) acks what central answered, freeing its caps, and is a
    failure: the relay's failing() went true again and burns spent the caps freed offline. Central
    answered, so the lane is in reach; health still says central_error."""
    answered = []
    with make_client(central, timeout=(1.0, 0.5), on_answer=lambda: answered.append(time.monotonic())) as c:
        outbox = MemoryOutbox()
        for _ in range(3):
            outbox.add()
        central.inject("push", "503")
        relay = OutboxRelay(AnswersFirstOnly(c), outbox, backoff_base=0.01)
        assert relay.run_once() == "backoff" and relay.out_of_reach(None)  # 503: central shedding load
        assert relay.run_once() == "backoff" and outbox.count("acked") == 1
        assert relay.failing() and relay.status()["central_answered"]
        assert not relay.out_of_reach(answered[-1])


def test_429_retry_after_is_the_floor_of_the_next_wait(central, client):
    outbox = MemoryOutbox()
    outbox.add()
    central.inject("push", "429")
    relay = OutboxRelay(client, outbox, rng=BottomRng())
    assert relay.run_once() == "backoff"
    assert 0.5 < relay.status()["next_attempt_in_s"] <= 1.0  # Retry-After: 1, jitter drew 0


def test_seq_gap_stays_pending_and_backs_off(central, client):
    outbox = MemoryOutbox()
    for _ in range(4):
        outbox.add()
    outbox.state[1] = outbox.state[2] = "acked"  # as if central had lost seqs 1-2
    relay = OutboxRelay(client, outbox)
    assert relay.run_once() == "backoff"
    assert outbox.count("pending") == 2 and "seq_gap" in relay.status()["last_error"]
    assert central.store.last_seq(STORE_ID, LANE_ID) == 0
    # central answers: health says central_error, not central_unreachable (a network to check)
    assert relay.status()["central_answered"]


def test_rejected_events_are_quarantined_and_the_rest_acked(central, client):
    outbox = MemoryOutbox()
    outbox.add()
    outbox.add(member_id="M9999")
    outbox.add()
    relay = OutboxRelay(client, outbox)
    assert relay.run_once() == "sent"
    assert outbox.state == {1: "acked", 2: "quarantined", 3: "acked"} and outbox.codes[2] == "unknown_member"
    assert relay.status()["quarantined_events"] == 1


def test_auth_failure_stops_hammering(central, client):
    outbox = MemoryOutbox()
    outbox.add()
    central.inject("push", "401", count=100)
    statuses = []
    relay = OutboxRelay(client, outbox, auth_retry_interval=300.0, backoff_base=0.001, on_status=statuses.append)
    relay.start()
    try:
        wait_until(lambda: relay.status()["state"] == "auth_failed", what="auth_failed")
        for _ in range(5):
            relay.wake()  # a fresh sale must not bypass the auth wait
            outbox.add()
        time.sleep(0.3)  # room to misbehave
        assert central.request_count("push") == 1
        status = relay.status()
        assert status["running"] and status["next_attempt_in_s"] > 250 and "401" in status["last_error"]
        assert statuses and statuses[-1]["state"] == "auth_failed"
    finally:
        assert relay.stop(timeout=5)
    assert not relay.status()["running"]


def test_413_halves_the_batch_size():
    class TooLarge:
        store_id, lane_id, last_clock_skew_s = STORE_ID, LANE_ID, None

        def __init__(self):
            self.sizes = []

        def push_batch(self, batch_id, events):
            self.sizes.append(len(events))
            if len(self.sizes) == 1:
                raise CentralRequestRejected("too big", status=413, code="batch_too_large")
            return [EventResult(e["seq"], "accepted") for e in events]

    outbox = MemoryOutbox()
    for _ in range(10):
        outbox.add()
    fake = TooLarge()
    relay = OutboxRelay(fake, outbox, max_events=8)
    assert [relay.run_once() for _ in range(3)] == ["backoff", "sent", "sent"]
    assert fake.sizes == [8, 4, 6]


def test_a_broken_outbox_is_a_local_error_not_a_crash_nor_central_unreachable(client):
    """The lane's own disk failing is not central failing: no failure counted (the lane is not
    offline, health names no central problem), tried again soon rather than after a backoff."""
    class Broken(MemoryOutbox):
        def pending_batch(self, max_events, max_bytes):
            raise OSError("disk I/O error")

    relay = OutboxRelay(client, Broken())
    assert relay.run_once() == "local_error"
    status = relay.status()
    assert (status["state"], status["last_error"], status["consecutive_failures"]) == \
        ("local_error", "outbox: OSError", 0)
    assert not relay.failing()
    assert 0 < status["next_attempt_in_s"] <= 1.0


# --- relay thread ---------------------------------------------------------------------------------


def test_wake_sends_a_fresh_event_at_once(central, client):
    outbox = MemoryOutbox()
    relay = OutboxRelay(client, outbox, idle_interval=600.0)
    relay.start()
    try:
        wait_until(lambda: relay.status()["state"] == "idle", what="idle")
        outbox.add()
        relay.wake()
        wait_until(lambda: outbox.count("acked") == 1, timeout=10, what="woken send")
    finally:
        assert relay.stop()


def test_hurry_sends_at_once_through_the_linger_but_not_through_a_backoff(central, client):
    outbox = MemoryOutbox()
    relay = OutboxRelay(client, outbox, idle_interval=600.0, linger=600.0, backoff_base=1000.0, backoff_cap=1000.0,
                        rng=TopRng())
    relay.start()
    try:
        outbox.add()
        relay.wake()
        wait_until(lambda: outbox.count("acked") == 1, timeout=10, what="first send")
        outbox.add()
        relay.wake()  # lingering after a push: a wake waits for the next sales to gather
        time.sleep(0.5)
        assert outbox.count("acked") == 1
        relay.hurry()  # a voucher other lanes may be shown next
        wait_until(lambda: outbox.count("acked") == 2, timeout=10, what="hurried send")
        central.inject("push", "503")
        outbox.add()
        relay.hurry()
        wait_until(lambda: relay.status()["state"] == "backoff", what="backoff")  # 1000 s
        relay.hurry()
        time.sleep(0.5)
        assert relay.status()["state"] == "backoff" and outbox.count("acked") == 2
    finally:
        assert relay.stop()


def test_drains_through_every_fault_exactly_once(central, client):
    outbox = MemoryOutbox()
    relay = OutboxRelay(client, outbox, max_events=7, backoff_base=0.01, backoff_cap=0.05, idle_interval=0.05)
    for fault in ("500", "reset", "applied_then_lost", "503", "timeout", "applied_then_lost", "429"):
        central.inject("push", fault, delay=1.0 if fault == "timeout" else None)
    relay.start()
    try:
        for round_ in range(5):
            for _ in range(10):
                outbox.add(points={"points": 3})
            relay.wake()
        wait_until(lambda: outbox.count("acked") == 50, timeout=30, what="outbox drained")
    finally:
        assert relay.stop(timeout=5)
    assert accepted_seqs(central) == list(range(1, 51))
    assert len(central.store.events(STORE_ID, LANE_ID)) == 50
    assert central.store.member("M0001")["balances"] == {"points": 1840 + 150}
    assert central.request_count("push") >= 8


class Journal(MemoryOutbox):
    """MemoryOutbox that notes what the relay does to it and when, for the pipelining checks: a
    batch's answers are written only once the next push started (or 5 s went by), and say which."""

    def __init__(self):
        super().__init__()
        self.reads_after: list[int] = []
        self.pushes_from: list[int] = []  # the first seq of each push, as it starts
        self.written_during_next: list[bool] = []  # per recorded batch with more behind it
        self.noted = threading.Condition()

    def pending_batch(self, max_events, max_bytes, after=0):
        batch = super().pending_batch(max_events, max_bytes, after)
        with self.noted:
            self.reads_after.append(after)
            self.noted.notify_all()
        return batch

    def record_results(self, results):
        last = max(r.seq for r in results)
        if last < len(self.events):
            self.written_during_next.append(self.wait_for(lambda: last + 1 in self.pushes_from))
        super().record_results(results)

    def pushing(self, first_seq: int) -> None:
        with self.noted:
            self.pushes_from.append(first_seq)
            self.noted.notify_all()

    def wait_for(self, what, timeout=5.0) -> bool:
        with self.noted:
            return self.noted.wait_for(what, timeout)


class Watching:
    """The real client, pushing only once the relay has read the next batch (or 5 s went by)."""

    def __init__(self, client, outbox: Journal):
        self.client, self.outbox = client, outbox
        self.store_id, self.lane_id = client.store_id, client.lane_id
        self.in_flight = self.most_in_flight = 0
        self.sent: list[list[int]] = []
        self.read_during: list[bool] = []  # per push: the next batch was read while it was in flight
        self._lock = threading.Lock()

    def push_batch(self, batch_id, events):
        seqs = [e["seq"] if isinstance(e, dict) else json.loads(e)["seq"] for e in events]
        with self._lock:
            self.in_flight += 1
            self.most_in_flight = max(self.most_in_flight, self.in_flight)
            self.sent.append(seqs)
        self.outbox.pushing(seqs[0])
        try:
            self.read_during.append(self.outbox.wait_for(lambda: seqs[-1] in self.outbox.reads_after))
            return self.client.push_batch(batch_id, events)
        finally:
            with self._lock:
                self.in_flight -= 1


def drain_backlog(client, watcher: type[Watching]) -> tuple[Journal, Watching]:
    """23 events through a running relay in batches of 5, each push through ``watcher``; every
    batch sent once, in seq order. The outbox and the watcher, for what they saw."""
    outbox = Journal()
    for _ in range(23):
        outbox.add(points={"points": 1})
    watching = watcher(client, outbox)
    relay = OutboxRelay(watching, outbox, max_events=5, idle_interval=600.0)
    relay.start()
    try:
        wait_until(lambda: outbox.count("acked") == 23, timeout=60, what="backlog drained")
    finally:
        assert relay.stop()
    assert watching.sent == [list(range(first, min(24, first + 5))) for first in range(1, 24, 5)]
    return outbox, watching


@pytest.mark.long  # seconds of real time: CI runs it with the fault runs (make test-faults)
def test_a_backlog_is_pipelined_one_batch_in_flight_in_seq_order(central, client):
    """While central applies a full batch the relay reads the next one, and it writes the last
    batch's answers while central applies the next; still one batch in flight, in seq order."""
    outbox, watching = drain_backlog(client, Watching)
    assert watching.most_in_flight == 1
    # every full batch had the next one read while it was in flight (the last, short one has none)
    assert watching.read_during == [True] * 4 + [False]
    assert outbox.written_during_next == [True] * 4
    assert accepted_seqs(central) == list(range(1, 24))
    assert central.store.member("M0001")["balances"] == {"points": 1840 + 23}


class WatchingBodies(Watching):
    """Watching, with the real client's push of a ready body too: which pushes came encoded."""

    def __init__(self, client, outbox: Journal):
        super().__init__(client, outbox)
        self.encoded: list[bool] = []

    def push_batch(self, batch_id, events):
        self.encoded.append(False)
        return super().push_batch(batch_id, events)

    def push_encoded(self, batch_id, body):
        self.encoded.append(True)
        decoded_id, events = decode_batch(body)
        assert decoded_id == batch_id
        return super().push_batch(batch_id, events)


@pytest.mark.long  # seconds of real time: CI runs it with the fault runs (make test-faults)
def test_a_backlog_batch_read_ahead_is_also_encoded_ahead(central, client):
    """The batch read while central applies the one before is encoded then too, so the gzip of a
    full batch is not between central's answer and the next push."""
    _, watching = drain_backlog(client, WatchingBodies)
    assert watching.encoded == [False] + [True] * 4  # every push after the first was read ahead
    assert watching.most_in_flight == 1 and watching.read_during == [True] * 4 + [False]
    assert accepted_seqs(central) == list(range(1, 24))


@pytest.mark.parametrize("fault", ["503", "429", "applied_then_lost"])
def test_a_pipelined_relay_sends_nothing_after_a_batch_central_wants_again(central, client, fault):
    """A retryable refusal (503, 429 with Retry-After) or a lost answer stops the pipeline: the batch
    read ahead while the first was in flight is not sent; the first batch's seqs go again, then on."""
    outbox = Journal()
    for _ in range(9):
        outbox.add()
    central.inject("push", fault)
    watching = Watching(client, outbox)
    relay = OutboxRelay(watching, outbox, max_events=3, backoff_base=0.01, backoff_cap=0.05, idle_interval=600.0,
                        rng=TopRng())
    relay.start()
    try:
        wait_until(lambda: outbox.count("acked") == 9, timeout=30, what=f"drained after {fault}")
    finally:
        assert relay.stop()
    assert watching.read_during[0]  # the next batch was read ahead while the refused one was in flight
    assert watching.sent == [[1, 2, 3], [1, 2, 3], [4, 5, 6], [7, 8, 9]]
    assert accepted_seqs(central) == list(range(1, 10))
    assert len(central.store.events(STORE_ID, LANE_ID)) == 9


def test_stop_interrupts_a_backoff_wait(central, client):
    outbox = MemoryOutbox()
    outbox.add()
    central.inject("push", "503")
    relay = OutboxRelay(client, outbox, backoff_base=1000.0, backoff_cap=1000.0, rng=TopRng())
    relay.start()
    wait_until(lambda: relay.status()["state"] == "backoff", what="backoff")
    assert relay.stop(timeout=5)


# --- puller ----------------------------------------------------------------------------------------


def test_pulls_members_by_cursor_then_the_program_by_etag(central, client):
    cache = MemoryCache()
    puller = SyncPuller(client, cache, page_limit=2)
    assert puller.run_once() == "updated"
    assert sorted(cache.members) == ["M0001", "M0002", "M0003"]
    assert [n for n, _ in cache.pages] == [2, 1] and cache.cursor == cache.pages[-1][1]
    assert cache.program["version"] == "test-1" and cache.etag.startswith('"')
    assert central.request_count("members") == 2 and central.request_count("program") == 1

    assert puller.run_once() == "unchanged"
    assert cache.program_stores == 1 and len(cache.pages) == 2  # 304, nothing re-applied
    assert puller.status()["members_applied"] == 3


def test_pulled_members_carry_the_watermark_after_a_push(central, client):
    cache = MemoryCache()
    puller = SyncPuller(client, cache)
    puller.run_once()
    outbox = MemoryOutbox()
    outbox.add()
    outbox.add(member_id="M0002")
    outbox.add()
    OutboxRelay(client, outbox).run_once()
    assert puller.run_once() == "updated"
    assert cache.members["M0001"]["applied_seq"] == {LANE_ID: 3}
    assert cache.members["M0002"]["applied_seq"] == {LANE_ID: 2}
    assert cache.members["M0001"]["balances"] == {"points": 1860}


def test_puller_backs_off_and_keeps_its_cursor(central, client):
    cache = MemoryCache()
    puller = SyncPuller(client, cache, page_limit=2)
    central.inject("members", "503")
    assert puller.run_once() == "backoff" and cache.cursor is None
    central.inject("members", "reset")
    assert puller.run_once() == "backoff" and puller.status()["consecutive_failures"] == 2
    assert puller.run_once() == "updated" and len(cache.members) == 3
    central.inject("program", "401")
    assert puller.run_once() == "auth_failed" and puller.status()["state"] == "auth_failed"


def test_a_cursor_central_refuses_is_dropped_and_every_member_pulled_again(central, client):
    """central restored from a backup no longer knows the lane's cursor: the lane pulls every member
    again, once, instead of hearing "nothing changed" forever or backing off forever."""
    cache = MemoryCache()
    puller = SyncPuller(client, cache, page_limit=2)
    assert puller.run_once() == "updated"
    cache.members.clear()
    cache.cursor = str(int(cache.cursor) + 10**9)  # handed out by the central before the restore
    central.store.upsert_member({"member_id": "M0042", "display_name": "After The Restore"})
    assert puller.run_once() == "updated"
    assert sorted(cache.members) == ["M0001", "M0002", "M0003", "M0042"]
    assert int(cache.cursor) < 10**9 and puller.status()["consecutive_failures"] == 0
    assert puller.run_once() == "unchanged"


def test_a_refresh_is_answered_by_a_pull_that_started_after_it(central, client):
    """refresh(): the member changes pulled now, in the puller's thread, long before the interval ends;
    its future is True once they are applied, False when that pull failed, and False when the puller
    stops first. Pulls asked for so come in a burst, then a few a second."""
    cache = MemoryCache()
    puller = SyncPuller(client, cache, member_interval=3600.0, program_interval=3600.0)
    puller.start()
    try:
        wait_until(lambda: "M0001" in cache.members, what="first pull")
        central.store.upsert_member({"member_id": "M0077", "display_name": "Just Enrolled"})
        assert puller.refresh().result(timeout=10) is True
        assert "M0077" in cache.members
        # one right after another is pulled at once (its caller waits 800 ms at most); a flood is paced
        asked = time.monotonic()
        assert puller.refresh().result(timeout=10) is True and time.monotonic() - asked < 0.75  # the budget: 0.8
        for _ in range(REFRESH_BURST + 3):
            assert puller.refresh().result(timeout=10) is True
        assert time.monotonic() - asked >= 4 / REFRESH_PER_S - 0.1
        central.inject("members", "503")
        assert puller.refresh().result(timeout=10) is False
    finally:
        puller.stop()
    assert puller.refresh().result(timeout=1) is False


def test_a_refresh_whose_caller_gave_up_during_its_pull_leaves_the_pull_a_success(central, client):
    """A caller that stopped waiting cancelled its future; cancelled while its pull ran, the puller's
    answer raised, the good pull counted as a failure and the lane went offline for a backoff. A
    future is running once its pull starts (the caller cannot cancel it then), and one cancelled
    before is left out."""
    cache = MemoryCache()
    puller = SyncPuller(client, cache)
    given_up = puller.refresh()
    assert given_up.cancel()  # before its pull: left out
    pulling, release = threading.Event(), threading.Event()
    pages = client.member_changes

    def slow_pages(*args: object) -> object:
        pulling.set()
        release.wait(10)
        return pages(*args)

    client.member_changes = slow_pages
    waited = puller.refresh()
    runner = threading.Thread(target=puller.run_once)
    runner.start()
    assert pulling.wait(10)
    assert not waited.cancel()  # running: the caller's timeout cannot cancel it
    release.set()
    runner.join(10)
    assert waited.result(timeout=1) is True and given_up.cancelled()
    assert puller.status()["state"] == "ok" and not puller.failing()


def test_a_refresh_while_the_puller_backs_off_is_answered_at_once(central, client):
    """In a wait a wake does not cut (a backoff, central's Retry-After, the disk), no pull starts within
    the caller's budget: it hears so at once instead of waiting the budget out."""
    cache = MemoryCache()
    puller = SyncPuller(client, cache)
    central.inject("members", "503")
    assert puller.run_once() == "backoff"
    assert puller.refresh().result(timeout=0) is False


def test_puller_thread_fills_the_cache_and_stops(central, client):
    cache = MemoryCache()
    puller = SyncPuller(client, cache, member_interval=0.05, program_interval=60.0)
    puller.start()
    try:
        wait_until(lambda: len(cache.members) == 3 and cache.program is not None, what="cache filled")
        central.store.upsert_member({"member_id": "M0042", "display_name": "Pulled Later"})
        wait_until(lambda: "M0042" in cache.members, what="change pulled")
    finally:
        assert puller.stop()
    assert puller.status()["state"] == "ok"
