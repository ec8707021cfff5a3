"""What the sync layer needs from storage, as three small protocols.

The relay and the puller never touch SQLite themselves: the daemon hands them
objects that satisfy these protocols (posd.storage implements them), and the
tests can hand them in-memory ones. ``EventResult`` is the protocol's answer
per event (``posd.sync.protocol.shapes``), named here too because the outbox
records it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

from posd.sync.protocol.shapes import EventResult

__all__ = ["CachePort", "EventResult", "OutboxEvent", "OutboxPort", "OutboxStats"]


class OutboxEvent:
    """One pending event as the relay pushes it. Given only its stored ``text``, the body is decoded
    the first time something asks for it: a drain pushes the text and never needs the dict."""

    __slots__ = ("seq", "event_id", "size", "text", "_body")

    def __init__(self, seq: int, event_id: str, body: dict[str, Any] | None = None, size: int = 0,
                 text: str | None = None) -> None:
        if body is None and text is None:
            raise ValueError("an outbox event needs its body or its JSON text")
        self.seq = seq  # the lane's gap-free counter, 1, 2, 3, ...
        self.event_id = event_id
        self.size = size  # len of the JSON-encoded body, for batch size limits
        self.text = text  # the body's JSON text as stored: pushed as is, not encoded again
        self._body = body

    @property
    def body(self) -> dict[str, Any]:
        """The event exactly as it goes on the wire (includes seq and event_id)."""
        if self._body is None:
            self._body = json.loads(self.text)  # type: ignore[arg-type]
        return self._body

    @property
    def wire(self) -> dict[str, Any] | str:
        """What goes in a push: the stored text when there is one, else the body."""
        return self._body if self.text is None else self.text  # type: ignore[return-value]

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, OutboxEvent):
            return NotImplemented
        return (self.seq, self.event_id, self.size, self.text, self.body) == \
            (other.seq, other.event_id, other.size, other.text, other.body)

    def __repr__(self) -> str:
        return f"OutboxEvent(seq={self.seq}, event_id={self.event_id!r}, size={self.size})"


@dataclass(frozen=True)
class OutboxStats:
    pending: int
    oldest_pending_at: datetime | None
    quarantined: int
    last_acked_seq: int


class OutboxPort(Protocol):
    def pending_batch(self, max_events: int, max_bytes: int, after: int = 0) -> list[OutboxEvent]:
        """Pending events with a seq above ``after``, lowest seq first, at most max_events and about
        max_bytes (the relay reads the next batch while the last one's answers are not yet written)."""

    def record_results(self, results: list[EventResult]) -> None:
        """Mark accepted/duplicate as acked and non-retryable rejections as
        quarantined, atomically. Retryable rejections stay pending."""

    def stats(self) -> OutboxStats: ...


class CachePort(Protocol):
    def member_cursor(self) -> str | None: ...

    def apply_member_changes(self, members: list[dict[str, Any]], next_cursor: str) -> None:
        """Upsert the members and store the cursor in one transaction."""

    def program_etag(self) -> str | None: ...

    def store_program(self, program: dict[str, Any], etag: str) -> None: ...


class IdentityPort(Protocol):
    """The lane id this lane's history syncs under, owned by one object on the lane's side."""

    base_lane_id: str  # the configured lane id

    @property
    def lane_id(self) -> str: ...

    def claim(self, lane_id: str) -> None:
        """Record `lane_id` as the ledger's, durably, and tell whoever keeps per-lane state."""

    def park(self) -> None:
        """The check waits for a person (identity conflict, credentials refused): nobody waits for it any longer."""

    def wait_settled(self, timeout: float) -> bool:
        """Has the lane id been checked against central in this process, within `timeout`?"""
