"""DLE EOT status: the pure parser on Epson bytes, and the transports reading it before/after a job."""

from __future__ import annotations

import pytest

from posd.core.slip_doc import SlipDocument, Text
from posd.drivers import registry
from posd.drivers.base import DeviceState, PrinterError
from posd.drivers.printer_status import PrinterStatus, parse_status, query_status
from posd.health import paper_state
from tests.support.printer_emulator import STATES, PrinterEmulator, status_byte


def answers(state: str) -> dict[int, int]:
    return {n: status_byte(state, n) for n in (1, 2, 4)}


@pytest.mark.parametrize("state, reason, warning", [
    ("online", None, None),
    ("paper_near_end", None, "paper_near_end"),
    ("paper_out", "paper_out", None),
    ("cover_open", "cover_open", None),
    ("offline", "offline", None),
])
def test_epson_bits_map_to_reasons(state, reason, warning):
    status = parse_status(answers(state))
    assert status.answered and status.reason == reason and status.warning == warning
    assert status.ok is (reason is None)


def test_hand_written_bytes():
    assert parse_status({1: 0x12, 2: 0x12 | 0x40, 4: 0x12}).reason == "printer_error"
    assert parse_status({1: 0x12, 2: 0x12, 4: 0x12 | 0x60}).reason == "paper_out"  # paper end sensor alone
    assert parse_status({1: 0x12 | 0x08, 2: None, 4: None}).reason == "offline"  # only n=1 answered


@pytest.mark.parametrize("byte", [None, 0x00, 0xFF, 0x13, 0x92, ord("A")])
def test_invalid_or_missing_answers_mean_unknown_not_ok(byte):
    status = parse_status({1: byte, 2: 0x12, 4: 0x12})
    assert status == PrinterStatus(answered=False)
    assert status.reason is None  # unknown: the transport has the last word


def test_query_stops_at_the_first_silence():
    asked = []

    def exchange(query: bytes):
        asked.append(query)
        return None

    assert query_status(exchange) == PrinterStatus(answered=False)
    assert asked == [b"\x10\x04\x01"]


def doc(slip_id: str = "S-1") -> SlipDocument:
    return SlipDocument(slip_id=slip_id, locale="en", blocks=(Text("hello " * 50),))


@pytest.mark.parametrize("state", [s for s in STATES if s not in ("online", "paper_near_end")])
def test_tcp_printer_refuses_a_job_when_the_status_says_so(state):
    with PrinterEmulator(state=state) as emulator:
        printer = registry.open_printer("p", emulator.url)
        with pytest.raises(PrinterError) as err:
            printer.print_document(doc())
        assert err.value.reason == state and not err.value.sent
        assert (printer.state, printer.reason) == (DeviceState.ERROR, state)
        emulator.wait_for_connections(1)
        assert emulator.jobs == []  # not one byte of the slip went out
        emulator.state = "online"
        assert printer.check_ready() is None and printer.state is DeviceState.IDLE


def test_paper_near_end_prints_and_warns():
    with PrinterEmulator(state="paper_near_end") as emulator:
        printer = registry.open_printer("p", emulator.url)
        sent = printer.print_document(doc())
        assert emulator.wait_for_jobs(1) == [sent]
        assert (printer.state, printer.reason) == (DeviceState.IDLE, "paper_near_end")


def test_paper_out_during_the_job_is_reported_as_delivered():
    with PrinterEmulator() as emulator:
        printer = registry.open_printer("p", emulator.url)
        emulator.fail_after(100, "paper_out")
        with pytest.raises(PrinterError) as err:
            printer.print_document(doc())
        assert err.value.reason == "paper_out" and err.value.delivered


def test_a_printer_that_ignores_dle_eot_still_prints():
    with PrinterEmulator() as emulator:
        emulator.respond_to_status = False
        printer = registry.open_printer("p", emulator.url)
        sent = printer.print_document(doc())
        assert emulator.wait_for_jobs(1) == [sent]
        assert printer.state is DeviceState.IDLE


def test_status_can_be_switched_off_per_url():
    with PrinterEmulator(state="paper_out") as emulator:
        printer = registry.open_printer("p", emulator.url + "?status=0")
        printer.print_document(doc())
        emulator.wait_for_jobs(1)
        assert emulator.status_queries == []


def test_serial_printer_on_a_pty_reads_status_and_prints(pty_pair):
    import os
    import threading

    master, slave = pty_pair()
    received = bytearray()
    stop = threading.Event()

    def printer_side() -> None:  # answers DLE EOT n like an Epson with paper near its end
        import select

        while not stop.is_set():
            if not select.select([master], [], [], 0.05)[0]:
                continue
            data = os.read(master, 4096)
            received.extend(data)
            for i in range(len(data) - 2):
                if data[i:i + 2] == b"\x10\x04":
                    os.write(master, bytes([status_byte("paper_near_end", data[i + 2])]))

    thread = threading.Thread(target=printer_side, daemon=True)
    thread.start()
    try:
        printer = registry.open_printer("p", f"serial://{os.ttyname(slave)}?baudrate=38400&timeout=2")
        sent = printer.print_document(doc())
        assert (printer.state, printer.reason) == (DeviceState.IDLE, "paper_near_end")
        assert sent in bytes(received)
    finally:
        stop.set()
        thread.join(5)


@pytest.mark.long  # seconds of real time: CI runs it with the fault runs (make test-faults)
def test_a_serial_slip_longer_than_the_write_timeout_on_the_line_prints_once(pty_pair):
    """A serial printer at 38400 baud taking in 4,800 bytes a second, write timeout 1 s, a slip of
    about 24 KB: pyserial's write timeout is the whole write's, so the slip failed once the pty's
    buffer was full, every time, and went out again, partly printed, until it expired. The
    timeout now bounds a stall (the port taking nothing), and the answer after the job is waited
    for as long as the line needs to carry the job."""
    import os
    import threading
    import time

    master, slave = pty_pair()
    received = bytearray()
    stop = threading.Event()

    def printer_side() -> None:  # reads at about the line's rate; answers DLE EOT n as it reaches it
        import select

        tail = b""
        while not stop.is_set():
            if not select.select([master], [], [], 0.05)[0]:
                continue
            data = os.read(master, 480)
            received.extend(data)
            seen = tail + data
            for i in range(len(seen) - 2):
                if seen[i:i + 2] == b"\x10\x04" and i + 2 >= len(tail):
                    os.write(master, bytes([status_byte("online", seen[i + 2])]))
            tail = seen[-2:]
            time.sleep(0.1)

    big = SlipDocument("S-serial", "en", blocks=tuple(Text(f"line {i} " + "x" * 30) for i in range(600)))
    thread = threading.Thread(target=printer_side, daemon=True)
    thread.start()
    try:
        printer = registry.open_printer("p", f"serial://{os.ttyname(slave)}?baudrate=38400&timeout=1")
        sent = printer.print_document(big)
        assert len(sent) > 22_000 and printer.state is DeviceState.IDLE
        assert bytes(received).count(sent) == 1
    finally:
        stop.set()
        thread.join(5)


def test_a_printer_that_answered_and_falls_silent_holds_the_job():
    """A printer that answered DLE EOT and then stops answering while it still takes the connection
    (stalled, or powered off behind a switch): the job was sent blind, taken by the connection and
    reported printed with nothing on paper. It is offline until it answers again, and nothing is sent."""
    with PrinterEmulator() as emulator:
        printer = registry.open_printer("p", emulator.url)
        assert printer.check_ready() is None
        emulator.respond_to_status = False
        assert printer.check_ready() == "offline" and printer.state is DeviceState.ERROR
        with pytest.raises(PrinterError) as err:
            printer.print_document(doc())
        assert (err.value.reason, err.value.sent) == ("offline", False)
        assert emulator.jobs == []
        emulator.respond_to_status = True
        sent = printer.print_document(doc())
        assert emulator.wait_for_jobs(1) == [sent]
        assert printer.state is DeviceState.IDLE


def test_a_printer_that_does_not_answer_has_no_paper_state():
    """Health and the status page said paper ok beside a printer that could not be reached: the paper
    of its last answer, from before it went away."""
    answered = parse_status({1: 0x12, 2: 0x12, 4: 0x12})
    assert paper_state(answered, None) == "ok"
    assert paper_state(answered, "offline") is None and paper_state(answered, "io_error") is None
    assert paper_state(answered, "paper_out") == "out"


def test_a_printer_known_to_answer_is_offline_when_silent_from_the_first_question():
    """What an earlier run saw (posd keeps it in ledger.db): set before the first question, a silent
    printer is offline at once, and nothing is sent blind. The first answer is told once, to be kept."""
    told: list[str] = []
    with PrinterEmulator() as emulator:
        emulator.respond_to_status = False
        printer = registry.open_printer("p", emulator.url + "?timeout=8")
        printer.answers_status = True
        assert printer.check_ready() == "offline"
        with pytest.raises(PrinterError):
            printer.print_document(doc())
        assert emulator.jobs == []
        fresh = registry.open_printer("p", emulator.url)
        fresh.on_first_answer = lambda: told.append("answered")
        emulator.respond_to_status = True
        assert fresh.check_ready() is None and fresh.check_ready() is None
        fresh.print_document(doc())
        assert told == ["answered"] and fresh.url.address == emulator.url == printer.url.address


def test_keeping_that_a_printer_answers_is_tried_again_until_it_is_kept():
    """ledger.db may refuse the write (a full disk): the next answer tries again, and a kept fact is
    not written again at every answer."""
    calls: list[int] = []

    def keep() -> None:
        calls.append(1)
        if len(calls) == 1:
            raise OSError("disk full")

    with PrinterEmulator() as emulator:
        printer = registry.open_printer("p", emulator.url)
        printer.on_first_answer = keep
        for _ in range(4):
            assert printer.check_ready() is None
        assert printer.answers_status and len(calls) == 2


def test_a_printer_address_is_the_same_however_its_url_is_spelled():
    """ledger.db keeps that a printer answers by its address: a trailing / or a host in capitals (config
    check takes both) made a new address, and a silent printer's held slips went out blind."""
    from posd.drivers.url import parse_device_url

    same = {parse_device_url(u).address for u in ("tcp://printer.lan:9100", "tcp://printer.lan:9100/",
                                                  "TCP://Printer.LAN:9100?timeout=8", "tcp://u:pw@printer.lan:9100")}
    assert same == {"tcp://printer.lan:9100"}
    assert parse_device_url("file:///dev/usb/lp0/").address == "file:///dev/usb/lp0"
    assert parse_device_url("usb://04B8:0202").address == parse_device_url("usb://04b8:0202").address
