"""Hot-plug: the debounced reconcile, a fake udev monitor kicking a real pty scanner,
and a real daemon whose serial scanner is unplugged and replugged mid-stream."""

from __future__ import annotations

import queue
import select
import socket
from types import SimpleNamespace

import pytest

from posd.drivers import registry
from posd.drivers.base import DeviceState
from posd.drivers.hotplug import HotplugWatcher
from tests.support.central_fixture import demo_seed
from tests.support.devices import WAIT, FakeSerialDevice, Recorder


def test_gone_only_after_several_missed_polls_back_at_once():
    present = {"/dev/x": True}
    changes = []
    watcher = HotplugWatcher(missed_polls=3, exists=lambda p: present[p])
    watcher.watch("/dev/x", changes.append)
    present["/dev/x"] = False
    watcher.reconcile()
    watcher.reconcile()
    assert changes == [] and watcher.present("/dev/x")  # a replug blip does not flap it
    present["/dev/x"] = True
    watcher.reconcile()
    present["/dev/x"] = False
    for _ in range(3):
        watcher.reconcile()
    assert changes == [False]
    present["/dev/x"] = True
    watcher.reconcile()
    assert changes == [False, True]


def test_callback_errors_do_not_stop_the_watcher():
    present = {"/dev/a": False, "/dev/b": False}
    changes = []
    watcher = HotplugWatcher(exists=lambda p: present[p])
    watcher.watch("/dev/a", lambda up: 1 / 0)
    watcher.watch("/dev/b", changes.append)
    present.update({"/dev/a": True, "/dev/b": True})
    watcher.reconcile()
    assert changes == [True]


class FakeUdevMonitor:
    """pyudev's Monitor.poll(timeout) -> Device | None, fed by the test."""

    def __init__(self) -> None:
        self.events: queue.Queue = queue.Queue()
        self.closed = False

    def poll(self, timeout=None):
        if self.closed:
            return None
        try:
            return self.events.get(timeout=timeout) if timeout else self.events.get_nowait()
        except queue.Empty:
            return None

    def close(self) -> None:
        """As closing pyudev's monitor: a poll in progress returns, later ones at once."""
        self.closed = True
        self.events.put(None)

    def emit(self, action: str, node: str, links: tuple[str, ...]) -> None:
        self.events.put(SimpleNamespace(action=action, device_node=node, device_links=links))


def test_udev_add_event_reopens_a_replugged_scanner_at_once(tmp_path):
    link = tmp_path / "usb-Datalogic_QD2430-if00"
    device = FakeSerialDevice(link)
    rec = Recorder()
    # A backoff far longer than the test's wait: only the hot-plug kick can bring it back.
    scanner = registry.open_scanner("front", f"serial://{link}", on_data=rec.on_data, on_status=rec.on_status,
                                    backoff_min=30.0, backoff_max=30.0)
    monitor = FakeUdevMonitor()
    watcher = HotplugWatcher(monitor=monitor, poll_s=60.0, missed_polls=2)  # no periodic poll in time
    watcher.watch(str(link), lambda present: present and scanner.kick())
    scanner.start()
    watcher.start()
    try:
        seen = rec.wait_state(DeviceState.IDLE)
        device.unplug()
        seen = rec.wait_state(DeviceState.ERROR, "offline", after=seen)
        monitor.emit("remove", "/dev/ttyACM0", (str(link),))
        monitor.emit("remove", "/dev/ttyACM0", (str(link),))
        device = FakeSerialDevice(link)
        monitor.emit("add", "/dev/ttyACM0", (str(link),))
        rec.wait_state(DeviceState.IDLE, after=seen)
        device.send(b"2900000000018\r")
        assert rec.next_scan().data == "2900000000018"
    finally:
        monitor.close()  # the watcher's poll_s is a minute: wake it so it sees stop()
        watcher.stop()
        assert scanner.stop(timeout=WAIT)
        device.unplug()



class SocketUdevMonitor(FakeUdevMonitor):
    """As pyudev's: a socket to wait on (``fileno``), and an event read only when one is there."""

    def __init__(self) -> None:
        super().__init__()
        self.ours, self.theirs = socket.socketpair()

    def fileno(self) -> int:
        return self.ours.fileno()

    def poll(self, timeout=None):
        assert timeout == 0, "the watcher waits on the socket itself, never in poll"
        if not select.select([self.ours], [], [], 0)[0]:
            return None
        self.ours.recv(1)
        return super().poll(0)

    def emit(self, action: str, node: str, links: tuple[str, ...]) -> None:
        super().emit(action, node, links)
        self.theirs.send(b"!")


def test_a_stop_ends_the_wait_for_udev_at_once(tmp_path):
    """Waiting on udev's socket, the watcher also waits on its stop pipe: with a minute between
    reconciles it still sees an event at once, and a stop ends its thread within the test's bound."""
    monitor = SocketUdevMonitor()
    path = tmp_path / "ttyACM0"
    changes: queue.Queue = queue.Queue()
    watcher = HotplugWatcher(monitor=monitor, poll_s=60.0, missed_polls=1)
    watcher.watch(str(path), changes.put)
    watcher.start()
    try:
        path.touch()
        monitor.emit("add", str(path), ())
        assert changes.get(timeout=WAIT) is True
    finally:
        watcher.stop(timeout=WAIT)
        monitor.ours.close()
        monitor.theirs.close()
    assert not watcher._thread.is_alive()

# -- through the daemon ----------------------------------------------------------------
@pytest.fixture
def central_seed():
    return demo_seed()


@pytest.fixture
def lane_with_serial_scanner(tmp_path, start_lane):
    link = tmp_path / "lane" / "usb-Honeywell-if00"
    link.parent.mkdir(parents=True)
    device = FakeSerialDevice(link)  # the test unplugs it
    return start_lane(tmp_path / "lane", scanner=f"serial://{link}?suffix=CR"), link, device


def test_daemon_reports_unplug_then_idle_and_identifies_the_next_scan(lane_with_serial_scanner):
    lane, link, device = lane_with_serial_scanner
    stream = lane.sse()
    try:
        device.unplug()
        down = stream.next("device.status")
        assert (down["data"]["device"], down["data"]["state"], down["data"]["reason"]) == ("front", "error", "offline")
        assert "front: offline" in lane.health()["problems"]
        device = FakeSerialDevice(link)
        up = stream.next("device.status")
        assert (up["data"]["state"], up["data"]["reason"]) == ("idle", None)
        device.send(b"2900000000018\r")
        assert stream.next("member.identified")["data"]["member"]["member_id"] == "M0001"
    finally:
        stream.close()
        device.unplug()
