"""nfc+pcsc:// through pyscard, mocked at the library boundary (no reader, no pcscd here).

The fakes stand in for ``smartcard.System.readers``, ``smartcard.CardRequest.CardRequest``
and the card connection; the exceptions are pyscard's own.
"""

from __future__ import annotations

import queue
import threading

import pytest
import smartcard.CardRequest
import smartcard.System
from smartcard.Exceptions import CardConnectionException, CardRequestTimeoutException
from smartcard.pcsc.PCSCExceptions import EstablishContextException

from posd.drivers import registry
from posd.drivers.base import DeviceState
from posd.drivers.card_nfc import UID_APDU, match_reader, uid_from_response

WAIT = 10.0
READER = "ACS ACR122U PICC Interface 00 00"
NO_SERVICE = 0x8010001D


class FakeCard:
    def __init__(self, reader: str, uid: list[int], sw: tuple[int, int] = (0x90, 0x00)) -> None:
        self.reader, self.uid, self.sw = reader, uid, sw
        self.atr = [0x3B, 0x8F]
        self.apdus: list[list[int]] = []

    def createConnection(self):
        card = self

        class Connection:
            def connect(self):
                pass

            def transmit(self, apdu):
                card.apdus.append(list(apdu))
                return list(card.uid), *card.sw

            def disconnect(self):
                pass

        return Connection()


class FakePcsc:
    """pcscd with one reader; the test puts cards on it and takes them away."""

    def __init__(self) -> None:
        self.service = True
        self.readers = [READER]
        self.cards: list[FakeCard] = []
        self.changed = threading.Event()
        self.seen_empty = threading.Event()  # the reader was told the card was gone

    def list_readers(self):
        if not self.service:
            raise EstablishContextException(NO_SERVICE)
        return list(self.readers)

    def request(self, readers=None, timeout=1, **kwargs):
        if not self.service:
            raise CardConnectionException("Service not available.", hresult=NO_SERVICE)
        pcsc = self

        class Request:
            def waitforcardevent(self):
                if not pcsc.changed.wait(min(timeout, 0.05)):
                    raise CardRequestTimeoutException()
                pcsc.changed.clear()
                present = [c for c in pcsc.cards if c.reader in (readers or pcsc.readers)]
                if not present:
                    pcsc.seen_empty.set()
                return present

            def __exit__(self, *exc):
                return False

        return Request()

    def put(self, card: FakeCard) -> None:
        self.cards.append(card)
        self.changed.set()

    def take(self, card: FakeCard) -> None:
        self.cards.remove(card)
        self.changed.set()


@pytest.fixture
def pcsc(monkeypatch):
    fake = FakePcsc()
    monkeypatch.setattr(smartcard.System, "readers", fake.list_readers)
    monkeypatch.setattr(smartcard.CardRequest, "CardRequest", fake.request)
    return fake


class Rec:
    def __init__(self) -> None:
        self.scans: queue.Queue = queue.Queue()
        self.states: list = []
        self.cond = threading.Condition()

    def on_status(self, status) -> None:
        with self.cond:
            self.states.append((status.state, status.reason))
            self.cond.notify_all()

    def wait_for(self, item) -> None:
        with self.cond:
            assert self.cond.wait_for(lambda: item in self.states, WAIT), self.states


@pytest.fixture
def reader_factory():
    made = []

    def make(url: str, rec: Rec):
        reader = registry.open_card_reader("nfc", url, on_data=rec.scans.put, on_status=rec.on_status,
                                           backoff_min=0.02, backoff_max=0.1)
        reader.CHECK_EVERY_S = 0.05
        reader.start()
        made.append(reader)
        return reader

    yield make
    for reader in made:
        assert reader.stop(timeout=WAIT)


def test_uid_parsing_and_reader_matching():
    assert uid_from_response([0x04, 0xA2, 0x3B, 0x1C], 0x90, 0x00) == "04A23B1C"
    assert uid_from_response([0x04, 0xA2, 0x3B, 0x1C], 0x63, 0x00) is None
    assert uid_from_response([], 0x90, 0x00) is None
    names = ["ACS ACR122U PICC Interface 01 00", "Other 00 00"]
    assert match_reader("ACS ACR122U PICC Interface", names) == names[0]
    assert match_reader("", names) == names[0]
    assert match_reader("Nope", names) is None


def test_card_on_the_reader_is_read_once_until_taken_away(pcsc, reader_factory):
    rec = Rec()
    reader_factory("nfc+pcsc://ACS%20ACR122U%20PICC%20Interface", rec)
    rec.wait_for((DeviceState.IDLE, None))
    card = FakeCard(READER, [0x04, 0x11, 0x22, 0x33, 0x44, 0x55, 0x66])
    pcsc.put(card)
    scan = rec.scans.get(timeout=WAIT)
    assert (scan.data, scan.symbology, scan.device) == ("04112233445566", "NFC_UID", "nfc")
    assert card.apdus == [UID_APDU]
    pcsc.changed.set()  # another event while the same card lies there: no second read
    pcsc.take(card)
    assert pcsc.seen_empty.wait(WAIT)
    pcsc.put(card)
    assert rec.scans.get(timeout=WAIT).data == "04112233445566"
    assert card.apdus == [UID_APDU, UID_APDU]


def test_without_pcscd_the_reader_is_service_unavailable_then_recovers(pcsc, reader_factory):
    pcsc.service = False
    rec = Rec()
    reader_factory("nfc+pcsc://", rec)
    rec.wait_for((DeviceState.ERROR, "service_unavailable"))
    pcsc.service = True
    rec.wait_for((DeviceState.IDLE, None))


def test_unplugged_reader_is_offline_and_comes_back(pcsc, reader_factory):
    rec = Rec()
    reader = reader_factory("nfc+pcsc://ACS ACR122U", rec)
    rec.wait_for((DeviceState.IDLE, None))
    pcsc.readers = []
    rec.wait_for((DeviceState.ERROR, "offline"))
    pcsc.readers = [READER.replace("00 00", "01 00")]  # replugged: pcsc-lite numbers it anew
    with rec.cond:
        rec.states.clear()
    reader.kick()
    rec.wait_for((DeviceState.IDLE, None))
    assert reader.reader_name.endswith("01 00")


def test_real_pyscard_without_pcscd_reports_service_unavailable(reader_factory):
    """No fakes: this machine has no pcscd, which is exactly the case to survive."""
    rec = Rec()
    reader_factory("nfc+pcsc://", rec)
    rec.wait_for((DeviceState.ERROR, "service_unavailable"))
