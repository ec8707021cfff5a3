"""The puller: keeps cache.db current with central's member changes and program."""

from __future__ import annotations

import logging
import time
from typing import Any

from posd.sync.lane.errors import CentralProtocolError
from posd.sync.lane.ports import CachePort
from posd.sync.lane.worker import Worker

log = logging.getLogger("posd.sync.relay")

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
        **worker: Any,
    ) -> None:
        """``worker``: backoff_base, backoff_cap, auth_retry_interval, rng, on_status, clock (Worker)."""
        super().__init__(client, **worker)
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
        applied, version = 0, None
        try:
            if members:
                applied, complete = self._pull_members()
                with self._lock:
                    self._members_due = time.monotonic() + (self._member_interval if complete else 0.0)
            if program:
                version = self._pull_program()
                with self._lock:
                    self._program_due = time.monotonic() + self._program_interval
        except Exception as exc:
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

    def _pull_program(self) -> str | None:
        """The version of a new program, stored; None when central's is the one we have."""
        program, etag = self._client.program(self._cache.program_etag())
        if program is None:
            return None
        self._cache.store_program(program, etag or "")
        with self._lock:
            self._program_updates += 1
        return str(program.get("version"))

    def _until_due(self) -> float:
        with self._lock:
            return self._until_due_locked()

    def _until_due_locked(self) -> float:
        return max(0.0, min(self._members_due, self._program_due) - time.monotonic())

    def _extra_status(self) -> dict[str, Any]:
        return {"members_applied": self._members_applied, "program_updates": self._program_updates}

    def _progress_key(self) -> Any:
        return (self._members_applied, self._program_updates)
