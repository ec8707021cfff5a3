"""Real byte-stream scanners on loopback: a pty, a serial port on a pty, a TCP bridge."""

from __future__ import annotations

import logging
import os
import select
import socket

import pytest

from posd.drivers import registry
from posd.drivers.base import DeviceState, ScanData
from posd.drivers.scanner_serial import write_scan
from tests.support.devices import WAIT, FakeSerialDevice, Recorder
from tests.support.wait import wait_until


@pytest.fixture
def rec() -> Recorder:
    return Recorder()


@pytest.fixture
def scanners():
    started = []
    yield started
    for s in started:
        assert s.stop(timeout=WAIT)


def start(scanners, rec, name, url, **kwargs):
    scanner = registry.open_scanner(name, url, on_data=rec.on_data, on_status=rec.on_status,
                                    backoff_min=0.02, backoff_max=0.2, **kwargs)
    scanner.start()
    scanners.append(scanner)
    return scanner


# -- pty:// ---------------------------------------------------------------------
def test_pty_scanner_delivers_codes_written_to_the_link(tmp_path, rec, scanners):
    link = tmp_path / "run" / "scanner0"
    scanner = start(scanners, rec, "scanner0", f"pty://{link}?suffix=CR")
    rec.wait_state(DeviceState.IDLE)
    assert link.is_symlink() and os.readlink(link) == scanner.slave_name

    write_scan(str(link), "5901234123457")
    scan = rec.next_scan()
    assert (scan.device, scan.data, scan.symbology) == ("scanner0", "5901234123457", None)
    assert scan.received_mono > 0

    write_scan(str(link), "0109501101530003\x1d10ABC")
    write_scan(str(link), "M0001")
    assert rec.next_scan().data == "0109501101530003\x1d10ABC"
    assert rec.next_scan().data == "M0001"


def test_pty_is_raw_so_line_endings_arrive_untranslated(tmp_path, rec, scanners):
    link = tmp_path / "s"
    start(scanners, rec, "s", f"pty://{link}?suffix=LF")
    rec.wait_state(DeviceState.IDLE)
    write_scan(str(link), "ABC", suffix=b"\n")  # a cooked tty would send CR LF
    write_scan(str(link), "DEF", suffix=b"\n")
    assert [rec.next_scan().data, rec.next_scan().data] == ["ABC", "DEF"]


def test_pty_scanner_without_suffix_frames_by_silence(tmp_path, rec, scanners):
    link = tmp_path / "s"
    start(scanners, rec, "s", f"pty://{link}?suffix=NONE&idle_ms=30")
    rec.wait_state(DeviceState.IDLE)
    write_scan(str(link), "5901234123457", suffix=b"")
    assert rec.next_scan().data == "5901234123457"


def test_a_partial_code_left_on_the_line_does_not_spoil_the_next_scan(tmp_path, rec, scanners):
    """A fragment with no suffix (a scan cut short) was kept forever and prefixed to the next code:
    a member card turned away, a payment card's digits run into a longer "code"."""
    link = tmp_path / "s"
    start(scanners, rec, "s", f"pty://{link}?suffix=CR")
    rec.wait_state(DeviceState.IDLE)
    write_scan(str(link), "2900000", suffix=b"")
    wait_until(lambda: scanners[0].framer.pending, WAIT, "the fragment to be read", interval=0.01)
    wait_until(lambda: not scanners[0].framer.pending, WAIT, "the stale fragment to be dropped", interval=0.05)
    write_scan(str(link), "2900000001022")
    assert rec.next_scan().data == "2900000001022"


def test_aim_identifiers_on_a_serial_line_scanner(tmp_path, rec, scanners):
    """aim=1 is documented for every scanner; a pty (or serial, or TCP) one refused it."""
    link = tmp_path / "s"
    start(scanners, rec, "s", f"pty://{link}?suffix=CR&aim=1")
    rec.wait_state(DeviceState.IDLE)
    write_scan(str(link), "]E02900000001046")
    scan = rec.next_scan()
    assert (scan.data, scan.symbology) == ("2900000001046", "EAN13")


def test_stop_closes_and_removes_only_our_link(tmp_path, rec):
    link = tmp_path / "scanner0"
    scanner = registry.open_scanner("s", f"pty://{link}", on_data=rec.on_data, on_status=rec.on_status)
    scanner.start()
    rec.wait_state(DeviceState.IDLE)
    assert scanner.stop(timeout=WAIT)
    assert scanner.state is DeviceState.CLOSED
    assert [s.state for s in rec.statuses][-1] is DeviceState.CLOSED
    assert not link.exists() and not link.is_symlink()


def test_link_repointed_by_someone_else_is_left_alone_on_close(tmp_path, rec):
    link = tmp_path / "scanner0"
    scanner = registry.open_scanner("s", f"pty://{link}", on_data=rec.on_data)
    scanner._next_check = float("inf")  # close alone: a check while running points the link back
    scanner.start()
    wait_until(link.is_symlink)
    other = tmp_path / "other"
    other.write_text("")
    os.unlink(link)
    os.symlink(other, link)
    assert scanner.stop(timeout=WAIT)
    assert os.readlink(link) == str(other)


def test_pty_link_removed_while_running_is_recreated(tmp_path, rec, scanners):
    link = tmp_path / "scanner0"
    scanner = start(scanners, rec, "s", f"pty://{link}")
    scanner.LINK_CHECK_S = 0.0
    rec.wait_state(DeviceState.IDLE)
    os.unlink(link)
    wait_until(link.is_symlink)
    write_scan(str(link), "AFTER")
    assert rec.next_scan().data == "AFTER"


def test_a_file_put_in_place_of_the_link_is_an_error_until_it_is_moved_away(tmp_path, rec, scanners, caplog):
    """`rm LINK; echo x > LINK` while posd ran went unseen: health said idle, nothing was logged, and
    every code typed was lost. It is the scanner's error now, named as at the start, and the link is
    made again once the file is moved away."""
    caplog.set_level(logging.INFO, logger="posd.drivers")
    link = tmp_path / "scanner0"
    scanner = start(scanners, rec, "s", f"pty://{link}")
    scanner.LINK_CHECK_S = 0.0
    seen = rec.wait_state(DeviceState.IDLE)
    os.unlink(link)
    link.write_text("x\n")
    seen = rec.wait_state(DeviceState.ERROR, "io_error", after=seen)
    assert link.read_text() == "x\n"
    assert f"{link} is a file, not a link posd made" in caplog.text
    link.rename(tmp_path / "aside")
    rec.wait_state(DeviceState.IDLE, after=seen)
    wait_until(link.is_symlink)
    write_scan(str(link), "AFTER")
    assert rec.next_scan().data == "AFTER"


def test_a_link_pointed_elsewhere_while_running_is_pointed_back(tmp_path, rec, scanners, caplog):
    """`ln -sf /dev/null LINK` while posd ran was left so, with one warning: health idle and every code
    typed lost. A link at the path is replaced, as at the start."""
    caplog.set_level(logging.INFO, logger="posd.drivers")
    link = tmp_path / "scanner0"
    scanner = start(scanners, rec, "s", f"pty://{link}")
    scanner.LINK_CHECK_S = 0.0
    rec.wait_state(DeviceState.IDLE)
    os.unlink(link)
    link.symlink_to("/dev/null")
    wait_until(lambda: os.readlink(link) == scanner.slave_name)
    assert f"{link} pointed at /dev/null" in caplog.text
    write_scan(str(link), "BACK")
    assert rec.next_scan().data == "BACK"


def test_a_link_left_by_a_killed_run_is_replaced(tmp_path, rec, scanners, caplog):
    """kill -9 leaves the link pointing at a pseudo-terminal that died with the process."""
    caplog.set_level(logging.INFO, logger="posd.drivers.link_pty")
    master, slave = os.openpty()
    dead = os.ttyname(slave)
    os.close(slave)
    os.close(master)
    link = tmp_path / "scanner0"
    link.symlink_to(dead)
    assert not link.exists()  # dangling: the node went with the last descriptor
    scanner = start(scanners, rec, "s", f"pty://{link}?suffix=CR")
    rec.wait_state(DeviceState.IDLE)
    assert os.readlink(link) == scanner.slave_name
    assert f"{link} points at {dead}, which is gone" in caplog.text
    write_scan(str(link), "AFTER-KILL")
    assert rec.next_scan().data == "AFTER-KILL"


def test_a_link_to_a_terminal_in_use_is_taken_back_without_touching_that_terminal(tmp_path, rec, scanners,
                                                                                   pty_pair):
    master, slave = pty_pair()  # the number the dead daemon had, handed to another terminal since
    link = tmp_path / "scanner0"
    link.symlink_to(os.ttyname(slave))
    scanner = start(scanners, rec, "s", f"pty://{link}?suffix=CR")
    rec.wait_state(DeviceState.IDLE)
    assert os.readlink(link) == scanner.slave_name != os.ttyname(slave)
    write_scan(str(link), "MINE")
    assert rec.next_scan().data == "MINE"
    assert select.select([master], [], [], 0)[0] == []  # nothing reached the other terminal


@pytest.mark.parametrize("kind", ["file", "folder"])
def test_what_posd_did_not_make_is_not_overwritten(tmp_path, rec, scanners, caplog, kind):
    link = tmp_path / "scanner0"
    if kind == "file":
        link.write_text("store IT's notes\n")
    else:
        link.mkdir()
        (link / "keep").write_text("x")
    start(scanners, rec, "s", f"pty://{link}?suffix=CR")
    rec.wait_state(DeviceState.ERROR, "io_error")
    assert f"{link} is a {kind}, not a link posd made" in caplog.text
    assert not link.is_symlink()
    assert (link.read_text() if kind == "file" else (link / "keep").read_text()) in ("store IT's notes\n", "x")


def test_write_scan_refuses_a_regular_file(tmp_path):
    target = tmp_path / "not-a-tty"
    target.write_text("")
    with pytest.raises(ValueError, match="not a terminal"):
        write_scan(str(target), "123")
    assert target.read_text() == ""


def test_callback_errors_do_not_stop_the_reader(tmp_path, rec, scanners):
    link = tmp_path / "s"
    calls = []

    def flaky(scan: ScanData) -> None:
        calls.append(scan.data)
        if len(calls) == 1:
            raise RuntimeError("consumer bug")
        rec.on_data(scan)

    scanner = registry.open_scanner("s", f"pty://{link}", on_data=flaky, on_status=rec.on_status)
    scanner.start()
    scanners.append(scanner)
    rec.wait_state(DeviceState.IDLE)
    write_scan(str(link), "FIRST")
    write_scan(str(link), "SECOND")
    assert rec.next_scan().data == "SECOND"


# -- serial:// on a pty that goes away and comes back ----------------------------------
def test_serial_scanner_survives_unplug_and_replug(tmp_path, rec, scanners):
    link = tmp_path / "usb-Honeywell_1900-if00"
    device = FakeSerialDevice(link)
    start(scanners, rec, "lane-scanner", f"serial://{link}?baudrate=9600&suffix=CR")
    seen = rec.wait_state(DeviceState.IDLE)
    device.send(b"5901234123457\r")
    assert rec.next_scan().data == "5901234123457"

    device.send(b"12")  # unplugged mid-code: the partial code must not survive
    device.unplug()
    seen = rec.wait_state(DeviceState.ERROR, "offline", after=seen)

    device = FakeSerialDevice(link)
    rec.wait_state(DeviceState.IDLE, after=seen)
    device.send(b"M0001\r")
    assert rec.next_scan().data == "M0001"
    assert rec.scans.empty()
    device.unplug()


def test_serial_scanner_absent_at_start_reports_offline_then_comes_up(tmp_path, rec, scanners):
    link = tmp_path / "usb-late"
    start(scanners, rec, "s", f"serial://{link}")
    seen = rec.wait_state(DeviceState.ERROR, "offline")
    device = FakeSerialDevice(link)
    rec.wait_state(DeviceState.IDLE, after=seen)
    device.send(b"LATE\r")
    assert rec.next_scan().data == "LATE"
    device.unplug()


def test_status_carries_name_kind_and_redacted_url(tmp_path, rec, scanners):
    link = tmp_path / "s"
    start(scanners, rec, "front", f"pty://{link}?suffix=CR")
    rec.wait_state(DeviceState.IDLE)
    status = rec.statuses[-1]
    assert (status.name, status.kind, status.reason) == ("front", "scanner", None)
    assert status.url == f"pty://{link}?suffix=CR"


# -- tcp:// -------------------------------------------------------------------------
class Bridge:
    """A scanner bridge: accepts one client at a time and sends it bytes."""

    def __init__(self) -> None:
        self.server = socket.create_server(("127.0.0.1", 0))
        self.server.settimeout(WAIT)
        self.port = self.server.getsockname()[1]

    def accept(self) -> socket.socket:
        conn, _ = self.server.accept()
        return conn

    def close(self) -> None:
        self.server.close()


def test_tcp_scanner_frames_the_stream_and_reconnects(rec, scanners):
    bridge = Bridge()
    try:
        start(scanners, rec, "bridge", f"tcp://127.0.0.1:{bridge.port}")
        conn = bridge.accept()
        seen = rec.wait_state(DeviceState.IDLE)
        conn.sendall(b"111\r22")
        conn.sendall(b"2\r")
        assert [rec.next_scan().data, rec.next_scan().data] == ["111", "222"]
        conn.close()  # the bridge restarts
        seen = rec.wait_state(DeviceState.ERROR, "offline", after=seen)
        conn = bridge.accept()
        rec.wait_state(DeviceState.IDLE, after=seen)
        conn.sendall(b"333\r")
        assert rec.next_scan().data == "333"
        conn.close()
    finally:
        bridge.close()


def test_tcp_scanner_to_a_closed_port_is_offline(rec, scanners):
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()
    start(scanners, rec, "bridge", f"tcp://127.0.0.1:{port}")
    rec.wait_state(DeviceState.ERROR, "offline")


# -- stopping ----------------------------------------------------------------------
@pytest.mark.parametrize("medium", ["pty", "tcp"])
def test_a_stop_ends_a_read_in_progress_instead_of_sitting_out_its_timeout(tmp_path, rec, medium):
    """A read waits on the scanner's stop pipe too: with a read timeout of ten minutes, the reader
    thread still ends within the test's bound once stopped, and a started-again scanner reads."""
    bridge = Bridge() if medium == "tcp" else None
    url = f"tcp://127.0.0.1:{bridge.port}" if bridge else f"pty://{tmp_path / 's'}?suffix=CR"
    scanner = registry.open_scanner("s", url, on_data=rec.on_data, on_status=rec.on_status, read_timeout=600.0)
    try:
        scanner.start()
        conn = bridge.accept() if bridge else None
        seen = rec.wait_state(DeviceState.IDLE)
        assert scanner.stop(timeout=WAIT)
        seen = rec.wait_state(DeviceState.CLOSED, after=seen)
        scanner.start()  # its stop byte is gone with the old pipe: the reads wait again
        if bridge:
            conn.close()
            conn = bridge.accept()
        rec.wait_state(DeviceState.IDLE, after=seen)
        if bridge:
            conn.sendall(b"111\r")
        else:
            write_scan(str(tmp_path / "s"), "111")
        assert rec.next_scan().data == "111"
    finally:
        assert scanner.stop(timeout=WAIT)
        if bridge:
            bridge.close()
