"""What the API tells metrics and the log: request time per route, and what became of each sale.

``ApiObserver`` is whatever counts (the daemon's posd.metrics.LaneMetrics);
the API only calls it. On the till's hot path that is one histogram observe
per request and one counter inc per sale: no I/O, no lock held across any.
"""

from __future__ import annotations

import logging
import time
from typing import Any, Protocol

from starlette.types import ASGIApp, Receive, Scope, Send

from posd.lane.context import Recorded

log = logging.getLogger("posd.api")


class ApiObserver(Protocol):
    def request(self, route: str, method: str, seconds: float) -> None: ...

    def outcome(self, kind: str, outcome: str) -> None: ...


class RequestTimer:
    """ASGI middleware: the time of every request, labelled by its route template (``/v1/members/{identifier}``,
    never the identifier itself), or ``unmatched``."""

    def __init__(self, app: ASGIApp, *, observer: ApiObserver):
        self.app, self.observer = app, observer

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        try:
            await self.app(scope, receive, send)
        finally:
            route = scope.get("route")  # set by the router on this very scope
            # path_format: the template without its converters (`{identifier}`, not `{identifier:path}`)
            self.observer.request(getattr(route, "path_format", "unmatched"), scope["method"],
                                  time.perf_counter() - started)


def told(observer: ApiObserver | None, kind: str, key: str, recorded: Recorded) -> None:
    """One log line per sale, return or redemption recorded (no member data: ids and figures)."""
    outcome = "replayed" if recorded.replayed else "recorded"
    if observer is not None:
        observer.outcome(kind, outcome)
    if not log.isEnabledFor(logging.INFO):  # a lane logging warnings only: no line to compose
        return
    r = recorded.response
    if recorded.replayed:
        log.info("%s %s: retry answered from the ledger", kind, key)
    elif kind == "sale":
        log.info("sale %s recorded: %s, %s, slip %s%s", key, _points(r.get("accrual", {}).get("points")),
                 "member" if r.get("member_id") else "no member", (r.get("slip") or {}).get("state", "none"),
                 ", offline" if r.get("offline") else "")
    elif kind == "return":
        log.info("return %s of sale %s recorded: %s", key, r.get("transaction_id"), _points(r.get("reversed"),
                                                                                              sign=-1))
    else:
        log.info("redemption %s recorded: %s, voucher issued%s", key, _points(r.get("points")),
                 ", offline" if r.get("offline") else "")


def refused(observer: ApiObserver | None, kind: str, key: str | None, code: str) -> None:
    """A refusal counted and logged; ``key`` None when the body could not be read for its id."""
    if observer is not None:
        observer.outcome(kind, code)
    if key is None:
        log.info("%s refused: %s", kind, code)
    else:
        log.info("%s %s refused: %s", kind, key, code)


def _points(points: Any, sign: int = 1) -> str:
    moved = sorted((currency, v) for currency, v in (points or {}).items() if v)
    if not moved:
        return "no points"
    return ", ".join(f"{sign * v:+d} {currency}" for currency, v in moved)
