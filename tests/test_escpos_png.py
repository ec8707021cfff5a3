"""ESC/POS bytes -> PNG on hand-written byte fixtures: what the paper would show."""

from __future__ import annotations

import io
import os

import zxingcpp
from PIL import Image

from posd.drivers.escpos_png import _glyph, escpos_to_png, png_bytes

W = 576


def ink(img: Image.Image) -> tuple[int, int, int, int] | None:
    """Bounding box of the black dots."""
    return img.convert("L").point(lambda v: 255 - v).getbbox()


def render(data: bytes, width: int = W) -> Image.Image:
    return escpos_to_png(b"\x1b@" + data, width, margin=0)


def test_text_lines_advance_by_the_line_spacing_and_wrap_at_the_paper_edge():
    img = render(b"A\nB\n")
    assert img.size == (W, 60)  # two lines of 30 dots
    assert render(b"x" * 49 + b"\n").height == 60  # 48 columns of 12 dots, then the printer wraps


def test_alignment_bold_and_double_size():
    left, centered = ink(render(b"AB\n")), ink(render(b"\x1ba\x01AB\n"))
    assert left[0] < 12 and abs((centered[0] + centered[2]) / 2 - W / 2) <= 6
    right = ink(render(b"\x1ba\x02AB\n"))
    assert right[2] > W - 12
    normal, bold = render(b"H\n").crop((0, 0, 12, 24)), render(b"\x1bE\x01H\n").crop((0, 0, 12, 24))
    assert bold.histogram()[0] > normal.histogram()[0]  # more black dots
    double = render(b"\x1d!\x11H\n")
    assert double.height == 48 and ink(double)[2] <= 24 and ink(double)[2] > 12


def test_esc_bang_underline_and_reverse():
    under = render(b"\x1b!\x80_x\n")
    assert ink(under)[3] >= 21
    reverse = render(b"\x1dB\x01 \n").crop((0, 0, 12, 24))
    assert reverse.convert("L").getextrema() == (0, 0)  # a reversed space is a black cell


def test_code_page_selection_decodes_bytes():
    cell = render(b"\x1bt\x12\xa5\n", W).crop((0, 0, 12, 24))  # 0xA5 is ą in CP852
    assert cell.tobytes() == _glyph("ą", False, False, 1, 1, False, False).tobytes()


def test_raster_image_is_placed_bit_for_bit():
    # 16 x 3 dots: a full row, an empty row, a checker row
    data = b"\x1dv0\x00\x02\x00\x03\x00" + b"\xff\xff" + b"\x00\x00" + b"\xaa\xaa"
    img = render(data).convert("L")
    assert img.size == (W, 3)
    assert [img.getpixel((x, 0)) for x in range(17)] == [0] * 16 + [255]
    assert all(img.getpixel((x, 1)) == 255 for x in range(16))
    assert [img.getpixel((x, 2)) for x in range(4)] == [0, 255, 0, 255]


def test_graphics_and_column_images():
    gfx = b"\x1d(L" + (10 + 2).to_bytes(2, "little") + b"0p0\x01\x011" + b"\x10\x00\x01\x00" + b"\xff\xff"
    gfx += b"\x1d(L\x02\x0002"
    assert ink(render(gfx)) == (0, 0, 16, 1)
    column = b"\x1b*\x21\x02\x00" + b"\xff\x00\x00" + b"\x00\x00\x01" + b"\n"
    img = render(column)
    assert img.height == 24 and img.getpixel((0, 0)) == 0 and img.getpixel((1, 23)) == 0


def test_native_barcode_scans_and_prints_its_text():
    data = b"\x1ba\x01\x1dh\x50\x1dw\x02\x1dH\x02\x1dk\x49\x0b{BVOUCHER-7"
    img = render(data)
    found = zxingcpp.read_barcodes(img.convert("L"))
    assert [(r.format, r.text) for r in found] == [(zxingcpp.BarcodeFormat.Code128, "VOUCHER-7")]
    assert img.height == 80 + 24  # bars, then the human-readable line


def test_native_ean13_function_a():
    img = render(b"\x1dh\x40\x1dw\x03\x1dk\x025901234123457\x00")
    assert [r.text for r in zxingcpp.read_barcodes(img.convert("L"))] == ["5901234123457"]


def test_native_qr_scans_at_its_module_size():
    store = "https://loyalty.example/m/M0001".encode()
    data = (b"\x1ba\x01\x1d(k\x04\x001A2\x00" + b"\x1d(k\x03\x001C\x06" + b"\x1d(k\x03\x001E1"
            + b"\x1d(k" + (len(store) + 3).to_bytes(2, "little") + b"1P0" + store + b"\x1d(k\x03\x001Q0")
    img = escpos_to_png(data, W)  # the margin is the quiet zone a real slip has around it
    assert [r.text for r in zxingcpp.read_barcodes(img.convert("L"))] == [store.decode()]
    box = ink(img)
    assert (box[2] - box[0]) % 6 == 0  # whole modules of 6 dots


def test_cut_draws_a_line_and_the_paper_goes_on():
    img = render(b"A\n\x1dVA\x00B\n")
    assert img.height == 30 + 24 + 30


def test_invalid_barcode_prints_nothing_like_a_printer():
    assert ink(render(b"\x1dk\x0212AB\x00")) is None


def test_png_is_a_1_bit_png_with_a_margin():
    img = escpos_to_png(b"\x1b@Hi\n", 384)
    assert img.size == (384 + 32, 30 + 32) and img.mode == "1"
    back = Image.open(io.BytesIO(png_bytes(img)))
    assert back.format == "PNG" and back.size == img.size


def test_truncated_random_and_huge_inputs_are_bounded():
    for data in (b"\x1b", b"\x1d(k\x10", b"\x1dv0\x00\xff\xff\xff\xff", b"\x1dk\x49\x20ab",
                 b"\x1d(L\xff\xff0p", b"\x1b*\x21\xff\xff", os.urandom(8192)):
        escpos_to_png(data, W)
    tall = b"\x1dv0\x00\x01\x00\xff\xff" + b"\x80" * 65535
    img = escpos_to_png(tall, W)
    assert img.height <= 65535 + 32
    many_lines = escpos_to_png(b"\n" * 100_000, W)
    assert many_lines.height <= 40_000 + 64
