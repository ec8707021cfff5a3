"""usb:// printers with pyusb mocked at its library boundary (usb.core.find and the device object)."""

from __future__ import annotations

import errno

import pytest
import usb.core

from posd.core.slip_doc import SlipDocument, Text
from posd.drivers import registry
from posd.drivers.base import DeviceState, PrinterError
from tests.support.printer_emulator import status_byte

OUT_EP, IN_EP = 0x01, 0x82


class Endpoint:
    def __init__(self, address: int) -> None:
        self.bEndpointAddress = address
        self.bmAttributes = 0x02  # bulk


class Interface(list):
    pass


class FakeUsbPrinter:
    """What usb.core.find returns: answers DLE EOT like an Epson in ``state``."""

    def __init__(self, serial: str = "X5KQ001234", state: str = "online") -> None:
        self.serial_number = serial
        self.state = state
        self.written = bytearray()
        self.answers: list[int] = []
        self.kernel_driver = True
        self.configured = False
        self.set_configuration_calls = 0
        self.fail_write: Exception | None = None
        self.timeouts: list[int] = []

    def is_kernel_driver_active(self, interface: int) -> bool:
        return self.kernel_driver

    def detach_kernel_driver(self, interface: int) -> None:
        self.kernel_driver = False

    def get_active_configuration(self):
        if not self.configured:
            raise usb.core.USBError("Configuration not set", errno=errno.EIO)
        return {(0, 0): Interface([Endpoint(OUT_EP), Endpoint(IN_EP)])}

    def set_configuration(self) -> None:
        self.set_configuration_calls += 1
        self.configured = True

    def write(self, endpoint: int, data: bytes, timeout: int | None = None) -> int:
        assert endpoint == OUT_EP and timeout and timeout > 0  # never 0: that blocks forever
        self.timeouts.append(timeout)
        if self.fail_write:
            raise self.fail_write
        data = bytes(data)
        if data[:2] == b"\x10\x04":
            self.answers.append(status_byte(self.state, data[2]))
        else:
            self.written += data
        return len(data)

    def read(self, endpoint: int, size: int, timeout: int | None = None):
        assert endpoint == IN_EP and timeout and timeout > 0
        if not self.answers:
            raise usb.core.USBTimeoutError("Operation timed out", errno=errno.ETIMEDOUT)
        answers, self.answers = self.answers, []
        return answers


@pytest.fixture
def fake_usb(monkeypatch):
    devices: list[FakeUsbPrinter] = []
    calls = []

    def find(**kwargs):
        calls.append(kwargs)
        for dev in devices:
            if (kwargs.get("idVendor"), kwargs.get("idProduct")) == (0x04B8, 0x0202) and kwargs["custom_match"](dev):
                return dev
        return None

    monkeypatch.setattr(usb.core, "find", find)
    return devices, calls


def doc() -> SlipDocument:
    return SlipDocument(slip_id="U-1", locale="en", blocks=(Text("usb slip"),))


def test_usb_printer_prints_with_status_and_keyword_timeouts(fake_usb):
    devices, calls = fake_usb
    dev = FakeUsbPrinter()
    devices.append(dev)
    printer = registry.open_printer("p", "usb://04b8:0202?serial=X5KQ001234&timeout=3")
    sent = printer.print_document(doc())
    assert bytes(dev.written) == sent
    assert not dev.kernel_driver and dev.set_configuration_calls == 1
    assert set(dev.timeouts) >= {3000}
    printer.print_document(doc())
    assert dev.set_configuration_calls == 1  # configured devices are left alone (no reset)
    assert calls[0]["idVendor"] == 0x04B8 and "backend" in calls[0]


def test_usb_printer_picks_the_one_with_the_serial(fake_usb):
    devices, _ = fake_usb
    devices.extend([FakeUsbPrinter(serial="OTHER"), FakeUsbPrinter(serial="WANTED")])
    printer = registry.open_printer("p", "usb://04b8:0202?serial=WANTED")
    printer.print_document(doc())
    assert devices[1].written and not devices[0].written


@pytest.mark.parametrize("state", ["paper_out", "cover_open"])
def test_usb_printer_status_before_the_job(fake_usb, state):
    devices, _ = fake_usb
    devices.append(FakeUsbPrinter(state=state))
    printer = registry.open_printer("p", "usb://04b8:0202")
    with pytest.raises(PrinterError) as err:
        printer.print_document(doc())
    assert err.value.reason == state and not err.value.sent
    assert not devices[0].written


def test_unplugged_usb_printer_is_offline(fake_usb):
    printer = registry.open_printer("p", "usb://04b8:0202")
    with pytest.raises(PrinterError) as err:
        printer.print_document(doc())
    assert err.value.reason == "offline"
    assert printer.check_ready() == "offline" and printer.reachable is False


def test_write_timeout_and_permission_errors_are_translated(fake_usb):
    devices, _ = fake_usb
    dev = FakeUsbPrinter()
    devices.append(dev)
    printer = registry.open_printer("p", "usb://04b8:0202")
    dev.fail_write = usb.core.USBTimeoutError("Operation timed out", errno=errno.ETIMEDOUT)
    with pytest.raises(PrinterError) as err:
        printer.print_document(doc())
    assert err.value.reason == "offline" and err.value.sent
    dev.fail_write = usb.core.USBError("Access denied", errno=errno.EACCES)
    with pytest.raises(PrinterError) as err:
        printer.print_document(doc())
    assert err.value.reason == "io_error" and "udev" in err.value.detail
    assert printer.state is DeviceState.ERROR


def test_bad_usb_urls_are_refused_at_config_time():
    for bad in ("usb://04b8", "usb://zzzz:0202", "usb://04b8:0202/x", "usb://04b8:0202?timeout=0"):
        with pytest.raises(ValueError):
            registry.validate("printer", bad)
