"""Polling with a deadline, for tests that wait on another process."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any


def wait_until(predicate: Callable[[], Any], timeout: float, what: str, *, interval: float = 0.05,
               detail: Callable[[], str] = str) -> Any:
    """The first truthy value of ``predicate()``; AssertionError naming WHAT (and
    ``detail()``) once TIMEOUT seconds have passed."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out waiting for {what}{detail()}")
