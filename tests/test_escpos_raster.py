"""Images cut to their ink (escpos_raster): the paper is dot for dot what the whole
image would print, and no raster sent carries rows or byte columns it could drop."""

from __future__ import annotations

import pytest
from PIL import Image, ImageChops, ImageDraw

from posd.core.slip import build_slip
from posd.core.slip_doc import Columns, Text
from posd.drivers import codes
from posd.drivers.escpos_png import escpos_to_png
from posd.drivers.escpos_raster import RASTER_ROWS, blank_feed, ink_bands, raster_bytes
from posd.drivers.escpos_render import dots_for, render_slip
from posd.drivers.escpos_tokens import Raster, tokenize
from posd.drivers.raster_text import RasterText
from tests.support.slip_samples import sample

ALIGN = {"left": b"\x1ba\x00", "center": b"\x1ba\x01", "right": b"\x1ba\x02"}


def images() -> dict[str, Image.Image]:
    rtl, ltr = RasterText(504, rtl=True), RasterText(504, rtl=False)
    edges = Image.new("1", (504, 40), 1)
    draw = ImageDraw.Draw(edges)
    draw.point((0, 0), fill=0)
    draw.point((503, 39), fill=0)
    tall = Image.new("1", (504, 600), 1)  # more rows than one GS v 0 carries, with a gap inside
    ImageDraw.Draw(tall).rectangle((200, 10, 260, 300), fill=0)
    ImageDraw.Draw(tall).rectangle((40, 320, 90, 590), fill=0)
    return {
        "persian line": rtl.text(Text("باشگاه مشتریان", align="center", bold=True, double=True)),
        "persian columns": rtl.columns(Columns("امتیاز کسب‌شده", "+۱۹۴ امتیاز", bold=True)),
        "start-aligned rtl": rtl.text(Text("همین حالا می‌توانید بگیرید")),
        "latin columns": ltr.columns(Columns("Klient", "Łukasz Żółkiewski")),
        "progress": rtl.progress(0.29),
        "qr": codes.qr_image(codes.qr_matrix("https://loyalty.example/app/M0003"), 5),
        "no ink": Image.new("1", (504, 37), 1),
        "ink at both corners": edges,
        "tall": tall,
    }


def send(img: Image.Image, x: int, paper: int, prefer: str = "left") -> bytes:
    """What the renderer sends for ``img``: bands with their justification, white feeds between."""
    bands, after = ink_bands(img, x, paper, prefer)
    out = b"\x1b@"
    for band in bands:
        out += blank_feed(band.feed) + ALIGN[band.align] + raster_bytes(band)
    return out + blank_feed(after)


@pytest.mark.parametrize("paper", [504, 512, 576, 384])
@pytest.mark.parametrize("name", list(images()))
def test_the_paper_is_the_whole_image_dot_for_dot(name, paper):
    img = images()[name].convert("1")
    if img.width > paper:
        img = img.crop((0, 0, paper, img.height))
    for x in sorted({0, (min(504, paper) - img.width) // 2}):
        drawn = escpos_to_png(send(img, x, paper), paper, margin=0)
        whole = Image.new("1", (paper, img.height), 1)
        whole.paste(img, (x, 0))
        assert drawn.size == whole.size, name
        assert ImageChops.difference(drawn.convert("L"), whole.convert("L")).getbbox() is None, (name, x)


@pytest.mark.parametrize("name", list(images()))
def test_no_band_carries_a_white_row_or_byte_column_it_could_drop(name):
    img, paper = images()[name], 512
    bands, after = ink_bands(img, 0, paper)
    assert sum(b.feed + b.rows for b in bands) + after == img.height
    for band in bands:
        rows = [band.data[r * band.width_bytes : (r + 1) * band.width_bytes] for r in range(band.rows)]
        assert any(rows[0]) and any(rows[-1]), "a band starts and ends with ink"
        first = any(row[0] for row in rows)
        last = any(row[-1] for row in rows)
        # the side the justification lets go of is cut down to the byte holding ink
        assert {"left": last, "right": first, "center": first or last}[band.align], (name, band.align)
    if name == "no ink":
        assert bands == [] and after == img.height


def test_white_paper_is_fed_as_one_byte_rasters_of_no_ink():
    data = blank_feed(300)
    rasters = list(tokenize(data))
    assert [(r.width_bytes, r.rows) for r in rasters] == [(1, RASTER_ROWS), (1, 300 - RASTER_ROWS)]
    assert all(isinstance(r, Raster) and not any(r.data) for r in rasters)
    assert blank_feed(0) == b""


def test_a_persian_slip_sends_under_half_the_raster_its_lines_cover():
    """Every raster row of the slip, inked or fed, sent as wide as the text columns
    (as posd did before) against what is sent now."""
    data = render_slip(build_slip(sample("sale"), "fa"), "TM-T88V", 80)
    rasters = [c for c in tokenize(data) if isinstance(c, Raster)]
    full_width = sum(8 + 504 // 8 * r.rows for r in rasters)
    sent = sum(8 + len(r.data) for r in rasters)
    assert sent < 0.5 * full_width
    assert escpos_to_png(data, dots_for("TM-T88V", 80)).height > 1000  # still the whole slip


def _ink(img: Image.Image) -> int:
    return img.convert("L").histogram()[0]


@pytest.mark.parametrize("name, script", [("Олена Коваль", ""), ("Ахмед حسن", "حسن"), ("Kasia ✓ حسن", "Kasia حسن")])
def test_a_name_in_letters_the_persian_font_lacks_is_drawn_not_dropped(name, script):
    """Vazirmatn has no Cyrillic, Greek or ✓: a Ukrainian name on a Persian slip printed blank, and
    beside a Persian word it vanished. Those letters are drawn in DejaVu Sans Mono, in place."""
    rtl = RasterText(576, rtl=True)
    drawn = _ink(rtl.columns(Columns("مشتری", name)))
    without = _ink(rtl.columns(Columns("مشتری", script)))
    assert drawn > without + 15, (drawn, without)  # the Cyrillic (or the ✓) added its ink
