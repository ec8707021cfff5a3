"""Background sync workers: the outbox relay (push) and the member/program puller.

Each worker does one unit of work in ``run_once()`` (tests call it directly)
and ``start()`` runs it in a daemon thread that never raises. Failures back off
with full jitter (sleep = uniform(0, min(cap, base * 2**n))) so thousands of
lanes coming back after an outage don't arrive together; Retry-After is a
floor; 401/403 park the worker for ``auth_retry_interval`` and alert, because
hammering central with bad credentials helps nobody.
"""

from __future__ import annotations

import logging
import random
import threading
import time
import uuid
from collections.abc import Callable
from datetime import datetime, timezone
from typing import Any

from posd.faults import crash_point
from posd.sync.errors import (
    CentralAuthError,
    CentralProtocolError,
    CentralRequestRejected,
    CentralUnavailable,
    LaneIdentityConflict,
    SyncError,
)
from posd.sync.ports import CachePort, EventResult, IdentityPort, OutboxEvent, OutboxPort
from posd.sync.protocol import MAX_BATCH_BYTES, MAX_BATCH_EVENTS

log = logging.getLogger("posd.sync.relay")

MAX_RETRY_AFTER = 3600.0  # a far-future Retry-After date must not park a lane for days
_ENVELOPE_BYTES = 1024  # batch_id and the JSON around the events
MAX_INCARNATIONS = 100  # lane ids tried when a ledger's history is not central's

StatusCallback = Callable[[dict[str, Any]], None]


def backoff_delay(
    failures: int, base: float, cap: float, rng: random.Random, retry_after: float | None = None
) -> float:
    """Full-jitter exponential backoff for the ``failures``-th consecutive failure (1-based)."""
    ceiling = min(cap, base * 2 ** min(max(failures - 1, 0), 32))
    delay = rng.uniform(0, ceiling)
    if retry_after is not None:
        delay = max(delay, min(retry_after, MAX_RETRY_AFTER))
    return delay


class _Worker:
    """Thread, wake-up, backoff and health bookkeeping shared by the relay and the puller."""

    thread_name = "sync-worker"

    def __init__(
        self,
        client: Any,
        *,
        backoff_base: float,
        backoff_cap: float,
        auth_retry_interval: float,
        rng: random.Random | None,
        on_status: StatusCallback | None,
        clock: Callable[[], float],
    ) -> None:
        self._client = client
        self._backoff_base, self._backoff_cap = backoff_base, backoff_cap
        self._auth_retry_interval = auth_retry_interval
        self._rng = rng if rng is not None else random.Random()
        self._on_status = on_status
        self._clock = clock
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._state = "starting"
        self._last_success_at: float | None = None
        self._last_error: str | None = None
        self._failures = 0
        self._delay = 0.0  # how long the loop waits before the next step
        self._wake_cuts_delay = True  # idle waits end on wake(); backoff waits do not
        self._next_at: float | None = None  # monotonic time of the next attempt, for status()
        self._reported: tuple[Any, ...] | None = None

    # --- lifecycle ---------------------------------------------------------------------

    def start(self) -> None:
        if self._thread is not None and self._thread.is_alive():
            return
        self._stop.clear()
        self._thread = threading.Thread(target=self._loop, name=self.thread_name, daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> bool:
        """Ask the thread to finish and join it; False if it is still busy after ``timeout``."""
        self._stop.set()
        self._wake.set()
        thread = self._thread
        if thread is not None:
            thread.join(timeout)
            if thread.is_alive():
                return False
        self._thread = None
        return True

    def wake(self) -> None:
        """Work now instead of at the end of an idle wait (a backoff or auth wait still holds)."""
        self._wake.set()

    def _loop(self) -> None:
        while not self._stop.is_set():
            self._wake.clear()  # before the step: a wake() during the step is not lost
            try:
                self._step()
            except Exception as exc:  # a bug, not a sync failure: keep the lane syncing anyway
                log.exception("sync worker step failed", extra={"event": f"{self.thread_name}.crash"})
                self._failed(f"internal: {type(exc).__name__}", None)
            self._report()
            with self._lock:
                delay, cut = self._delay, self._wake_cuts_delay
            if delay > 0:
                (self._wake if cut else self._stop).wait(delay)

    def _step(self) -> None:
        self.run_once()

    def run_once(self) -> str:
        raise NotImplementedError

    # --- outcomes ------------------------------------------------------------------------

    def _succeeded(self, state: str, delay: float, *, wake_cuts: bool = True) -> None:
        with self._lock:
            self._state, self._failures, self._last_error = state, 0, None
            self._last_success_at = self._clock()
            self._delay, self._wake_cuts_delay = delay, wake_cuts
            self._next_at = time.monotonic() + delay

    def _wait(self, state: str, delay: float) -> None:
        """Nothing to do: not a contact with central, so last_success_at stays."""
        with self._lock:
            self._state, self._failures, self._last_error = state, 0, None
            self._delay, self._wake_cuts_delay = delay, True
            self._next_at = time.monotonic() + delay

    def _failed(self, error: str, retry_after: float | None) -> str:
        with self._lock:
            self._failures += 1
            self._state, self._last_error = "backoff", error
            delay = backoff_delay(self._failures, self._backoff_base, self._backoff_cap, self._rng, retry_after)
            self._delay, self._wake_cuts_delay = delay, False
            self._next_at = time.monotonic() + delay
            failures = self._failures
        log.warning(
            "sync attempt failed",
            extra={"event": f"{self.thread_name}.failed", "error": error, "failures": failures,
                   "retry_in_s": round(delay, 3)},
        )
        return "backoff"

    def _auth_failed(self, exc: CentralAuthError) -> str:
        with self._lock:
            first = self._state != "auth_failed"
            self._failures += 1
            self._state, self._last_error = "auth_failed", f"auth: HTTP {exc.status} {exc.code or ''}".strip()
            self._delay, self._wake_cuts_delay = self._auth_retry_interval, False
            self._next_at = time.monotonic() + self._auth_retry_interval
        # An alert, once per episode: credentials, store id or the clock need a person.
        (log.error if first else log.warning)(
            "central refused our credentials; retrying only every %.0f s",
            self._auth_retry_interval,
            extra={"event": f"{self.thread_name}.auth_failed", "alert": first, "status": exc.status,
                   "code": exc.code},
        )
        return "auth_failed"

    def _identity_conflict(self, exc: LaneIdentityConflict) -> str:
        with self._lock:
            first = self._state != "identity_conflict"
            self._failures += 1
            self._state, self._last_error = "identity_conflict", str(exc)
            self._delay, self._wake_cuts_delay = self._auth_retry_interval, False
            self._next_at = time.monotonic() + self._auth_retry_interval
        (log.error if first else log.warning)(
            "not sending: %s; ledger.db may have been restored from an old backup", exc,
            extra={"event": f"{self.thread_name}.identity_conflict", "alert": first},
        )
        return "identity_conflict"

    def _sync_error(self, exc: Exception) -> str:
        """Map an exception from the client to an outcome."""
        if isinstance(exc, LaneIdentityConflict):
            return self._identity_conflict(exc)
        if isinstance(exc, CentralAuthError):
            return self._auth_failed(exc)
        if isinstance(exc, CentralUnavailable):
            return self._failed(str(exc), exc.retry_after)
        if isinstance(exc, SyncError):
            return self._failed(str(exc), None)
        log.exception("unexpected error in sync", extra={"event": f"{self.thread_name}.error"})
        return self._failed(f"internal: {type(exc).__name__}", None)

    # --- health --------------------------------------------------------------------------

    def last_success_at(self) -> float | None:
        """Unix seconds of the last successful contact with central (None: not yet)."""
        with self._lock:
            return self._last_success_at

    def status(self) -> dict[str, Any]:
        """For /v1/health and the sync.status event. No PII."""
        with self._lock:
            next_in = None if self._next_at is None else max(0.0, round(self._next_at - time.monotonic(), 3))
            return {
                "state": self._state,
                "running": self._thread is not None and self._thread.is_alive(),
                "last_success_at": _iso(self._last_success_at),
                "last_error": self._last_error,
                "consecutive_failures": self._failures,
                "next_attempt_in_s": next_in,
                "clock_skew_s": getattr(self._client, "last_clock_skew_s", None),
                **self._extra_status(),
            }

    def _extra_status(self) -> dict[str, Any]:
        return {}

    def _report(self) -> None:
        """Tell on_status when something a person would care about changed."""
        if self._on_status is None:
            return
        status = self.status()
        key = (status["state"], status["last_error"], status["consecutive_failures"], self._progress_key())
        if key == self._reported:
            return
        self._reported = key
        try:
            self._on_status(status)
        except Exception:
            log.exception("sync status callback failed", extra={"event": f"{self.thread_name}.callback"})

    def _progress_key(self) -> Any:
        return None


class OutboxRelay(_Worker):
    """Sends the outbox to central one batch at a time, lowest seq first."""

    thread_name = "sync-relay"

    def __init__(
        self,
        client: Any,
        outbox: OutboxPort,
        *,
        max_events: int = 500,
        max_bytes: int = 1_000_000,
        backoff_base: float = 0.5,
        backoff_cap: float = 60.0,
        idle_interval: float = 1.0,
        auth_retry_interval: float = 300.0,
        rng: random.Random | None = None,
        on_status: StatusCallback | None = None,
        identity: IdentityPort | None = None,
        clock: Callable[[], float] = time.time,
        linger: float = 0.2,
    ) -> None:
        super().__init__(
            client, backoff_base=backoff_base, backoff_cap=backoff_cap, auth_retry_interval=auth_retry_interval,
            rng=rng, on_status=on_status, clock=clock,
        )
        self._outbox = outbox
        self._identity = identity  # the lane id's owner; the client reads it from there too
        self._identity_settled = identity is None  # a relay without one sends under the client's id
        self._max_events = max(1, min(max_events, MAX_BATCH_EVENTS))
        self._batch_events = self._max_events  # shrinks after a 413, grows back on success
        self._max_bytes = max(1, min(max_bytes, MAX_BATCH_BYTES - _ENVELOPE_BYTES - MAX_BATCH_EVENTS))
        self._idle_interval = idle_interval
        self._linger = linger
        self._sent_events = 0
        self._quarantined = 0

    def run_once(self) -> str:
        """One batch: pending -> push -> record.
        Returns sent | idle | backoff | auth_failed | identity_conflict."""
        if not self._identity_settled:
            try:
                self._settle_identity()
            except Exception as exc:
                return self._sync_error(exc)
        try:
            events = _fit(self._outbox.pending_batch(self._batch_events, self._max_bytes), self._max_bytes)
        except Exception as exc:
            log.exception("outbox read failed", extra={"event": "sync-relay.outbox_error"})
            return self._failed(f"outbox: {type(exc).__name__}", None)
        if not events:
            self._wait("idle", self._idle_interval)
            return "idle"
        crash_point("mid_batch")  # picked, not yet acknowledged
        try:
            results = self._client.push_batch(self._batch_id(events), [e.body for e in events])
        except CentralRequestRejected as exc:
            if exc.status == 413:
                self._batch_events = max(1, len(events) // 2)
            return self._sync_error(exc)
        except Exception as exc:
            return self._sync_error(exc)
        return self._record(events, results)

    def _record(self, events: list[OutboxEvent], results: list[EventResult]) -> str:
        crash_point("after_central_applied_before_ack")
        sent = {e.seq for e in events}
        results = [r for r in results if r.seq in sent]
        try:
            self._outbox.record_results(results)
        except Exception as exc:
            # Central has them; the next attempt is answered "duplicate" and acks them.
            log.exception("outbox write failed", extra={"event": "sync-relay.outbox_error"})
            return self._failed(f"outbox: {type(exc).__name__}", None)
        rejected = [r for r in results if r.status == "rejected" and not r.retryable]
        retry = [r for r in results if r.status == "rejected" and r.retryable]
        with self._lock:
            self._sent_events += sum(1 for r in results if r.status != "rejected")
            self._quarantined += len(rejected)
        if rejected:
            codes = sorted({r.code or "" for r in rejected})
            # seq_conflict means this lane reused seqs (a restored ledger?): a person must look.
            (log.error if "seq_conflict" in codes else log.warning)(
                "central rejected events; quarantined",
                extra={"event": "sync-relay.quarantined", "count": len(rejected), "codes": codes,
                       "seqs": [r.seq for r in rejected][:20]},
            )
        if retry:
            return self._failed(f"central asked to resend from seq {retry[0].seq} ({retry[0].code})", None)
        if len(results) < len(events):
            return self._failed("central answered only part of the batch", None)
        full = len(events) >= self._batch_events
        self._batch_events = min(self._max_events, self._batch_events * 2)
        # A full batch: more is likely pending, go again at once. A small one: let the next sales
        # gather for a moment (a producer's linger) rather than one signed, gzipped round trip per
        # sale while the till is busy; a wake() does not cut this short.
        self._succeeded("ok", 0.0 if full else self._linger, wake_cuts=full)
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
                    f"central's lane {lane} ends at seq {last_seq} with an event this ledger does not hold")
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

    def _batch_id(self, events: list[OutboxEvent]) -> str:
        store = getattr(self._client, "store_id", "store")
        lane = getattr(self._client, "lane_id", "lane")
        return f"{store}-{lane}-{events[0].seq}-{events[-1].seq}-{uuid.uuid4().hex[:8]}"[-128:]

    def _extra_status(self) -> dict[str, Any]:
        return {"sent_events": self._sent_events, "quarantined_events": self._quarantined,
                "sync_lane_id": getattr(self._client, "lane_id", None)}

    def _progress_key(self) -> Any:
        return self._sent_events


def _next_incarnation(lane: str, base: str) -> str:
    """L01 -> L01.2 -> L01.3: a new lane id for a ledger whose history is not central's."""
    number = lane[len(base) + 1:] if lane.startswith(base + ".") else ""
    return f"{base}.{int(number) + 1 if number.isdigit() else 2}"


def _fit(events: list[OutboxEvent], max_bytes: int) -> list[OutboxEvent]:
    """Trim a batch to the protocol's size limit (always keep the first event)."""
    total = 0
    for index, event in enumerate(events):
        total += event.size + 1
        if total > max_bytes and index > 0:
            return events[:index]
    return events


class SyncPuller(_Worker):
    """Keeps cache.db current: member changes by cursor, then the program by ETag."""

    thread_name = "sync-puller"

    def __init__(
        self,
        client: Any,
        cache: CachePort,
        *,
        member_interval: float = 30.0,
        program_interval: float = 60.0,
        page_limit: int = 1000,
        max_pages: int = 10_000,
        backoff_base: float = 0.5,
        backoff_cap: float = 60.0,
        auth_retry_interval: float = 300.0,
        rng: random.Random | None = None,
        on_status: StatusCallback | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        super().__init__(
            client, backoff_base=backoff_base, backoff_cap=backoff_cap, auth_retry_interval=auth_retry_interval,
            rng=rng, on_status=on_status, clock=clock,
        )
        self._cache = cache
        self._member_interval, self._program_interval = member_interval, program_interval
        self._page_limit = page_limit
        self._max_pages = max_pages  # bounds one run; the rest comes on the next
        self._members_due = self._program_due = 0.0  # monotonic; 0 = now
        self._members_applied = 0
        self._program_updates = 0

    def run_once(self) -> str:
        """Pull member changes until has_more is false, then the program.
        Returns updated | unchanged | backoff | auth_failed."""
        return self._pull(members=True, program=True)

    def wake(self) -> None:
        """Pull both now (e.g. after cache.db was rebuilt)."""
        with self._lock:
            self._members_due = self._program_due = 0.0
        super().wake()

    def _step(self) -> None:
        now = time.monotonic()
        with self._lock:
            members, program = now >= self._members_due, now >= self._program_due
        if members or program:
            self._pull(members=members, program=program)
        else:
            with self._lock:  # woken early: wait for what is due
                self._delay, self._wake_cuts_delay = self._until_due_locked(), True
                self._next_at = time.monotonic() + self._delay

    def _pull(self, *, members: bool, program: bool) -> str:
        changed = False
        try:
            if members:
                applied, complete = self._pull_members()
                changed |= applied > 0
                with self._lock:
                    self._members_due = time.monotonic() + (self._member_interval if complete else 0.0)
            if program:
                changed |= self._pull_program()
                with self._lock:
                    self._program_due = time.monotonic() + self._program_interval
        except Exception as exc:
            return self._sync_error(exc)
        self._succeeded("ok", self._until_due())
        return "updated" if changed else "unchanged"

    def _pull_members(self) -> tuple[int, bool]:
        """Apply pages until central says there is no more; (members applied, finished)."""
        cursor = self._cache.member_cursor()
        applied = 0
        for _ in range(self._max_pages):
            members, next_cursor, has_more = self._client.member_changes(cursor, self._page_limit)
            if members or next_cursor != cursor:
                self._cache.apply_member_changes(members, next_cursor)
                applied += len(members)
                with self._lock:
                    self._members_applied += len(members)
            if not has_more:
                return applied, True
            if next_cursor == cursor:
                raise CentralProtocolError("member changes: has_more but the cursor did not advance")
            if self._stop.is_set():
                break
            cursor = next_cursor
        return applied, False

    def _pull_program(self) -> bool:
        program, etag = self._client.program(self._cache.program_etag())
        if program is None:
            return False
        self._cache.store_program(program, etag or "")
        with self._lock:
            self._program_updates += 1
        log.info("program updated", extra={"event": "sync-puller.program", "version": program.get("version")})
        return True

    def _until_due(self) -> float:
        with self._lock:
            return self._until_due_locked()

    def _until_due_locked(self) -> float:
        return max(0.0, min(self._members_due, self._program_due) - time.monotonic())

    def _extra_status(self) -> dict[str, Any]:
        return {"members_applied": self._members_applied, "program_updates": self._program_updates}

    def _progress_key(self) -> Any:
        return (self._members_applied, self._program_updates)


def _iso(ts: float | None) -> str | None:
    return None if ts is None else datetime.fromtimestamp(ts, timezone.utc).isoformat(timespec="seconds")
