"""Debian's headless Chromium, driven by Playwright, for tests that look at a page as a person would.

Playwright's sync API runs its event loop on the calling thread, where every
plain wait of the test (an HTTP call to the lane, a bounded poll) would then
be a blocking call on a running loop, which the conftest's guard rightly
fails. So the browser lives on a thread of its own running Playwright's async
API; the test hands it coroutines (``call``) and waits for their results from
its own, loop-free thread. Never ``playwright install``: the browser is
/usr/bin/chromium (scripts/bootstrap installs Debian's package).
"""

from __future__ import annotations

import asyncio
import shutil
import threading
from collections.abc import Awaitable, Callable
from typing import Any

CHROMIUM = "/usr/bin/chromium"
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
        "--disable-sync", "--no-first-run"]


def available() -> bool:
    try:
        import playwright  # noqa: F401
    except ImportError:
        return False
    return shutil.which(CHROMIUM) is not None


class Chromium:
    def __init__(self, timeout: float = 60.0) -> None:
        self.timeout = timeout
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, name="chromium", daemon=True)
        self._thread.start()
        self._playwright: Any = None
        self.browser: Any = None
        self.call(self._launch)

    async def _launch(self) -> None:
        from playwright.async_api import async_playwright

        self._playwright = await async_playwright().start()
        self.browser = await self._playwright.chromium.launch(executable_path=CHROMIUM, args=ARGS)

    def call(self, fn: Callable[..., Awaitable[Any]], *args: Any, **kwargs: Any) -> Any:
        """Run ``await fn(*args, **kwargs)`` on the browser's thread; its result (or exception) here."""
        return asyncio.run_coroutine_threadsafe(fn(*args, **kwargs), self.loop).result(self.timeout)

    def close(self) -> None:
        async def shut() -> None:
            if self.browser is not None:
                await self.browser.close()
            if self._playwright is not None:
                await self._playwright.stop()
            await self.loop.shutdown_default_executor()

        try:
            self.call(shut)
        finally:
            self.loop.call_soon_threadsafe(self.loop.stop)
            self._thread.join(self.timeout)
            self.loop.close()
