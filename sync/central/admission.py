"""Central-paced admission: when central is busy, a push gets a slot (429 + Retry-After), not a queue.

Pure (``now`` is passed in): the reference central asks it for every push
(``posd central --admission EVENTS_PER_S``), and the fleet simulation
(bench/fleet.py) uses it as its model of central, so what the simulation
measured is what the reference central does.

Central keeps two times. ``queue_end``: when the work it admitted will be
done, at its rated capacity. ``line_end``: the queue plus the slots it has
handed out. A push from a lane holding a slot is admitted. Any other is
admitted while the queue is shorter than ``window_s``, or when the headroom
has saved up its cost (a quarter of central's time, at most ``window_s`` of
it); else it is answered 429 at once with ``Retry-After`` = its slot at the
end of the line, and the line grows by the push's cost over (1 -
``headroom``). So slots fill three quarters of capacity and the last quarter
serves lanes that are up to date (a sale, a small push) without a 429: a
busy central does not double every small push with a 429. Slots are handed out at the rate central works,
so lanes coming back at them keep it busy without a queue, and no answer
waits past a lane's read timeout. A lane keeps its slot (sync/lane/retry.py).

Each worker process keeps its own (its share of the rate); a lane that comes
back to another worker is judged there as a newcomer.
"""

from __future__ import annotations

import math

MAX_SLOTS = 200_000  # slots remembered; older ones are forgotten first
EARLY_S = 1.0  # a lane this much before its slot is told the same slot again


class Admission:
    def __init__(self, events_per_s: float, *, window_s: float = 2.0, headroom: float = 0.25,
                 request_cost_s: float = 0.0005, paced: bool = True) -> None:
        if events_per_s <= 0:
            raise ValueError("admission needs a positive rate (events/s)")
        self.events_per_s, self.window_s, self.headroom = events_per_s, window_s, headroom
        self.request_cost_s, self.paced = request_cost_s, paced
        self.queue_end = self.line_end = 0.0
        self.slots: dict[str, float] = {}
        self.spare, self.spare_at = 0.0, None  # seconds of work the headroom has saved up, and when

    def cost(self, events: int) -> float:
        """Seconds of central's work a push of ``events`` takes, at its rated capacity."""
        return self.request_cost_s + events / self.events_per_s

    def arrive(self, lane: str, events: int, now: float) -> tuple[float | None, float]:
        """(retry_after, done_at): retry_after None when the push is admitted (and central's
        work on it is done about ``done_at``), else the seconds until the lane's slot. A lane
        back before its slot is told the same slot again."""
        cost = self.cost(events)
        self.queue_end = max(self.queue_end, now)
        self.line_end = max(self.line_end, now)
        slot = self.slots.get(lane)
        if slot is not None and now < slot - EARLY_S:
            return max(1.0, math.ceil(slot - now)), now  # early: the same slot, nothing new booked
        booked = self.slots.pop(lane, None) is not None
        if self.paced and not booked and self.queue_end - now > self.window_s and not self._spare(cost, now):
            slot = self.line_end = max(self.line_end, self.queue_end)
            self.line_end += cost / (1 - self.headroom)
            if len(self.slots) >= MAX_SLOTS:
                self.slots.pop(next(iter(self.slots)))
            self.slots[lane] = slot
            return max(1.0, math.ceil(slot - now)), now
        self.queue_end += cost
        return None, self.queue_end

    def _spare(self, cost: float, now: float) -> bool:
        """Take ``cost`` from the headroom the slots leave (saved up to ``window_s``), if it is there:
        a lane that is up to date pushes a sale or two and is served without a 429."""
        if self.spare_at is not None:
            self.spare = min(self.window_s, self.spare + max(0.0, now - self.spare_at) * self.headroom)
        self.spare_at = now
        if self.spare < cost:
            return False
        self.spare -= cost
        return True
