"""hid:// and msr+hid:// readers, with evdev mocked at its library boundary (no /dev/uinput here).

The fake ``InputDevice`` has a real pipe as its fd (so select() works as on
a device node) and yields real ``evdev.InputEvent`` objects.
"""

from __future__ import annotations

import errno
import os
import queue
import threading

import evdev
import pytest
from evdev import InputEvent, ecodes

from posd.drivers import registry
from posd.drivers.base import DeviceState

WAIT = 10.0


class FakeInputDevice:
    devices: dict[str, "FakeInputDevice"] = {}
    present: set[str] = set()

    def __init__(self, path: str, readonly: bool = False) -> None:
        if path not in self.present:
            raise FileNotFoundError(errno.ENOENT, "No such file or directory", path)
        self.path = path
        self._r, self._w = os.pipe()
        os.set_blocking(self._r, False)
        self.fd = self._r
        self.events: list[InputEvent] = []
        self.lock = threading.Lock()
        self.grabbed = False
        self.unplugged = False
        self.closed = False
        FakeInputDevice.devices[path] = self

    # what the driver calls
    def grab(self) -> None:
        self.grabbed = True

    def ungrab(self) -> None:
        if self.unplugged:
            raise OSError(errno.ENODEV, "No such device")
        self.grabbed = False

    def read(self):
        if self.unplugged:
            raise OSError(errno.ENODEV, "No such device")
        with self.lock:
            events, self.events = self.events, []
        try:
            os.read(self._r, 65536)
        except BlockingIOError:
            pass
        if not events:
            raise BlockingIOError(errno.EAGAIN, "Resource temporarily unavailable")
        yield from events

    def close(self) -> None:
        self.closed = True
        for fd in (self._r, self._w):
            try:
                os.close(fd)
            except OSError:
                pass

    # what the test calls
    def type_keys(self, keys: list[tuple[int, int]]) -> None:
        with self.lock:
            for code, value in keys:
                self.events.append(InputEvent(0, 0, ecodes.EV_KEY, code, value))
                self.events.append(InputEvent(0, 0, ecodes.EV_SYN, ecodes.SYN_REPORT, 0))
        os.write(self._w, b"x")

    def unplug(self) -> None:
        self.unplugged = True
        FakeInputDevice.present.discard(self.path)
        os.write(self._w, b"x")


@pytest.fixture
def fake_evdev(monkeypatch):
    FakeInputDevice.devices = {}
    FakeInputDevice.present = set()
    monkeypatch.setattr(evdev, "InputDevice", FakeInputDevice)
    return FakeInputDevice


def keys_for(text: str) -> list[tuple[int, int]]:
    """US-layout key events for ASCII text (what a US-programmed scanner sends)."""
    from posd.drivers.keymaps import LAYOUTS

    layout = LAYOUTS["us"]
    by_char = {c: (k, False) for k, c in layout.normal.items()}
    by_char.update({c: (k, True) for k, c in layout.shift.items()})
    by_char.update({"\r": (ecodes.KEY_ENTER, False), " ": (ecodes.KEY_SPACE, False)})
    events = []
    for ch in text:
        if ch == "\x1d":
            events += [(ecodes.KEY_LEFTCTRL, 1), (ecodes.KEY_RIGHTBRACE, 1), (ecodes.KEY_RIGHTBRACE, 0),
                       (ecodes.KEY_LEFTCTRL, 0)]
            continue
        code, shift = by_char[ch]
        events += ([(ecodes.KEY_LEFTSHIFT, 1)] if shift else []) + [(code, 1), (code, 0)]
        events += [(ecodes.KEY_LEFTSHIFT, 0)] if shift else []
    return events


class Recorder:
    def __init__(self) -> None:
        self.scans: queue.Queue = queue.Queue()
        self.rejected: queue.Queue = queue.Queue()
        self.states: list[tuple[DeviceState, str | None]] = []
        self.cond = threading.Condition()

    def on_data(self, scan) -> None:
        self.scans.put(scan)

    def on_rejected(self, card) -> None:
        self.rejected.put(card)

    def on_status(self, status) -> None:
        with self.cond:
            self.states.append((status.state, status.reason))
            self.cond.notify_all()

    def wait_state(self, state: DeviceState, after: int = 0) -> int:
        def find():
            for i, (s, _) in enumerate(self.states[after:], start=after):
                if s is state:
                    return i + 1
            return None

        with self.cond:
            assert self.cond.wait_for(lambda: find() is not None, WAIT), self.states
            return find()


@pytest.fixture
def started():
    devices = []
    yield devices
    for d in devices:
        assert d.stop(timeout=WAIT)


def open_hid(started, rec, url, role="scanner"):
    kwargs = dict(on_data=rec.on_data, on_status=rec.on_status, backoff_min=0.02, backoff_max=0.2)
    if role == "scanner":
        device = registry.open_scanner("wedge", url, **kwargs)
    else:
        device = registry.open_card_reader("msr", url, on_rejected=rec.on_rejected, **kwargs)
    device.start()
    started.append(device)
    return device


def test_hid_scanner_grabs_decodes_and_frames(fake_evdev, started, tmp_path):
    path = str(tmp_path / "usb-Honeywell-event-kbd")
    fake_evdev.present.add(path)
    rec = Recorder()
    open_hid(started, rec, f"hid://{path}?layout=us&prefix=%23")
    rec.wait_state(DeviceState.IDLE)
    dev = fake_evdev.devices[path]
    assert dev.grabbed
    dev.type_keys(keys_for("#2900000000018\r#M\x1d12345\r"))
    first, second = rec.scans.get(timeout=WAIT), rec.scans.get(timeout=WAIT)
    assert (first.data, first.device) == ("2900000000018", "wedge")
    assert second.data == "M\x1d12345"  # GS kept for GS1 codes, prefix stripped


def test_hid_scanner_aim_identifier_names_the_symbology(fake_evdev, started, tmp_path):
    path = str(tmp_path / "kbd")
    fake_evdev.present.add(path)
    rec = Recorder()
    open_hid(started, rec, f"hid://{path}?aim=1")
    rec.wait_state(DeviceState.IDLE)
    fake_evdev.devices[path].type_keys(keys_for("]E05901234123457\r]Q1posd:m:1\r"))
    a, b = rec.scans.get(timeout=WAIT), rec.scans.get(timeout=WAIT)
    assert (a.data, a.symbology) == ("5901234123457", "EAN13")
    assert (b.data, b.symbology) == ("posd:m:1", "QR")


def test_hid_scanner_unplug_and_replug_recovers(fake_evdev, started, tmp_path):
    path = str(tmp_path / "kbd")
    fake_evdev.present.add(path)
    rec = Recorder()
    scanner = open_hid(started, rec, f"hid://{path}")
    after = rec.wait_state(DeviceState.IDLE)
    old = fake_evdev.devices[path]
    old.unplug()
    after = rec.wait_state(DeviceState.ERROR, after)
    assert rec.states[after - 1] == (DeviceState.ERROR, "offline")
    assert old.closed
    fake_evdev.present.add(path)
    scanner.kick()  # what hot-plug does when the device node appears
    rec.wait_state(DeviceState.IDLE, after)
    fake_evdev.devices[path].type_keys(keys_for("ABC123\r"))
    assert rec.scans.get(timeout=WAIT).data == "ABC123"


def test_missing_device_is_offline_not_a_crash(fake_evdev, started, tmp_path):
    rec = Recorder()
    open_hid(started, rec, f"hid://{tmp_path}/nope")
    rec.wait_state(DeviceState.ERROR)
    assert rec.states[0] == (DeviceState.ERROR, "offline")


def test_msr_hid_passes_a_loyalty_track_and_drops_a_payment_card(fake_evdev, started, tmp_path, caplog):
    path = str(tmp_path / "usb-MagTek-event-kbd")
    fake_evdev.present.add(path)
    rec = Recorder()
    open_hid(started, rec, f"msr+hid://{path}", role="card_reader")
    rec.wait_state(DeviceState.IDLE)
    dev = fake_evdev.devices[path]
    caplog.set_level("DEBUG")
    dev.type_keys(keys_for("%B4111111111111111^DOE/JOHN^2512101000000000?;4111111111111111=25121010000000000000?\r"))
    dev.type_keys(keys_for(";2900000000018?\r"))
    member = rec.scans.get(timeout=WAIT)
    assert (member.data, member.symbology) == ("2900000000018", "MSR")
    rejected = rec.rejected.get(timeout=WAIT)
    assert (rejected.device, rejected.reason) == ("msr", "payment_card")
    assert rec.scans.empty()
    assert "4111" not in caplog.text and "DOE" not in caplog.text
    assert "4111" not in repr(rejected)
