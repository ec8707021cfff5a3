"""Code pages: which ESC t slot a slip is printed in, per profile, down to the bytes;
Polish letters round-trip bytes -> preview -> the expected glyphs."""

from __future__ import annotations

import pytest
from PIL import ImageChops

from posd.core.slip_doc import SlipDocument, Text
from posd.drivers.codepages import MAZOVIA, choose_code_page, code_pages_for, encode
from posd.drivers.escpos_png import _glyph, escpos_to_png
from posd.drivers.escpos_render import profile_code_pages, render_slip
from posd.drivers.escpos_text import escpos_to_text
from posd.drivers.escpos_tokens import Raster, tokenize

POLISH = "Zażółć gęślą jaźń ZAŻÓŁĆ GĘŚLĄ JAŹŃ"
LETTERS = "ąćęłńóśźżĄĆĘŁŃÓŚŹŻ"


def polish_doc() -> SlipDocument:
    return SlipDocument("S-pl", "pl", blocks=(Text(POLISH),))


@pytest.mark.parametrize("profile, slot, codec", [
    ("TM-T88V", 18, "cp852"),   # Epson: CP852 in slot 18
    ("TM-T88IV", 18, "cp852"),
    ("TSP600", 5, "cp852"),     # Star: CP852 in slot 5
    ("POS-5890", 18, "cp852"),  # a clone listing CP852 twice takes the lower slot
])
def test_profile_code_page_is_selected_by_slot(profile, slot, codec):
    data = render_slip(polish_doc(), profile, 58)
    assert b"\x1bt" + bytes([slot]) + "Zażółć gęślą".encode(codec) in data
    assert b"\x1dv0" not in data  # text, not raster


def test_windows_1250_when_that_is_the_page_the_printer_has():
    data = render_slip(polish_doc(), "TM-T88V", code_pages={0: "CP437", 45: "CP1250"})
    assert b"\x1bt\x2d" + POLISH.encode("cp1250") in data


def test_mazovia_on_printers_that_have_it():
    table = {0: "CP437", 25: "MAZOVIA"}
    data = render_slip(polish_doc(), "default", code_pages=table)
    expected = bytes(0x80 + MAZOVIA.index(c) if ord(c) > 0x7F else ord(c) for c in POLISH)
    assert b"\x1bt\x19" + expected in data
    assert {c: bytes([0x80 + MAZOVIA.index(c)]) for c in "ąłŻ"} == {"ą": b"\x86", "ł": b"\x92", "Ż": b"\xa1"}
    pages = code_pages_for("default", table)
    assert escpos_to_text(data, 48, code_pages={s: p.codec for s, p in pages.items()}).splitlines()[0] == POLISH


def test_cp852_is_preferred_over_the_other_polish_pages():
    pages = code_pages_for("x", {0: "CP437", 3: "ISO_8859-2", 7: "CP1250", 9: "MAZOVIA", 30: "CP852"})
    assert choose_code_page([POLISH], pages).name == "CP852"
    del_852 = code_pages_for("x", {0: "CP437", 3: "ISO_8859-2", 7: "CP1250", 9: "MAZOVIA"})
    assert choose_code_page([POLISH], del_852).name == "MAZOVIA"


def test_plain_ascii_selects_no_code_page():
    data = render_slip(SlipDocument("S", "en", blocks=(Text("Thank you!"),)), "TM-T88V")
    assert b"\x1bt" not in data


def test_a_profile_without_polish_falls_back_to_raster():
    data = render_slip(polish_doc(), "simple")  # CP437 only: ó but no ą
    assert b"\x1dv0" in data
    assert b"Za" not in data and b"?" not in data.split(b"\x1dv0")[0]


def test_unimplemented_and_multibyte_pages_are_never_chosen():
    pages = code_pages_for("TSP600")
    assert all(p.name not in ("CP3021", "CP932", "Unknown") for p in pages.values())
    assert encode("ą", None) is None and encode("abc", None) == b"abc"


def test_profile_code_pages_for_the_text_preview():
    assert profile_code_pages("TM-T88V")[18] == "cp852"
    assert profile_code_pages("default")[0] == "cp437"


@pytest.mark.parametrize("page, slot, codec", [("CP852", 18, "cp852"), ("CP1250", 45, "cp1250"),
                                              ("ISO_8859-2", 39, "iso8859_2")])
def test_polish_letters_round_trip_bytes_renderer_glyphs(page, slot, codec):
    """Each letter's byte, printed under its page, draws that letter's glyph (and not
    what the byte means in CP437)."""
    data = b"\x1b@\x1bt" + bytes([slot]) + LETTERS.encode(codec) + b"\n"
    img = escpos_to_png(data, 576, code_pages=profile_code_pages("TM-T88V"), margin=0)
    wrong = escpos_to_png(b"\x1b@" + LETTERS.encode(codec) + b"\n", 576, margin=0)
    for i, letter in enumerate(LETTERS):
        cell = img.crop((i * 12, 0, i * 12 + 12, 24))
        assert ImageChops.difference(cell.convert("L"), _glyph(letter, False, False, 1, 1, False, False)
                                     .convert("L")).getbbox() is None, letter
        if letter.encode(codec).decode("cp437") != letter:  # CP852 keeps ó where CP437 has it
            assert ImageChops.difference(cell, wrong.crop((i * 12, 0, i * 12 + 12, 24))).getbbox() is not None
    assert escpos_to_text(data, 48, code_pages=profile_code_pages("TM-T88V")).strip() == LETTERS


def test_a_persian_name_on_a_polish_slip_is_drawn_and_the_rest_stays_text():
    from posd.core.slip_doc import Columns

    doc = SlipDocument("S", "pl", blocks=(Text(POLISH), Columns("Klient", "زهرا احمدی"), Text("Dziękujemy!")))
    data = render_slip(doc, "TM-T88V")
    assert b"\x1bt\x12" + POLISH.encode("cp852") in data and "Dziękujemy!".encode("cp852") in data
    rasters = [c for c in tokenize(data) if isinstance(c, Raster)]
    inked = [r for r in rasters if any(r.data)]
    assert len(inked) == 1 and b"Klient" not in data  # only the member line is raster
    # the white rows above and below its letters are fed as blank one-byte rasters, not drawn
    assert all(r.width_bytes == 1 for r in rasters if r not in inked)


def test_a_page_answers_alike_whether_it_remembers_the_letter_or_not(monkeypatch):
    """Each page remembers what it prints (a slip asks every page about every letter); its answers
    are encode's, the first time and after, also beyond what it keeps."""
    from posd.drivers import codepages

    monkeypatch.setattr(codepages, "_CAN_KEPT", 8)
    page = code_pages_for("simple", {0: "CP437", 18: "CP852"})[18]
    page._can.clear()
    letters = LETTERS + "€Ωあ漢ß"
    first = [page.can_encode(c) for c in letters]
    assert first == [encode(c, page) is not None for c in letters]
    assert [page.can_encode(c) for c in letters] == first and len(page._can) == 8
    assert all(first[:len(LETTERS)]) and not first[-3] and not first[-2]  # Polish yes, Japanese and Chinese no
