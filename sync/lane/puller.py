"""The puller: keeps cache.db current with central's member changes and program.

Member changes are usually a handful per pull and are applied right here. A
snapshot (a new or rebuilt cache, a lane moved to a new identity) or any
feed longer than one small page is handed to ``members``, a ``BulkMemberPull``
that runs the same page loop elsewhere: the daemon gives it a process of its
own (posd.member_pull), so a million members are decoded and written without
taking the GIL from the scanner threads that look members up meanwhile.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future, InvalidStateError
from typing import Any, Protocol

from posd.core.program import ProgramError
from posd.sync.lane.errors import CentralProtocolError, CentralRequestRejected
from posd.sync.lane.ports import CachePort
from posd.sync.lane.worker import Worker

log = logging.getLogger("posd.sync.relay")

PROBE_LIMIT = 100  # members asked for in the puller's own thread when a bulk pull can take the rest
# Pulls asked for by refresh(): a burst of REFRESH_BURST at once, then REFRESH_PER_S a second. A refusal
# right after another has its pull at once, within its budget (authorise_timeout_ms); a till scanning
# unknown codes one after another asks central a few times a second at most, not once a code.
REFRESH_BURST = 4
REFRESH_PER_S = 4.0


def member_pages(client: Any, cursor: str | None, limit: int) -> Iterator[tuple[list[dict[str, Any]], str, bool]]:
    """central's member changes after ``cursor``, page by page: (members, next_cursor, has_more)."""
    first = True
    while True:
        try:
            members, next_cursor, has_more = client.member_changes(cursor, limit)
        except CentralRequestRejected as exc:
            if not (first and cursor and exc.code == "bad_cursor"):
                raise
            # central does not know our cursor (restored from a backup, replaced): every member again
            log.warning("central refused the member cursor %s: pulling every member again", cursor,
                        extra={"event": "sync-puller.cursor_reset"})
            cursor, first = None, False
            continue
        first = False
        yield members, next_cursor, has_more
        if not has_more:
            return
        if next_cursor == cursor:
            raise CentralProtocolError("member changes: has_more but the cursor did not advance")
        cursor = next_cursor


def pull_member_pages(client: Any, cache: CachePort, limit: int, max_pages: int, stopped: Callable[[], bool],
                      applied_page: Callable[[int], None],
                      pages: Callable[[str | None], Iterator[Any]] | None = None) -> tuple[int, bool]:
    """Apply pages from the cache's cursor until central says there is no more, at most ``max_pages``;
    (members applied, finished). Each page lands with its cursor in one transaction, so a crash
    between pages loses nothing and applies nothing twice: the next pull starts at the cursor.
    ``pages(cursor)`` may bring the pages instead of ``member_pages`` (posd.member_pull fetches and builds
    the next page in another process while this one lands)."""
    cursor = cache.member_cursor()
    applied = 0
    feed = member_pages(client, cursor, limit) if pages is None else pages(cursor)
    try:
        for count, (members, next_cursor, has_more) in enumerate(feed, start=1):
            if members or next_cursor != cursor:
                cache.apply_member_changes(members, next_cursor)
                applied += len(members)
                applied_page(len(members))
            cursor = next_cursor
            if not has_more:
                return applied, True
            if count >= max_pages or stopped():
                break
    finally:
        close = getattr(feed, "close", None)
        if close is not None:
            close()
    return applied, False


class BulkMemberPull(Protocol):
    def pull(self, max_pages: int, stopped: Callable[[], bool], applied_page: Callable[[int], None]) -> tuple[int, bool]:
        """``pull_member_pages`` from the cache's cursor, somewhere else; raises SyncError like the client."""

    def cancel(self) -> None:
        """Stop a pull under way (the worker is stopping); what was applied stays, with its cursor."""

class SyncPuller(Worker):
    """Keeps cache.db current: member changes by cursor, then the program by ETag."""

    thread_name = "sync-puller"
    activity = "pull"

    def __init__(
        self,
        client: Any,
        cache: CachePort,
        *,
        member_interval: float = 30.0,
        program_interval: float = 60.0,
        page_limit: int = 1000,
        max_pages: int = 10_000,
        members: BulkMemberPull | None = None,
        **worker: Any,
    ) -> None:
        """``worker``: backoff_base, backoff_cap, auth_retry_interval, rng, on_status, clock (Worker).
        ``members``: where feeds longer than one small page are pulled (None: in this thread)."""
        super().__init__(client, **worker)
        self._cache = cache
        self._bulk = members
        self._member_interval, self._program_interval = member_interval, program_interval
        self._page_limit = page_limit
        self._max_pages = max_pages  # bounds one run; the rest comes on the next
        self._members_due = self._program_due = 0.0  # monotonic; 0 = now
        self._members_applied = 0
        self._program_updates = 0
        self._program_refused: dict[str, str] | None = None  # central's program not in force: version, error
        self._refreshes: list[Future] = []  # refresh() callers, answered by the next member pull to start
        self._refresh_tokens, self._tokens_at = float(REFRESH_BURST), time.monotonic()  # the refresh() budget

    def run_once(self) -> str:
        """Pull member changes until has_more is false, then the program.
        Returns updated | unchanged | backoff | auth_failed."""
        return self._pull(members=True, program=True)

    def wake(self) -> None:
        """Pull both now (e.g. after cache.db was rebuilt)."""
        with self._lock:
            self._members_due = self._program_due = 0.0
        super().wake()

    def refresh(self) -> Future:
        """A member pull now, for a caller whose view of a member may be behind central's (points earned
        at another lane since the last pull): its future is True once a pull that started after this
        call has applied central's changes, False when that pull failed or the puller stops. A pull
        already under way may have read the feed before the change the caller is after: the next one
        answers."""
        future: Future = Future()
        with self._lock:
            # stopping, or in a wait a wake does not cut (a backoff, central's Retry-After, the disk): no
            # pull starts within the caller's budget, so it need not wait for one
            if self._stop.is_set() or (not self._wake_cuts_delay and not self._in_step):
                future.set_result(False)
                return future
            self._refreshes.append(future)
            self._members_due = min(self._members_due, self._refresh_due_locked())
        super().wake()
        return future

    def _refresh_due_locked(self) -> float:
        """When the next pull a refresh() asks for may start (monotonic): now while the burst lasts."""
        now = time.monotonic()
        self._refresh_tokens = min(float(REFRESH_BURST), self._refresh_tokens + (now - self._tokens_at) * REFRESH_PER_S)
        self._tokens_at = now
        return now if self._refresh_tokens >= 1 else now + (1 - self._refresh_tokens) / REFRESH_PER_S

    @staticmethod
    def _answer_refreshes(waiting: list[Future], ok: bool) -> None:
        """``waiting`` were marked running when their pull started: a caller that stopped waiting
        meanwhile cannot cancel them, so each takes its answer (one cancelled before was left out)."""
        for future in waiting:
            with contextlib.suppress(InvalidStateError):  # settled already: the stop's answer
                future.set_result(ok)

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
        applied, version = 0, None
        waiting: list[Future] = []
        if members:
            with self._lock:  # those asked before this pull reads the feed, and still waiting: it answers them
                waiting = [f for f in self._refreshes if f.set_running_or_notify_cancel()]
                self._refreshes = []
                if waiting:
                    self._refresh_due_locked()
                    self._refresh_tokens = max(0.0, self._refresh_tokens - 1)
        try:
            if members:
                applied, complete = self._pull_members()
                self._answer_refreshes(waiting, not self._stop.is_set())  # a pull cut short by a stop: no
                with self._lock:  # a refresh asked during the pull: another pull, once the spacing allows
                    self._members_due = time.monotonic() + (self._member_interval if complete else 0.0)
                    if self._refreshes:
                        self._members_due = min(self._members_due, self._refresh_due_locked())
            if program:
                version = self._pull_program()
                with self._lock:
                    self._program_due = time.monotonic() + self._program_interval
        except Exception as exc:
            self._answer_refreshes(waiting, False)
            return self._sync_error(exc)
        self._succeeded("ok", self._until_due())
        changed = applied > 0 or version is not None
        # One line per attempt; an unchanged one (most: every pull_interval_s) only at debug level.
        (log.info if changed else log.debug)(
            "pull: %d member change(s)%s", applied, f", program {version} stored" if version is not None else "",
            extra={"event": "sync-puller.ok"})
        return "updated" if changed else "unchanged"

    def _pull_members(self) -> tuple[int, bool]:
        """Apply pages until central says there is no more; (members applied, finished)."""
        if self._bulk is None:
            return pull_member_pages(self._client, self._cache, self._page_limit, self._max_pages,
                                     self._stop.is_set, self._applied_page)
        applied, complete = pull_member_pages(self._client, self._cache, min(PROBE_LIMIT, self._page_limit), 1,
                                              self._stop.is_set, self._applied_page)
        if complete or self._stop.is_set():
            return applied, complete
        more, complete = self._bulk.pull(self._max_pages, self._stop.is_set, self._applied_page)
        return applied + more, complete

    def _applied_page(self, count: int) -> None:
        with self._lock:
            self._members_applied += count

    def begin_stop(self) -> None:
        self._stop.set()
        if self._bulk is not None:
            self._bulk.cancel()
        super().begin_stop()

    def stop(self, timeout: float = 5.0) -> bool:
        stopped = super().stop(timeout)
        with self._lock:
            waiting, self._refreshes = self._refreshes, []
        self._answer_refreshes(waiting, False)
        return stopped

    def _pull_program(self) -> str | None:
        """The version of a new program, stored; None when central's is the one we have."""
        program, etag = self._client.program(self._cache.program_etag())
        if program is None:  # central's is the one in force: a refusal of another one no longer holds
            with self._lock:
                self._program_refused = None
            return None
        try:
            self._cache.store_program(program, etag or "")
        except ProgramError as exc:
            # Central answered: its program is one this lane cannot evaluate. The one in force stays, and
            # the lane is not offline (burns still ask central); health names the path until it is mended.
            refused = {"version": f"{program.get('version')!s:.64}", "error": str(exc)}
            with self._lock:
                first, self._program_refused = self._program_refused != refused, refused
            (log.error if first else log.debug)(
                "central's program %s refused, the program in force stays: %s", refused["version"], exc,
                extra={"event": "sync-puller.program_refused", "alert": first})
            return None
        with self._lock:
            self._program_updates += 1
            self._program_refused = None
        return str(program.get("version"))

    def _until_due(self) -> float:
        with self._lock:
            return self._until_due_locked()

    def _until_due_locked(self) -> float:
        return max(0.0, min(self._members_due, self._program_due) - time.monotonic())

    def _extra_status(self) -> dict[str, Any]:
        return {"members_applied": self._members_applied, "program_updates": self._program_updates,
                "program_refused": self._program_refused}

    def _progress_key(self) -> Any:
        return (self._members_applied, self._program_updates)
