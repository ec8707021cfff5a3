"""Hot-plug: udev events plus a periodic reconcile, debounced.

``HotplugWatcher`` watches the device paths of the configured devices (best
``/dev/serial/by-id/...`` and ``/dev/input/by-id/...`` links, which udev
re-creates for the same device whatever port it is plugged into). A udev
event naming a watched path (its node or one of its links) triggers a check
at once; a reconcile every ``poll_s`` catches what udev did not say (no
netlink in a container, a missed event). A device is reported gone only
after ``missed_polls`` checks in a row found nothing (a replug, a USB reset
or a slow udev rule must not flap the device), and back at the first check
that finds it, so a replugged scanner reopens at once (its reconnect loop
is kicked) instead of waiting for its backoff.

The udev monitor is anything with pyudev's ``Monitor.poll(timeout)``
returning objects with ``action``, ``device_node`` and ``device_links``;
``udev_monitor()`` builds the real one, or returns None when netlink is not
available (polling alone then).
"""

from __future__ import annotations

import logging
import os
import threading
from dataclasses import dataclass
from typing import Any, Callable

from .link import StopPipe, wait_for_input

__all__ = ["HotplugWatcher", "udev_monitor", "SUBSYSTEMS"]

log = logging.getLogger(__name__)

SUBSYSTEMS = ("tty", "input", "usb", "usbmisc", "video4linux")
Change = Callable[[bool], None]


@dataclass
class _Watched:
    path: str
    on_change: Change
    present: bool
    misses: int = 0


def udev_monitor() -> Any | None:
    """pyudev's netlink monitor on the subsystems devices live in, or None."""
    try:
        import pyudev

        monitor = pyudev.Monitor.from_netlink(pyudev.Context())
        for subsystem in SUBSYSTEMS:
            monitor.filter_by(subsystem)
        monitor.start()
        return monitor
    except Exception as exc:  # no libudev, no netlink (containers): polling still works
        log.info("udev events unavailable (%s); polling device paths only", type(exc).__name__)
        return None


class HotplugWatcher:
    def __init__(self, *, monitor: Any | None = None, poll_s: float = 0.5, missed_polls: int = 3,
                 exists: Callable[[str], bool] = os.path.exists) -> None:
        self.monitor = monitor
        self.poll_s = poll_s
        self.missed_polls = missed_polls
        self._exists = exists
        self._watched: dict[str, _Watched] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._wake: StopPipe | None = None  # ends the wait for udev when stopping

    def watch(self, path: str, on_change: Change) -> None:
        """Call ``on_change(present)`` when ``path`` comes or (debounced) goes."""
        with self._lock:
            self._watched[path] = _Watched(path, on_change, self._exists(path))

    def present(self, path: str) -> bool:
        return self._watched[path].present

    def start(self) -> None:
        if getattr(self.monitor, "fileno", None) is not None:
            self._wake = StopPipe()
        self._thread = threading.Thread(target=self._run, name="posd-hotplug", daemon=True)
        self._thread.start()

    def begin_stop(self) -> None:
        """Ask the thread to end, now, without waiting for it (stop() then joins it)."""
        self._stop.set()
        if self._wake is not None:
            self._wake.set()

    def stop(self, timeout: float = 2.0) -> None:
        self.begin_stop()
        if self._thread is not None:
            self._thread.join(timeout)
            if self._thread.is_alive():
                return  # still inside a callback: the pipe stays theirs
        if self._wake is not None:
            self._wake.close()
            self._wake = None

    def _run(self) -> None:
        while not self._stop.is_set():
            if self.monitor is None:
                self._stop.wait(self.poll_s)
            else:
                self._drain_events()
            if not self._stop.is_set():
                self.reconcile()

    def _drain_events(self) -> None:
        """Wait up to ``poll_s`` for udev events; check the paths they name right away."""
        try:
            event = self.monitor.poll(timeout=0 if self._waited_for_udev() else self.poll_s)
            while event is not None and not self._stop.is_set():
                self._on_event(event)
                event = self.monitor.poll(timeout=0)
        except Exception as exc:
            log.warning("udev monitor failed (%s); polling only", type(exc).__name__)
            self.monitor = None

    def _waited_for_udev(self) -> bool:
        """Wait up to ``poll_s`` for the monitor's socket or the stop pipe; False when the monitor
        has no socket to wait on (its own poll then waits). A stop ends the wait at once: a service
        stop is not held up by a poll that would have run out on its own."""
        if self._wake is None:
            return False
        wait_for_input([self.monitor.fileno(), self._wake.fd], self.poll_s)
        return True

    def _on_event(self, event: Any) -> None:
        names = {event.device_node, *(getattr(event, "device_links", None) or ())} - {None}
        for item in list(self._watched.values()):
            if item.path in names or os.path.realpath(item.path) in names:
                log.debug("udev %s for %s", event.action, item.path)
                if event.action == "add" and self._exists(item.path):
                    # A replug faster than the debounce is still a new device: reopen it now.
                    item.misses, item.present = 0, True
                    self._report(item, True)
                else:
                    self.reconcile(only=item.path)

    def reconcile(self, only: str | None = None) -> None:
        """Check every watched path (or one); report changes, gone only after the misses."""
        with self._lock:
            items = [self._watched[only]] if only else list(self._watched.values())
        for item in items:
            if self._exists(item.path):
                item.misses = 0
                if not item.present:
                    item.present = True
                    self._report(item, True)
                continue
            item.misses += 1
            if item.present and item.misses >= self.missed_polls:
                item.present = False
                self._report(item, False)

    def _report(self, item: _Watched, present: bool) -> None:
        log.info("device %s %s", item.path, "attached" if present else "gone")
        try:
            item.on_change(present)
        except Exception:
            log.exception("hot-plug callback for %s failed", item.path)
