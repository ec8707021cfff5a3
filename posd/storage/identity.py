"""The lane's sync identity: the lane id this ledger's history is sent to central under.

It is the configured lane id unless central already holds another history
under that id (ledger.db lost or restored from an old backup); then the
relay claims ``<lane_id>.2``, ``.3``, ... so a (lane, seq) is never used
twice. This object is its one owner (posd.sync.lane.ports.IdentityPort): the
central clients sign and address with it, the relay claims through it, and
whoever keeps per-lane state (cache.db's watermarks) subscribes to changes.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from posd.storage.ledger import Ledger

log = logging.getLogger("posd.ledger")


class SyncIdentity:
    META_KEY = "sync_lane_id"

    def __init__(self, ledger: Ledger, base_lane_id: str, claimed: str | None):
        self._ledger = ledger
        self.base_lane_id = base_lane_id  # the configured lane id
        self._claimed = claimed
        self._lock = threading.Lock()
        self._subscribers: list[Callable[[str], None]] = []
        # checked against central in this process (or found beyond repair): until then a question to
        # central under lane_id may be answered from another ledger's history under the same id
        self._settled = threading.Event()

    @property
    def lane_id(self) -> str:
        """What this ledger syncs under now."""
        return self._claimed or self.base_lane_id

    @property
    def claimed(self) -> bool:
        """Has a lane id been claimed for this ledger (checked against central once)?"""
        return self._claimed is not None

    def claim(self, lane_id: str) -> None:
        """Record `lane_id` as this ledger's; subscribers hear of it when it differs from the one in use."""
        with self._lock:
            if lane_id == self._claimed:
                self._settled.set()
                return
            changed = lane_id != self.lane_id
            self._ledger.write(lambda tx: tx.set_meta(self.META_KEY, lane_id))
            self._claimed = lane_id
            self._settled.set()
        if changed:
            for callback in self._subscribers:
                try:
                    callback(lane_id)
                except Exception:
                    log.exception("sync identity listener failed")

    def park(self) -> None:
        """The check cannot be made until a person acts (central holds a history partly this ledger's, or
        refuses the lane's credentials): the questions waiting for it go on under this lane id."""
        self._settled.set()

    def wait_settled(self, timeout: float) -> bool:
        """Has this process checked the lane id against central (claim() or park()), within `timeout`?"""
        return self._settled.wait(timeout)

    def subscribe(self, callback: Callable[[str], None]) -> None:
        self._subscribers.append(callback)
