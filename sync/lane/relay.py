"""The outbox relay: sends the outbox to central one batch at a time, lowest seq first.

Before its first push it settles the lane's sync identity: central's history
of the lane id must be this ledger's, or the ledger moves to a new
incarnation (docs/sync-protocol.md, lane identity).
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

from posd.faults import crash_point
from posd.sync.lane.errors import CentralAuthError, CentralRequestRejected, LaneIdentityConflict, SyncError
from posd.sync.lane.ports import EventResult, IdentityPort, OutboxEvent, OutboxPort
from posd.sync.lane.worker import Worker
from posd.sync.protocol import MAX_BATCH_BYTES, MAX_BATCH_EVENTS, encode_batch

log = logging.getLogger("posd.sync.relay")

_ENVELOPE_BYTES = 1024  # batch_id and the JSON around the events
# Events per push: the protocol's most. Central's cost is mostly per batch (signature, transaction,
# sync), so a backlog drains about twice as fast in 1000s as in 500s; the byte limit still trims.
BATCH_EVENTS = MAX_BATCH_EVENTS
MAX_INCARNATIONS = 100  # lane ids tried when a ledger's history is not central's

class OutboxRelay(Worker):
    """Sends the outbox to central one batch at a time, lowest seq first."""

    thread_name = "sync-relay"
    activity = "push"

    def __init__(
        self,
        client: Any,
        outbox: OutboxPort,
        *,
        max_events: int = BATCH_EVENTS,
        max_bytes: int = 1_000_000,
        idle_interval: float = 1.0,
        identity: IdentityPort | None = None,
        linger: float = 0.2,
        on_push: Callable[[float | None, int, bool], None] | None = None,
        on_flagged: Callable[[list[dict[str, Any]]], None] | None = None,
        **worker: Any,
    ) -> None:
        """``on_push(seconds, events, ok)`` after every push attempt (metrics); ``on_flagged(events)`` with
        the events central flagged (a member token used at another lane, a birthday bonus another lane
        gave first: their bodies, as pushed, with ``code``);
        ``worker``: backoff_base, backoff_cap, auth_retry_interval, rng, on_status, clock (Worker)."""
        super().__init__(client, **worker)
        self._on_push = on_push
        self._on_flagged = on_flagged
        self._outbox = outbox
        self._identity = identity  # the lane id's owner; the client reads it from there too
        self._identity_settled = identity is None  # a relay without one sends under the client's id
        self._compared: tuple[int, int] | None = None  # (central's last seq, ours acked) at the last compare
        self._max_events = max(1, min(max_events, MAX_BATCH_EVENTS))
        self._batch_events = self._max_events  # shrinks after a 413, grows back on success
        self._max_bytes = max(1, min(max_bytes, MAX_BATCH_BYTES - _ENVELOPE_BYTES - MAX_BATCH_EVENTS))
        self._idle_interval = idle_interval
        self._linger = linger
        self._sender: ThreadPoolExecutor | None = None  # while the relay's thread runs
        self._inflight: _Push | None = None  # the next batch, sent before the last one's answers were written
        self._hurried = False  # hurry() during a push: that push's linger is skipped
        self._lingering = False  # this step ended in a linger: a hurry() from here on cuts it
        self._sent_events = 0
        self._quarantined = 0
        self._token_replays = 0
        self._birthday_repeats = 0

    def hurry(self) -> None:
        """An event other lanes are waiting for was appended (a voucher issued here: the member may be at
        the next lane in a moment, and that lane asks central). Pushed now, without the linger that
        lets sales gather; a backoff, a 429's wait or a parked relay still holds."""
        with self._lock:
            if self._state == "ok" and (self._lingering or not self._in_step):  # lingering after a push
                self._interrupt.set()
            elif self._in_step:
                self._hurried = True  # the push under way ends without its linger
        self.wake()

    def run_once(self) -> str:
        """One batch: pending -> push -> record.
        Returns sent | idle | backoff | auth_failed | identity_conflict.

        While the relay's thread runs (start()), a backlog is pipelined: the next full batch is read
        while central applies this one, is sent as soon as this one is answered, and this one's
        answers are written while central applies the next. Still one batch in flight, in seq
        order: central sees the same requests as from a relay that waits, only sooner."""
        if not self._identity_settled:
            try:
                self._settle_identity()
            except Exception as exc:
                if isinstance(exc, (CentralAuthError, LaneIdentityConflict)) and self._identity is not None:
                    self._identity.park()  # parked until a person acts: burns no longer wait for the check
                if isinstance(exc, LaneIdentityConflict) and exc.central_last_seq and self._identity is not None \
                        and getattr(self._client, "lane_id", None) == self._identity.lane_id:  # the lane id checked
                    self._acknowledge_held(exc.central_last_seq)
                return self._sync_error(exc)
        with self._lock:
            self._lingering = False  # a hurry() during this step is noted in _hurried until it settles
        push, self._inflight = self._inflight, None
        if push is None:
            try:
                events = _fit(self._outbox.pending_batch(self._batch_events, self._max_bytes), self._max_bytes)
            except Exception as exc:
                log.exception("outbox read failed", extra={"event": "sync-relay.outbox_error"})
                return self._local_failed(f"outbox: {type(exc).__name__}")
            if not events:
                self._wait("idle", self._idle_interval)
                return "idle"
            push = self._send(events)
        following = self._following(push.events)  # read and encoded while central applies this batch
        events = push.events
        try:
            results = push.future.result()
        except CentralRequestRejected as exc:
            self._pushed(None, len(events), False)
            if exc.status == 413:
                self._batch_events = max(1, len(events) // 2)
            return self._sync_error(exc)
        except Exception as exc:
            self._pushed(None, len(events), False)
            return self._sync_error(exc)
        self._pushed(push.seconds, len(events), True)
        if following is not None and _complete(events, results):
            self._inflight = self._launch(following)  # central applies it while these answers are written
        outcome = self._record(events, results)
        if outcome == "sent":
            counts = {s: sum(1 for r in results if r.status == s) for s in ("accepted", "duplicate", "rejected")}
            log.info("push: %d event(s), seq %d-%d, in %.0f ms: %d accepted, %d duplicate, %d rejected",
                     len(events), events[0].seq, events[-1].seq, push.seconds * 1000, counts["accepted"],
                     counts["duplicate"], counts["rejected"], extra={"event": "sync-relay.sent"})
        return outcome

    def _send(self, events: list[OutboxEvent]) -> _Push:
        """Push ``events``: on the sender thread while the relay's thread runs, else here and now."""
        return self._launch(_Push(events, self._batch_id(events), self._client))

    def _launch(self, push: _Push) -> _Push:
        crash_point("mid_batch")  # picked, not yet acknowledged
        push.future = self._sender.submit(push.run) if self._sender is not None else push.run_here()
        return push

    def _following(self, events: list[OutboxEvent]) -> _Push | None:
        """The push after ``events`` when the relay's thread runs and ``events`` was full (a backlog):
        read and encoded now, sent once central has answered ``events``. None when there is none yet."""
        if self._sender is None or len(events) < self._batch_events:
            return None
        try:
            following = _fit(self._outbox.pending_batch(self._batch_events, self._max_bytes, after=events[-1].seq),
                             self._max_bytes)
        except Exception:  # read again, and report, on the next step
            log.debug("outbox read ahead failed", exc_info=True)
            return None
        if not following:
            return None
        push = _Push(following, self._batch_id(following), self._client)
        push.encode()  # gzip takes a few ms a batch: not between central's answer and the next push
        return push

    def _loop(self) -> None:
        # The sender thread lives as long as the relay's own thread; leaving the block waits for a push
        # still in flight (bounded by the client's timeout). Its answer is not recorded: those events
        # stay pending and central answers "duplicate" when they are sent again.
        with ThreadPoolExecutor(1, thread_name_prefix=f"{self.thread_name}-send") as sender:
            self._sender = sender
            try:
                super()._loop()
            finally:
                self._sender, self._inflight = None, None

    def _pushed(self, seconds: float | None, events: int, ok: bool) -> None:
        if self._on_push is not None:
            try:
                self._on_push(seconds, events, ok)
            except Exception:
                log.exception("push callback failed")

    def _record(self, events: list[OutboxEvent], results: list[EventResult]) -> str:
        crash_point("after_central_applied_before_ack")
        sent = {e.seq: e.event_id for e in events}
        # An event leaves the outbox only on central's answer for that very event: an answer at its
        # seq naming another event_id is no answer for it (it stays pending; the batch is resent).
        foreign = [r for r in results if r.seq in sent and not r.answers(sent[r.seq])]
        if foreign:
            log.error("push: central answered seq %d for event %s, but this lane sent %s there; not acked",
                      foreign[0].seq, foreign[0].event_id, sent[foreign[0].seq],
                      extra={"event": "sync-relay.foreign_answer", "seqs": [r.seq for r in foreign][:20]})
        results = [r for r in results if r.seq in sent and r.answers(sent[r.seq])]
        clash = _seq_clash(results)
        if clash is not None:
            # Central has another event at one of our seqs: another history under this lane id (a second
            # till running as this lane, a copy restored while the first ran on). Not this event's fault:
            # it stays pending, with every one after it, and the relay stops for a person, as when the
            # lane id's history is found to be another's at start.
            results = [r for r in results if r.seq < clash.seq]
        try:
            self._outbox.record_results(results)
        except OSError as exc:  # the lane's disk (full, failing): one line; central answers "duplicate" next time
            log.error("outbox write failed: %s", exc, extra={"event": "sync-relay.outbox_error"})
            return self._local_failed(f"outbox: {exc.strerror or exc}")
        except Exception as exc:
            # Central has them; the next attempt is answered "duplicate" and acks them.
            log.exception("outbox write failed", extra={"event": "sync-relay.outbox_error"})
            return self._failed(f"outbox: {type(exc).__name__}", None)
        rejected = [r for r in results if r.status == "rejected" and not r.retryable and not r.flagged]
        retry = [r for r in results if r.status == "rejected" and r.retryable]
        flagged = [r for r in results if r.flagged]
        noted = [r for r in results if r.flag]  # accepted, and central noticed something (birthday_repeated)
        with self._lock:
            self._sent_events += sum(1 for r in results if r.status != "rejected" or r.flagged)
            self._quarantined += len(rejected)
            self._token_replays += len(flagged)
            self._birthday_repeats += len(noted)
        if flagged or noted:
            self._flagged(events, flagged + noted)
        if rejected:
            codes = sorted({r.code or "" for r in rejected})
            # seq_conflict / event_id_reused: this lane reused seqs or events (a restored ledger?): a person must look.
            (log.error if {"seq_conflict", "event_id_reused"} & set(codes) else log.warning)(
                "push: central refused %d event(s) for good (%s); quarantined, shown in health",
                len(rejected), ", ".join(codes),
                extra={"event": "sync-relay.quarantined", "count": len(rejected), "codes": codes,
                       "seqs": [r.seq for r in rejected][:20]},
            )
        if clash is not None:
            return self._identity_conflict(LaneIdentityConflict(
                f"central holds another event at seq {clash.seq} of lane {getattr(self._client, 'lane_id', '?')} "
                "(another till running as this lane, or ledger.db restored from a copy while it ran on)"))
        if retry:
            # central answered: not an outage (health says central_error, not central_unreachable)
            return self._failed(f"central took seq {retry[0].seq} not yet ({retry[0].code}); it is sent again from "
                                "there", None, answered=True)
        if len(results) < len(events):
            return self._failed("central answered only part of the batch", None, answered=True)
        full = len(events) >= self._batch_events
        self._batch_events = min(self._max_events, self._batch_events * 2)
        # A full batch: more is likely pending, go again at once. A small one: let the next sales
        # gather for a moment (a producer's linger) rather than one signed, gzipped round trip per
        # sale while the till is busy; a wake() does not cut this short.
        with self._lock:
            hurried, self._hurried = self._hurried, False
        self._succeeded("ok", 0.0 if full or hurried else self._linger, wake_cuts=full)
        with self._lock:
            if self._hurried:  # a hurry() came meanwhile: the linger just decided ends at once
                self._hurried = False
                self._interrupt.set()
            self._lingering = True  # from here a hurry() cuts the linger itself
        return "sent"

    def _settle_identity(self) -> None:
        """Once per process, before any push: is central's history of our lane id this ledger's?

        Central's last (seq, event_id) for the lane must be in our outbox. If it
        is not, ledger.db was lost or restored from an old backup, and sending
        our seqs under that id would collide with events central already has;
        the ledger moves to the next free incarnation (L01.2, L01.3, ...).
        """
        outbox: Any = self._outbox
        identity: Any = self._identity
        lane = identity.lane_id
        for _ in range(MAX_INCARNATIONS):
            try:
                last_seq, last_event_id = self._client.lane_head(lane)
            except CentralRequestRejected as exc:
                if exc.status != 404:
                    raise
                log.warning("central cannot tell a lane's history; trusting lane id %s", lane,
                            extra={"event": "sync-relay.no_lane_head"})
                break
            if last_seq == 0 or outbox.event_id_at(last_seq) == last_event_id:
                break
            if outbox.stats().last_acked_seq > 0:
                # Part of this ledger is central's under that id, part is not (an old
                # backup?): no id is right for it. Hold every event and ask for a person.
                raise LaneIdentityConflict(
                    f"central's lane {lane} ends at seq {last_seq} with an event this ledger does not hold",
                    central_last_seq=last_seq)
            previous, lane = lane, _next_incarnation(lane, identity.base_lane_id)
            log.error(
                "central holds another history under lane id %s (ledger.db lost or restored?); "
                "this ledger syncs as %s", previous, lane,
                extra={"event": "sync-relay.new_identity", "alert": True, "central_last_seq": last_seq},
            )
        else:
            raise SyncError(f"no free lane identity after {MAX_INCARNATIONS} tries")
        identity.claim(lane)  # durable first; then the clients and the cache follow it
        if getattr(self._client, "lane_id", lane) != lane:
            raise SyncError("the central client does not send under the claimed lane id (give it the identity)")
        self._identity_settled = True

    def _acknowledge_held(self, central_last_seq: int) -> None:
        """The check found central's history of the lane id is partly another's (a copy of ledger.db
        restored while central had moved on). Of this ledger's pending events, those central holds as
        they are, at their seqs, are central's already: a copy taken before the till pushed them, which
        pushed them later. They are sent again and acked on central's ``duplicate``, so the lane's
        balances count them once (central's figure has them), not again as unsynced. Only seqs up to
        central's last: central applies none of them (every one of those seqs is taken), it only
        compares. The first seq where central holds another event ends it; that one and every later
        one stay pending, for a person. A failure leaves them pending as they were. An event central
        holds as it is but refused (or flagged) is answered as it was the first time, and recorded so.
        Made again at the next check only when central's history or this ledger's has moved since."""
        compared = (central_last_seq, self._outbox.stats().last_acked_seq)
        if compared == self._compared:
            return
        after, acked = 0, 0
        try:
            while True:
                events = [e for e in _fit(self._outbox.pending_batch(self._max_events, self._max_bytes, after),
                                          self._max_bytes) if e.seq <= central_last_seq]
                if not events:
                    break
                answers = {r.seq: r for r in self._client.push_batch(self._batch_id(events), [e.wire for e in events])}
                held = []
                for event in events:
                    answer = answers.get(event.seq)
                    if answer is None or not answer.answers(event.event_id) or answer.retryable \
                            or (answer.status == "rejected" and answer.code == "seq_conflict"):
                        break  # central holds another event here (or did not say): this ledger's own from here
                    held.append(answer)
                self._outbox.record_results(held)
                acked += len(held)
                if len(held) < len(events):
                    break
                after = events[-1].seq
        except Exception as exc:
            log.warning("could not compare this ledger's unsent events with central's history: %s", exc,
                        extra={"event": "sync-relay.held_unchecked"})
            return  # compared again at the next check
        self._compared = (central_last_seq, self._outbox.stats().last_acked_seq)
        if acked:
            log.warning("%d unsent event(s) of this ledger are central's already, as they are (a copy taken "
                        "before they were sent); recorded as central answered them", acked,
                        extra={"event": "sync-relay.held_acknowledged", "count": acked})

    def _batch_id(self, events: list[OutboxEvent]) -> str:
        store = getattr(self._client, "store_id", "store")
        lane = getattr(self._client, "lane_id", "lane")
        return f"{store}-{lane}-{events[0].seq}-{events[-1].seq}-{uuid.uuid4().hex[:8]}"[-128:]

    def _flagged(self, events: list[OutboxEvent], flagged: list[EventResult]) -> None:
        """Central flagged these (token_replayed: a token another lane used first; birthday_repeated: a
        birthday bonus another lane gave first): signals for central's side, not lane faults."""
        codes = {r.seq: r.code or r.flag for r in flagged}
        bodies = [{**e.body, "code": codes[e.seq]} for e in events if e.seq in codes]
        log.warning("push: central flagged %d event(s) as done at another lane first (%s); recorded there, "
                    "nothing to repair here", len(bodies), ", ".join(sorted({str(c) for c in codes.values()})),
                    extra={"event": "sync-relay.flagged", "count": len(bodies), "seqs": sorted(codes)[:20]})
        if self._on_flagged is not None:
            try:
                self._on_flagged(bodies)
            except Exception:
                log.exception("flagged callback failed")

    def _extra_status(self) -> dict[str, Any]:
        return {"sent_events": self._sent_events, "quarantined_events": self._quarantined,
                "token_replays_flagged": self._token_replays, "birthday_repeats_flagged": self._birthday_repeats,
                "sync_lane_id": getattr(self._client, "lane_id", None)}

    def _progress_key(self) -> Any:
        return self._sent_events


def _next_incarnation(lane: str, base: str) -> str:
    """L01 -> L01.2 -> L01.3: a new lane id for a ledger whose history is not central's."""
    number = lane[len(base) + 1:] if lane.startswith(base + ".") else ""
    return f"{base}.{int(number) + 1 if number.isdigit() else 2}"


class _Push:
    """One batch on its way to central: the events, and the future of central's answers."""

    def __init__(self, events: list[OutboxEvent], batch_id: str, client: Any) -> None:
        self.events, self.batch_id, self._client = events, batch_id, client
        self.body: bytes | None = None  # the push's body, when encoded ahead
        self.seconds = 0.0
        self.future: Future[list[EventResult]] = Future()

    def encode(self) -> None:
        """Encode the body now, for a client that sends a ready body (CentralClient.push_encoded);
        a client that only takes events is given them when the push runs."""
        if hasattr(self._client, "push_encoded"):
            self.body = encode_batch(self.batch_id, [e.wire for e in self.events])

    def run(self) -> list[EventResult]:
        started = time.monotonic()
        try:
            if self.body is not None:
                return self._client.push_encoded(self.batch_id, self.body)
            return self._client.push_batch(self.batch_id, [e.wire for e in self.events])
        finally:
            self.seconds = time.monotonic() - started

    def run_here(self) -> Future[list[EventResult]]:
        future: Future[list[EventResult]] = Future()
        try:
            future.set_result(self.run())
        except BaseException as exc:  # raised again by result(), as from the sender thread
            future.set_exception(exc)
        return future


def _seq_clash(results: list[EventResult]) -> EventResult | None:
    """The first answer saying central holds another event at our seq: another history under our lane id."""
    return next((r for r in results if r.status == "rejected" and r.code == "seq_conflict"), None)


def _complete(events: list[OutboxEvent], results: list[EventResult]) -> bool:
    """Central answered every event and asked for none again, and none of our seqs holds another event
    there (seq_conflict: the relay stops): the next batch may follow."""
    if _seq_clash(results) is not None:
        return False
    answered = {r.seq: r for r in results if not (r.status == "rejected" and r.retryable)}
    return all(e.seq in answered and answered[e.seq].answers(e.event_id) for e in events)


def _fit(events: list[OutboxEvent], max_bytes: int) -> list[OutboxEvent]:
    """Trim a batch to the protocol's size limit (always keep the first event)."""
    total = 0
    for index, event in enumerate(events):
        total += event.size + 1
        if total > max_bytes and index > 0:
            return events[:index]
    return events
