"""Fault injection for the reference central: what the next requests on a route suffer.

Queued per route and consumed one request at a time, first in first out, so a
test (or ``POST /_admin/faults`` from another process) can stage "two 503s,
then an answer lost after the batch was applied" against real sockets. The
queue lives in central's database (the store's ``add_fault``/``take_fault``),
so with several worker processes the plan is one: whichever worker serves the
next request on the route acts it out.
"""

from __future__ import annotations

from typing import Any

ROUTES = ("push", "members", "program", "lane", "authorise", "release", "vouchers", "token_uses",
          "birthday_awards")
FAULTS = ("500", "503", "timeout", "reset", "slow", "401", "429", "applied_then_lost")
MAX_FAULT_COUNT = 1_000_000
DEFAULT_FAULT_DELAY = {"timeout": 12.0, "slow": 1.0}  # timeout outlasts the client's 10 s read timeout


def check_fault(route: Any, fault: Any, count: Any = 1, delay: Any = None) -> tuple[str, str, int, float]:
    """(route, fault, count, delay) checked, the default delay filled in; ValueError naming what is wrong."""
    if route not in ROUTES:
        raise ValueError(f"route must be one of {', '.join(ROUTES)}")
    if fault not in FAULTS:
        raise ValueError(f"fault must be one of {', '.join(FAULTS)}")
    if not isinstance(count, int) or isinstance(count, bool) or not 1 <= count <= MAX_FAULT_COUNT:
        raise ValueError(f"count must be an integer 1-{MAX_FAULT_COUNT}")
    if delay is None:
        delay = DEFAULT_FAULT_DELAY.get(fault, 0.0)
    elif isinstance(delay, bool) or not isinstance(delay, (int, float)) or not 0 <= delay <= 3600:
        raise ValueError("delay must be seconds between 0 and 3600")
    return route, fault, count, float(delay)


class FaultPlan:
    """A central's fault queue, as tests hold it (``central.faults``): a view of its store's."""

    def __init__(self, store: Any) -> None:
        self._store = store

    def add(self, route: str, fault: str, count: int = 1, delay: float | None = None) -> None:
        self._store.add_fault(route, fault, count, delay)

    def take(self, route: str) -> tuple[str, float] | None:
        return self._store.take_fault(route)

    def clear(self) -> None:
        self._store.clear_faults()
