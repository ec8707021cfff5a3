"""Fault injection for the reference central: what the next requests on a route suffer.

Queued per route and consumed one request at a time, first in first out, so a
test (or ``POST /_admin/faults`` from another process) can stage "two 503s,
then an answer lost after the batch was applied" against real sockets.
"""

from __future__ import annotations

import collections
import threading
from typing import Any

ROUTES = ("push", "members", "program", "lane", "authorise", "vouchers")
FAULTS = ("500", "503", "timeout", "reset", "slow", "401", "429", "applied_then_lost")
DEFAULT_FAULT_DELAY = {"timeout": 12.0, "slow": 1.0}  # timeout outlasts the client's 10 s read timeout


class FaultPlan:
    """Queued faults per route, consumed one request at a time, first in first out."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._queues: dict[str, collections.deque[list[Any]]] = {r: collections.deque() for r in ROUTES}

    def add(self, route: str, fault: str, count: int = 1, delay: float | None = None) -> None:
        if route not in ROUTES:
            raise ValueError(f"route must be one of {ROUTES}")
        if fault not in FAULTS:
            raise ValueError(f"fault must be one of {FAULTS}")
        if not isinstance(count, int) or count < 1:
            raise ValueError("count must be a positive integer")
        delay = DEFAULT_FAULT_DELAY.get(fault, 0.0) if delay is None else float(delay)
        with self._lock:
            self._queues[route].append([fault, count, delay])

    def take(self, route: str) -> tuple[str, float] | None:
        with self._lock:
            queue = self._queues[route]
            if not queue:
                return None
            entry = queue[0]
            entry[1] -= 1
            if entry[1] == 0:
                queue.popleft()
            return entry[0], entry[2]

    def clear(self) -> None:
        with self._lock:
            for queue in self._queues.values():
                queue.clear()
