"""Bounded polling for tests: every wait ends, and says what it waited for when it fails."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any


def wait_until(predicate: Callable[[], Any], timeout: float = 20.0, what: str = "condition",
               interval: float = 0.01, *, detail: Callable[[], str] = str) -> Any:
    """The first truthy value of ``predicate()``; AssertionError naming ``what`` (and
    ``detail()``, e.g. the other process's log) after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out waiting for {what}{detail()}")
