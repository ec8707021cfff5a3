"""What the sync workers share: a thread, wake-ups, the retry policy, health.

The outbox relay (push) and the member/program puller each do one unit of
work in ``run_once()`` (tests call it directly); ``start()`` runs it in a
daemon thread that never raises. How long to wait after each outcome is the
retry policy's (retry.py: full-jitter backoff with a cap, Retry-After as a
floor, a 429's Retry-After as central's slot, 401/403 parked for
``auth_retry_interval`` with an alert): a pure object the fleet simulation
runs too.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Callable
from datetime import datetime, timezone
from typing import Any

from posd.sync.lane.errors import CentralAuthError, CentralUnavailable, LaneIdentityConflict, SyncError
from posd.sync.lane.retry import DEFAULT_AUTH_RETRY_S, DEFAULT_BASE_S, DEFAULT_CAP_S, MAX_RETRY_AFTER, RetryPolicy
from posd.sync.lane.retry import backoff_delay as backoff_delay

log = logging.getLogger("posd.sync.relay")  # one logger for the sync workers, as store IT knows it

StatusCallback = Callable[[dict[str, Any]], None]
# A step that failed on the lane's own side (its disk) is tried again this often (Worker._local_failed).
LOCAL_RETRY_S = 1.0

__all__ = ["MAX_RETRY_AFTER", "StatusCallback", "Worker", "backoff_delay"]


class Worker:
    """Thread, wake-up, backoff and health bookkeeping shared by the relay and the puller."""

    thread_name = "sync-worker"
    activity = "sync"  # what one attempt is called in the log: push, pull

    def __init__(
        self,
        client: Any,
        *,
        backoff_base: float = DEFAULT_BASE_S,
        backoff_cap: float = DEFAULT_CAP_S,
        auth_retry_interval: float = DEFAULT_AUTH_RETRY_S,
        rng: random.Random | None = None,
        on_status: StatusCallback | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        """The keyword arguments are every worker's; the relay and the puller pass them through."""
        self._client = client
        self._policy = RetryPolicy(backoff_base, backoff_cap, auth_retry_interval, rng)
        self._on_status = on_status
        self._clock = clock
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._state = "starting"
        self._last_success_at: float | None = None
        self._last_error: str | None = None
        self._central_answered = False  # the last failure was central's answer (a 5xx, garbage), not silence
        self._delay = 0.0  # how long the loop waits before the next step
        self._wake_cuts_delay = True  # idle waits end on wake(); backoff waits do not
        self._next_at: float | None = None  # monotonic time of the next attempt, for status()
        self._reported: tuple[Any, ...] | None = None
        self._interrupt = threading.Event()  # ends a backoff wait: stop(), or central reached by another part
        self._failed_status: int | None = None  # the HTTP status of the last failure (None: no answer)
        self._failed_retry_after = False  # the last failure came with a Retry-After: its wait is central's
        self._brought_forward = False  # a backoff is cut once per outage, not on every answer elsewhere
        self._in_step = False
        # monotonic time of the last failure that says central may be out of reach (no answer, a 5xx,
        # 429, 401...), not one central answered 200 to (a retryable refusal, a partial answer)
        self._unanswered_at: float | None = None
        self._step_began = 0.0  # monotonic: when the thread's step under way began

    # --- lifecycle ---------------------------------------------------------------------

    def start(self) -> None:
        if self._thread is not None and self._thread.is_alive():
            return
        self._stop.clear()
        self._thread = threading.Thread(target=self._loop, name=self.thread_name, daemon=True)
        self._thread.start()

    def begin_stop(self) -> None:
        """Ask the thread to finish, without waiting: several workers told first, then each joined,
        stop in the longest of their waits (a request to a silent central runs to its timeout), not
        the sum."""
        self._stop.set()
        self._wake.set()
        with self._lock:
            self._interrupt.set()

    def stop(self, timeout: float = 5.0) -> bool:
        """Ask the thread to finish and join it; False if it is still busy after ``timeout``."""
        self.begin_stop()
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

    def central_reached(self) -> None:
        """Another part of the lane just had an answer from central (a push, a pull, a burn's question):
        central is back, so this worker's failures are no longer news. Clears them at once (health stops
        saying "unreachable") and brings the next attempt forward, once per outage: a central that
        answers others while failing this worker's route is not asked again on every answer. A slot
        central handed out (429 with Retry-After) and a parked worker (401/403, identity conflict: a
        person must act) keep their wait. A 5xx's Retry-After (central shedding load) keeps its wait
        too, but its failures are cleared: the lane is not offline (its burns still ask central)."""
        if threading.current_thread() is self._thread:
            return  # this worker's own call: its outcome is recorded by its step
        with self._lock:
            if (self._in_step or self._state != "backoff" or self._brought_forward
                    or self._failed_status == 429):
                return  # in a step: that attempt is itself the news
            self._brought_forward = True
            self._policy.succeeded()
            self._state, self._last_error = "reconnecting", None
            if not self._failed_retry_after:  # else central said when to come back: that wait stays
                self._delay, self._next_at = 0.0, time.monotonic()
                self._interrupt.set()
        log.info("%s brought forward: central answered the lane again", self.activity,
                 extra={"event": f"{self.thread_name}.brought_forward"})

    def _loop(self) -> None:
        while not self._stop.is_set():
            self._wake.clear()  # before the step: a wake() during the step is not lost
            with self._lock:
                self._in_step, self._step_began = True, time.monotonic()
                if not self._stop.is_set():
                    self._interrupt.clear()
            try:
                self._step()
            except Exception as exc:  # a bug, not a sync failure: keep the lane syncing anyway
                log.exception("sync worker step failed", extra={"event": f"{self.thread_name}.crash"})
                self._failed(f"internal: {type(exc).__name__}", None)
            finally:
                with self._lock:
                    self._in_step = False
            self._report()
            with self._lock:
                delay, cut = self._delay, self._wake_cuts_delay
            if delay > 0:
                (self._wake if cut else self._interrupt).wait(delay)

    def _step(self) -> None:
        self.run_once()

    def run_once(self) -> str:
        raise NotImplementedError

    # --- outcomes ------------------------------------------------------------------------

    @property
    def _failures(self) -> int:
        return self._policy.failures

    def _succeeded(self, state: str, delay: float, *, wake_cuts: bool = True) -> None:
        with self._lock:
            self._policy.succeeded()
            self._state, self._last_error = state, None
            self._brought_forward = False
            self._last_success_at = self._clock()
            self._delay, self._wake_cuts_delay = delay, wake_cuts
            self._next_at = time.monotonic() + delay

    def _wait(self, state: str, delay: float) -> None:
        """Nothing to do: not a contact with central, so last_success_at stays."""
        with self._lock:
            self._policy.succeeded()
            self._state, self._last_error = state, None
            self._delay, self._wake_cuts_delay = delay, True
            self._next_at = time.monotonic() + delay

    def _failed(self, error: str, retry_after: float | None, status: int | None = None, *,
                answered: bool = False) -> str:
        with self._lock:
            if not answered or status is not None:  # else central answered the request itself (200)
                # as of the step's start: a request sent before central answered another part of
                # the lane (a pull to the central that was down, timing out after) is old news
                self._unanswered_at = self._step_began if self._in_step else time.monotonic()
            self._state, self._last_error = "backoff", error
            self._central_answered, self._failed_status = answered, status
            self._failed_retry_after = bool(retry_after)  # a floor central set: kept (a 503 shedding load)
            delay = self._policy.failed(retry_after, status=status)
            self._delay, self._wake_cuts_delay = delay, False
            self._next_at = time.monotonic() + delay
            failures = self._failures
        log.warning(
            "%s failed: %s; next try in %.1f s (%d failure%s in a row)", self.activity, error, delay, failures,
            "" if failures == 1 else "s",
            extra={"event": f"{self.thread_name}.failed", "error": error, "failures": failures,
                   "retry_in_s": round(delay, 3)},
        )
        return "backoff"

    def _local_failed(self, error: str) -> str:
        """The lane's own side failed (its disk: full, failing), not central: no failure is counted
        (the lane is not offline, health does not say central is unreachable; the ledger's own
        health check names the disk), and the step is tried again every LOCAL_RETRY_S, not after a
        backoff meant for a central in trouble, so sync resumes as soon as the disk has room."""
        with self._lock:
            self._state, self._last_error = "local_error", error
            self._delay, self._wake_cuts_delay = LOCAL_RETRY_S, False
            self._next_at = time.monotonic() + LOCAL_RETRY_S
        log.warning("%s failed on this lane: %s; next try in %.1f s", self.activity, error, LOCAL_RETRY_S,
                    extra={"event": f"{self.thread_name}.local_error", "error": error})
        return "local_error"

    def _auth_failed(self, exc: CentralAuthError) -> str:
        with self._lock:
            first = self._state != "auth_failed"
            self._state, self._last_error = "auth_failed", f"auth: HTTP {exc.status} {exc.code or ''}".strip()
            self._delay, self._wake_cuts_delay = self._policy.parked(), False
            self._next_at = time.monotonic() + self._delay
        # An alert, once per episode: credentials, store id or the clock need a person.
        (log.error if first else log.warning)(
            "%s failed: central refused our credentials (HTTP %s%s): check the store secret, store id and "
            "the clock; retrying only every %.0f s", self.activity, exc.status, f" {exc.code}" if exc.code else "",
            self._policy.auth_retry_interval,
            extra={"event": f"{self.thread_name}.auth_failed", "alert": first, "status": exc.status,
                   "code": exc.code},
        )
        return "auth_failed"

    def _identity_conflict(self, exc: LaneIdentityConflict) -> str:
        with self._lock:
            first = self._state != "identity_conflict"
            self._state, self._last_error = "identity_conflict", str(exc)
            self._delay, self._wake_cuts_delay = self._policy.parked(), False
            self._next_at = time.monotonic() + self._delay
        (log.error if first else log.warning)(
            "%s stopped: %s; ledger.db may have been restored from an old backup", self.activity, exc,
            extra={"event": f"{self.thread_name}.identity_conflict", "alert": first},
        )
        return "identity_conflict"

    def _sync_error(self, exc: Exception) -> str:
        """Map an exception from the client to an outcome."""
        if isinstance(exc, LaneIdentityConflict):
            return self._identity_conflict(exc)
        if isinstance(exc, CentralAuthError):
            return self._auth_failed(exc)
        if isinstance(exc, CentralUnavailable):  # a status: central answered (5xx, 429), else no answer
            return self._failed(str(exc), exc.retry_after, exc.status, answered=exc.status is not None)
        if isinstance(exc, SyncError):  # central answered, with something the protocol does not allow
            return self._failed(str(exc), None, answered=True)
        if isinstance(exc, OSError):  # the lane's own disk (full, failing: posd.storage's WriteRefused): one line
            return self._local_failed(f"local storage: {exc}")
        log.exception("%s: unexpected error", self.activity, extra={"event": f"{self.thread_name}.error"})
        return self._failed(f"internal: {type(exc).__name__}", None)

    # --- health --------------------------------------------------------------------------

    def last_success_at(self) -> float | None:
        """Unix seconds of the last successful contact with central (None: not yet)."""
        with self._lock:
            return self._last_success_at

    def failing(self) -> bool:
        """Did the last contact with central fail?"""
        with self._lock:
            return self._failures > 0

    def out_of_reach(self, answered_at: float | None) -> bool:
        """Is central out of reach as far as this worker knows? (Asked on every sale and burn: the offline
        flag.) Failing, and its last failure that got no answer from central came after ``answered_at``,
        the monotonic time any part of the lane last had one (None: never; the clients' ``on_answer``,
        called as the answer arrives). A push central answered frees the offline caps its burns held:
        from that answer on, before the acks are written, burns ask central again, whatever this or
        another worker's own state (its outcome not recorded yet, a pull under way, a backoff cut once
        already, a slot). A worker stopped for a person (credentials refused, another history under
        the lane id) is out of reach throughout."""
        with self._lock:
            if self._failures == 0:
                return False
            if self._state in ("auth_failed", "identity_conflict"):
                return True
            return self._unanswered_at is not None and (answered_at is None or self._unanswered_at > answered_at)

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
                # a refusal that stopped sync (credentials, a restored ledger) is central's answer too
                "central_answered": (self._failures > 0 and self._central_answered)
                or self._state in ("auth_failed", "identity_conflict"),
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


def _iso(ts: float | None) -> str | None:
    return None if ts is None else datetime.fromtimestamp(ts, timezone.utc).isoformat(timespec="seconds")
