"""The one ESC/POS reader, on hand-written byte fixtures: bytes in, typed commands out."""

from __future__ import annotations

import os

import pytest

from posd.core.slip_doc import Barcode as BarcodeBlock
from posd.core.slip_doc import QRCode, SlipDocument, Text as TextBlock
from posd.drivers.escpos_render import render_slip
from posd.drivers.escpos_tokens import (
    PDF417, QR, Align, Barcode, BarcodeHeight, BarcodeWidth, CharSize, Code2DErrorLevel, Code2DPrint,
    Code2DSize, Code2DStore, ColumnImage, Cut, Emphasis, FeedDots, FeedLines, GraphicsPrint, GraphicsStore,
    HriFont, HriPosition, Init, LineFeed, LineSpacing, PrintMode, Raster, Reverse, SelectCodePage, SelectFont,
    Tab, Text, Underline, strip_code_sets, tokenize,
)


def tokens(data: bytes) -> list:
    return list(tokenize(data))


def test_text_runs_line_feeds_and_controls():
    assert tokens(b"AB\xa5 c\tD\r\nE\x7f\x00F") == [
        Text(b"AB\xa5 c"), Tab(), Text(b"D"), LineFeed(), Text(b"E"), Text(b"F"),
    ]


@pytest.mark.parametrize("data, command", [
    (b"\x1b@", Init()),
    (b"\x1bt\x12", SelectCodePage(18)),
    (b"\x1b!\x00", PrintMode(font_b=False, bold=False, double_height=False, double_width=False, underline=False)),
    (b"\x1b!\xb9", PrintMode(font_b=True, bold=True, double_height=True, double_width=True, underline=True)),
    (b"\x1bE\x01", Emphasis(True)),
    (b"\x1bE\x02", Emphasis(False)),
    (b"\x1b-\x32", Underline(True)),
    (b"\x1b-\x00", Underline(False)),
    (b"\x1bM\x31", SelectFont(True)),
    (b"\x1ba\x00", Align("left")),
    (b"\x1ba\x01", Align("center")),
    (b"\x1ba\x32", Align("right")),
    (b"\x1ba\x07", Align("left")),
    (b"\x1b2", LineSpacing(None)),
    (b"\x1b3\x18", LineSpacing(24)),
    (b"\x1bd\x03", FeedLines(3)),
    (b"\x1bJ\x40", FeedDots(64)),
    (b"\x1d!\x11", CharSize(2, 2)),
    (b"\x1d!\x70", CharSize(8, 1)),
    (b"\x1dB\x01", Reverse(True)),
    (b"\x1dh\x50", BarcodeHeight(80)),
    (b"\x1dw\x02", BarcodeWidth(2)),
    (b"\x1dH\x02", HriPosition(2)),
    (b"\x1dH\x33", HriPosition(3)),
    (b"\x1df\x01", HriFont(True)),
    (b"\x1dV\x00", Cut(0)),
    (b"\x1dVA\x03", Cut(3)),
])
def test_each_command_with_its_meaning(data, command):
    assert tokens(data) == [command]
    assert tokens(data + b"x") == [command, Text(b"x")]  # and exactly its own length


def test_barcodes_function_a_and_b():
    assert tokens(b"\x1dk\x025901234123457\x00x") == [Barcode(2, b"5901234123457"), Text(b"x")]
    code = tokens(b"\x1dk\x49\x0c{BAB{{C{1D\x1dE")[0]
    assert code == Barcode(73, b"{BAB{{C{1D\x1dE") and code.symbology == "CODE128"
    assert code.text() == "AB{CD\x1dE" and code.text(fnc1="<FNC1>") == "AB{C<FNC1>D\x1dE"
    assert Barcode(2, b"{B1").text() == "{B1"  # selectors mean something only in Code 128
    assert Barcode(99, b"x").symbology is None
    assert strip_code_sets("{A12{C34{{") == "1234{"


def test_images_carry_their_dots():
    assert tokens(b"\x1dv0\x00\x02\x00\x03\x00" + b"\xff" * 6 + b"x") == [Raster(2, 3, b"\xff" * 6), Text(b"x")]
    assert tokens(b"\x1b*\x21\x02\x00" + b"\x01" * 6 + b"x") == [ColumnImage(33, 2, b"\x01" * 6), Text(b"x")]
    assert ColumnImage(0, 1, b"\x01").column_bytes == 1
    store = b"0p0\x01\x011" + b"\x10\x00\x01\x00" + b"\xff\xff"
    assert tokens(b"\x1d(L" + len(store).to_bytes(2, "little") + store + b"\x1d(L\x02\x0002") == [
        GraphicsStore(16, 1, b"\xff\xff"), GraphicsPrint(),
    ]
    assert tokens(b"\x1d8L" + len(store).to_bytes(4, "little") + store) == [GraphicsStore(16, 1, b"\xff\xff")]


def test_2d_codes():
    data = (b"\x1d(k\x04\x001A2\x00"  # model: not needed for a picture
            b"\x1d(k\x03\x001C\x06" b"\x1d(k\x03\x001E1"
            b"\x1d(k\x06\x001P0abc" b"\x1d(k\x03\x001Q0" b"\x1d(k\x03\x000Q0")
    assert tokens(data) == [
        Code2DSize(QR, 6), Code2DErrorLevel(QR, 0x31), Code2DStore(QR, b"abc"), Code2DPrint(QR), Code2DPrint(PDF417),
    ]


def test_unknown_and_status_commands_are_skipped_by_their_length():
    data = (b"\x1b\x99" b"\x1d\x99" b"\x1bp\x00\x19\xfa" b"\x1bD\x08\x10\x00" b"\x1c!\x01" b"\x1c(A\x02\x00ab"
            b"\x10\x04\x01" b"\x10\x14\x08\x01\x03\x14\x01\x06\x02\x08" b"\x10" b"x")
    assert tokens(data) == [Text(b"x")]


@pytest.mark.parametrize("data", [
    b"\x1b", b"\x1bt", b"\x1d(k\x10", b"\x1d(k\x10\x00\x31", b"\x1dv0\x00\xff\xff\xff\xff", b"\x1dk\x49\x20ab",
    b"\x1dk\x02123", b"\x1d(L\xff\xff0p", b"\x1b*\x21\xff\xff", b"\x1d8L\xff", b"\x1bD\x01",
])
def test_truncated_input_never_raises_and_ends(data):
    assert len(tokens(data)) <= len(data)


def test_random_bytes_never_raise():
    for _ in range(20):
        data = os.urandom(4096)
        assert len(tokens(data)) <= len(data)


def test_reading_is_lazy():
    commands = tokenize(b"A\n" * 100_000)
    assert [next(commands), next(commands)] == [Text(b"A"), LineFeed()]


def test_a_rendered_slip_reads_back_as_what_was_meant():
    doc = SlipDocument("S-1", "en", blocks=(TextBlock("Hi", align="center", bold=True),
                                            BarcodeBlock("5901234123457", "EAN13"), QRCode("https://x.example/1")))
    commands = tokens(render_slip(doc, "TM-T88V", 80))
    assert commands[0] == Init() and commands[-1] == Cut(0)
    hi = commands.index(Text(b"Hi"))
    assert commands[hi - 2 : hi + 2] == [Emphasis(True), Align("center"), Text(b"Hi"), LineFeed()]
    assert commands.index(Barcode(2, b"5901234123457")) > hi
    assert commands[-6:-2] == [Code2DSize(QR, 6), Code2DErrorLevel(QR, 0x31),
                               Code2DStore(QR, b"https://x.example/1"), Code2DPrint(QR)]
