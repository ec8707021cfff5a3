"""The event stream the POS listens to (SSE), with replay.

Ids are monotonic across restarts: the high bits are the ledger's boot
counter, the low bits count events in this boot. A bounded ring keeps recent
events so a client reconnecting with Last-Event-ID gets what it missed; if it
missed more than the ring holds it is told so (`stream.reset`) instead of
silently skipping.
"""

from __future__ import annotations

import asyncio
import collections
import json
import itertools
import threading
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

BOOT_SHIFT = 32

# Every event type on the stream, and what it tells the POS (their data: posd/api/models.py).
EVENT_TYPES: dict[str, str] = {
    "scan": "a scanner or card reader read a code (kind code, token, phone; invalid: unreadable or not a code we know)",
    "member.identified": "the scanned code is a member's: the member view, and how they were identified",
    "member.unknown": "the scanned code is no member's",
    "member.unavailable": "the lane cannot tell whose the scanned code is: members have not loaded from central "
                          "yet (never say 'not a member' on this)",
    "member.token_rejected": "a member token (phone QR, wallet pass) was refused: expired, replayed, not signed...",
    "member.token_flagged": "central flagged a member token this lane accepted offline as used at another lane "
                            "first (a fraud signal; the sale stands, central has the event)",
    "member.birthday_flagged": "central flagged a birthday bonus this lane gave offline as given at another "
                               "lane first that year (information; the sale and its points stand)",
    "card.rejected": "a payment card was read; its data was dropped at once",
    "device.status": "a device changed state (closed, idle, busy, error and why)",
    "print.status": "a print job was held, printed, expired or set aside",
    "sync.status": "the link to central went up or down, or its error changed",
    "stream.reset": "events were missed (the ring no longer holds them, or posd restarted): refetch state",
}


@dataclass(frozen=True, slots=True)
class Event:
    """An event as the stream sends it. Only its SSE frame is kept: the ring holds 10,000 of them,
    and a member view's dicts took several times the frame's bytes (RSS grew 23 MB over 5,500
    member events)."""

    id: int
    type: str
    at: str
    frame: bytes

    def sse(self) -> bytes:
        return self.frame

    @property
    def data(self) -> dict[str, Any]:
        """The event's data as published (its JSON read back)."""
        payload = json.loads(self.frame.split(b"\ndata: ", 1)[1])
        return {k: v for k, v in payload.items() if k not in ("type", "at")}


def _frame(id_: int, type_: str, at: str, data: dict[str, Any], body: str | None) -> bytes:
    """The SSE frame; ``body`` is ``data`` already written as JSON (made before the bus's lock)."""
    head = f'{{"type":{json.dumps(type_)},"at":"{at}"'
    if body is None:  # data naming "type" or "at" itself: its own value wins, as a dict merge gives
        payload = json.dumps({"type": type_, "at": at, **data}, separators=(",", ":"), ensure_ascii=False)
    else:
        payload = head + ("}" if body == "{}" else "," + body[1:])
    return f"id: {id_}\nevent: {type_}\ndata: {payload}\n\n".encode()


class EventBus:
    def __init__(self, boot: int, *, ring_size: int = 10_000):
        self._base = boot << BOOT_SHIFT
        self._counter = itertools.count(1)
        self._ring: collections.deque[Event] = collections.deque(maxlen=ring_size)
        self._subscribers: set[asyncio.Queue[Event | None]] = set()
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self.published = 0

    def bind(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop

    def publish(self, type_: str, data: dict[str, Any]) -> Event:
        """Thread-safe: device threads and the loop both publish."""
        return self.publish_many([(type_, data)])[0]

    def publish_many(self, events: list[tuple[str, dict[str, Any]]]) -> list[Event]:
        """Several events, with consecutive ids, handed to the loop at once: from a device
        thread each handoff wakes the loop and takes the GIL from the thread that made it,
        so a scan and the member it found cross to the streams together."""
        for type_, _ in events:
            if type_ not in EVENT_TYPES:
                raise ValueError(f"unknown event type {type_!r}")
        bodies = [None if "type" in data or "at" in data
                  else json.dumps(data, separators=(",", ":"), ensure_ascii=False) for _, data in events]
        with self._lock:
            at = datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
            made = []
            for (type_, data), body in zip(events, bodies, strict=True):
                id_ = self._base + next(self._counter)
                made.append(Event(id_, type_, at, _frame(id_, type_, at, data, body)))
            self._ring.extend(made)
            self.published += len(made)
            # Handed to the loop under the lock, so the loop fans events out in the order of their ids
            # from every thread (the loop's own publishes too, which wait their turn behind a device
            # thread's): a stream sends each id once, rising, and skips one that reaches it late.
            loop = self._loop
            if loop is not None and not loop.is_closed():
                try:
                    loop.call_soon_threadsafe(self._fan_out, made)
                except RuntimeError:  # loop closing during shutdown
                    pass
        return made

    def _fan_out(self, events: list[Event]) -> None:
        for q in list(self._subscribers):
            for event in events:
                if q.full():  # a client that stopped reading loses its place, not our memory
                    self._subscribers.discard(q)
                    break
                q.put_nowait(event)

    def close(self) -> None:
        """End every stream (on the loop's thread): each client's queue gets the end marker."""
        for q in list(self._subscribers):
            self._subscribers.discard(q)
            try:
                q.put_nowait(None)
            except asyncio.QueueFull:
                pass  # that stream ends when it sees it is no longer subscribed

    def replay_after(self, last_id: int) -> tuple[list[Event], bool]:
        """Events after last_id, and whether the ring still covered that point."""
        with self._lock:
            events = [e for e in self._ring if e.id > last_id]
            covered = not self._ring or self._ring[0].id <= last_id + 1 or last_id >= self._ring[-1].id
            if last_id >> BOOT_SHIFT != self._base >> BOOT_SHIFT and self._ring:
                covered = False  # the client's id is from another boot
            if last_id > (self._ring[-1].id if self._ring else self._base):
                covered = False  # an id this lane never gave: the events after the real one are not known
        return events, covered

    def subscribe(self, maxsize: int = 1000) -> asyncio.Queue[Event | None]:
        q: asyncio.Queue[Event | None] = asyncio.Queue(maxsize=maxsize)
        self._subscribers.add(q)
        return q

    def unsubscribe(self, q: asyncio.Queue[Event | None]) -> None:
        self._subscribers.discard(q)

    def is_subscribed(self, q: asyncio.Queue[Event | None]) -> bool:
        return q in self._subscribers

    @property
    def subscribers(self) -> int:
        return len(self._subscribers)

