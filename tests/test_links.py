"""The links (one per medium) and the one mapping of foreign errors, on real ptys, sockets and files."""

from __future__ import annotations

import errno
import os
import select
import socket
import threading
import tty

import pytest
import serial

from posd.core.slip_doc import SlipDocument, Text
from posd.drivers import link_file, link_serial, link_tcp, registry
from posd.drivers.base import DeviceState
from posd.drivers.errors import DeviceError, ErrorMap, PrinterError, printer_errors
from tests.support.printer_emulator import status_byte

WAIT = 10.0


# -- the error mapping ----------------------------------------------------------------
@pytest.mark.parametrize("exc, reason, detail", [
    (FileNotFoundError(errno.ENOENT, "No such file"), "offline", "open: No such file or directory"),
    (OSError(errno.ENODEV, "No such device"), "offline", "open: No such device"),
    (OSError(errno.EIO, "I/O error"), "offline", "open: Input/output error"),
    (PermissionError(errno.EACCES, "denied"), "io_error", "open: permission denied (udev rule, group posd)"),
    (TimeoutError("timed out"), "offline", "open: timed out"),
    (OSError(errno.ETIMEDOUT, "timed out"), "offline", "open: timed out"),
    (OSError(errno.EBUSY, "busy"), "io_error", "open: Device or resource busy"),
    (OSError("no errno"), "io_error", "open: OSError: no errno"),  # the library's words, for the log
    (serial.SerialException("device reports readiness to read but returned no data"), "offline",
     "open: device disconnected"),
])
def test_device_errors_map_to_reasons(exc, reason, detail):
    with pytest.raises(DeviceError) as err, ErrorMap()("open"):
        raise exc
    assert (err.value.reason, err.value.detail) == (reason, detail)
    assert err.value.__cause__ is exc  # the log keeps the original


def test_a_medium_says_what_its_errors_mean():
    network = ErrorMap(default="offline", denied="permission denied")
    assert network.translate(OSError(errno.EINVAL, "bad"), "send").reason == "offline"
    assert network.translate(PermissionError(errno.EACCES, "x"), "send").detail == "send: permission denied"
    serial_map = ErrorMap(foreign=(OSError, ValueError), timeouts=(serial.SerialTimeoutException,))
    assert serial_map.translate(serial.SerialTimeoutException("Write timeout"), "write").reason == "offline"
    with pytest.raises(DeviceError) as err, serial_map("open"):
        raise ValueError("Invalid baud rate")
    assert err.value.reason == "io_error"
    with pytest.raises(KeyError), ErrorMap()("open"):  # not the library's: not ours to translate
        raise KeyError("bug")


def test_an_errno_behind_a_wrapper_counts():
    try:
        try:
            raise OSError(errno.ENXIO, "No such device or address")
        except OSError as inner:
            raise serial.SerialException("could not open port") from inner
    except serial.SerialException as outer:
        assert ErrorMap().translate(outer, "open").reason == "offline"


def test_printer_errors_say_how_far_the_job_got():
    with pytest.raises(PrinterError) as err, printer_errors(sent=True):
        raise DeviceError("offline", "send: Broken pipe")
    assert (err.value.reason, err.value.sent, err.value.delivered) == ("offline", True, False)
    refused = PrinterError("paper_out")
    with pytest.raises(PrinterError) as err, printer_errors(sent=True):
        raise refused
    assert err.value is refused and refused.sent
    with pytest.raises(PrinterError) as err, printer_errors(sent=False):
        raise DeviceError("io_error")
    assert not err.value.sent


# -- tcp ------------------------------------------------------------------------------
def test_tcp_link_reads_writes_and_reports_a_closed_peer():
    with socket.create_server(("127.0.0.1", 0)) as server:
        server.settimeout(WAIT)
        link = link_tcp.connect("127.0.0.1", server.getsockname()[1], timeout=WAIT)
        peer, _ = server.accept()
        with peer:
            assert link.read(0.0) == b""  # nothing yet: no wait, no error
            link.write(b"\x10\x04\x01")
            peer.settimeout(WAIT)
            assert peer.recv(3) == b"\x10\x04\x01"
            peer.sendall(b"\x12")
            assert link.read_byte(WAIT) == 0x12
        with pytest.raises(DeviceError) as err:
            link.read(WAIT)
        assert err.value.reason == "offline"
        link.close()
        link.close()  # twice is fine


def test_tcp_link_to_a_closed_port_is_offline():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    with pytest.raises(DeviceError) as err:
        link_tcp.connect("127.0.0.1", port, timeout=WAIT)
    assert err.value.reason == "offline" and str(port) in err.value.detail


# -- file -----------------------------------------------------------------------------
class PtyPrinter:
    """A printer behind a character device: a pty whose master side answers DLE EOT."""

    def __init__(self, state: str = "online") -> None:
        self.master, self.slave = os.openpty()
        tty.setraw(self.slave)
        self.path = os.ttyname(self.slave)
        self.state = state
        self.received = bytearray()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while not self._stop.is_set():
            if not select.select([self.master], [], [], 0.05)[0]:
                continue
            data = os.read(self.master, 4096)
            self.received += data
            for i in range(len(data) - 2):
                if data[i : i + 2] == b"\x10\x04":
                    os.write(self.master, bytes([status_byte(self.state, data[i + 2])]))

    def close(self) -> None:
        self._stop.set()
        self._thread.join(WAIT)
        os.close(self.master)
        os.close(self.slave)


def test_file_printer_on_a_character_device_reads_its_status():
    device = PtyPrinter(state="cover_open")
    try:
        printer = registry.open_printer("p", f"file://{device.path}?timeout=5")
        with pytest.raises(PrinterError) as err:
            printer.print_document(SlipDocument("F-1", "en", blocks=(Text("held"),)))
        assert err.value.reason == "cover_open" and not err.value.sent
        assert b"held" not in device.received
        device.state = "online"
        sent = printer.print_document(SlipDocument("F-2", "en", blocks=(Text("printed"),)))
        assert printer.state is DeviceState.IDLE
        assert sent in bytes(device.received)
    finally:
        device.close()


def test_file_link_on_a_plain_file_is_write_only(tmp_path):
    link = link_file.open_file(str(tmp_path / "spool"), timeout=1.0)
    try:
        assert not link.readable and link.read(0.0) == b"" and link.read_byte(0.0) is None
        link.write(b"job")
    finally:
        link.close()
    assert (tmp_path / "spool").read_bytes() == b"job"
    with pytest.raises(DeviceError) as err:
        link_file.open_file(str(tmp_path / "gone" / "lp0"), timeout=1.0)
    assert err.value.reason == "offline"


# -- serial ---------------------------------------------------------------------------
def test_serial_link_reads_what_arrived_and_notices_a_vanished_node(tmp_path):
    master, slave = os.openpty()
    tty.setraw(slave)
    node = tmp_path / "usb-scanner-if00"
    os.symlink(os.ttyname(slave), node)
    link = link_serial.open_port(str(node), {"baudrate": 9600}, timeout=0.05)
    try:
        assert link.read(0.05) == b""
        os.write(master, b"5901234123457\r")
        data = b""
        for _ in range(100):  # bounded: the bytes are there within a few reads
            data += link.read(0.05)
            if data.endswith(b"\r"):
                break
        assert data == b"5901234123457\r"
        link.check()  # still there
        node.unlink()
        with pytest.raises(DeviceError) as err:
            link.check()
        assert err.value.reason == "offline"
    finally:
        link.close()
        os.close(master)
        os.close(slave)


def test_serial_link_to_a_missing_port_is_offline(tmp_path):
    with pytest.raises(DeviceError) as err:
        link_serial.open_port(str(tmp_path / "ttyUSB9"), {}, timeout=0.1)
    assert err.value.reason == "offline"
