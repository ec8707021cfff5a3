"""Symbology names: AIM identifiers, zxing-cpp / zbar formats, EAN vs UPC. Pure.

Scanners can be told to prefix each code with its AIM symbology identifier
(ISO/IEC 15424: ``]`` + code character + modifier, e.g. ``]E0`` for EAN-13).
``split_aim`` strips it and names the symbology, so the POS learns what was
scanned and a GS1 code (``]C1``, ``]d2``, ``]Q3``) is told from a plain one.

Camera decoders name formats their own way; ``normalize`` maps them to the
same names and turns a 12-digit UPC-A into its 13-digit EAN-13 form, because
zxing-cpp and zbar disagree on which of the two a code is.
"""

from __future__ import annotations

import re

__all__ = ["AIM_NAMES", "split_aim", "from_zxing", "from_zbar", "normalize", "upce_expand"]

# (code character, modifier) -> name; a modifier of None matches any.
AIM_NAMES: dict[tuple[str, str | None], str] = {
    ("E", "0"): "EAN13", ("E", "3"): "EAN13", ("E", "4"): "EAN8", ("E", None): "EAN13",
    ("C", "1"): "GS1_128", ("C", None): "CODE128",
    ("d", "2"): "GS1_DATAMATRIX", ("d", None): "DATAMATRIX",
    ("Q", "3"): "GS1_QR", ("Q", "4"): "GS1_QR", ("Q", None): "QR",
    ("A", None): "CODE39", ("G", None): "CODE93", ("I", None): "ITF", ("F", None): "CODABAR",
    ("L", None): "PDF417", ("z", None): "AZTEC", ("e", None): "DATABAR", ("X", None): "OTHER",
}
_AIM = re.compile(r"^\][A-Za-z][0-9A-Za-z]")

_ZXING = {
    "EAN-13": "EAN13", "EAN-8": "EAN8", "UPC-A": "EAN13", "UPC-E": "UPCE",
    "Code 128": "CODE128", "Code 39": "CODE39", "Code 93": "CODE93", "ITF": "ITF",
    "Codabar": "CODABAR", "Data Matrix": "DATAMATRIX", "QR Code": "QR", "Micro QR Code": "QR",
    "rMQR Code": "QR", "PDF417": "PDF417", "Aztec": "AZTEC", "DataBar": "DATABAR",
    "DataBar Expanded": "DATABAR", "DataBar Limited": "DATABAR",
}
_ZBAR = {
    "EAN13": "EAN13", "EAN8": "EAN8", "UPCA": "EAN13", "UPCE": "UPCE", "CODE128": "CODE128",
    "CODE39": "CODE39", "CODE93": "CODE93", "I25": "ITF", "CODABAR": "CODABAR", "QRCODE": "QR",
    "PDF417": "PDF417", "DATABAR": "DATABAR", "DATABAR_EXP": "DATABAR",
}


def split_aim(code: str) -> tuple[str | None, str]:
    """``"]E05901234123457"`` -> ``("EAN13", "5901234123457")``; no prefix -> ``(None, code)``."""
    if not _AIM.match(code):
        return None, code
    char, modifier = code[1], code[2]
    name = AIM_NAMES.get((char, modifier)) or AIM_NAMES.get((char, None)) or "OTHER"
    return name, code[3:]


def from_zxing(format_name: str, symbology_identifier: str = "") -> str:
    """Our name for a zxing-cpp ``Barcode.format`` (GS1 variants from its AIM id)."""
    name = _ZXING.get(format_name, format_name.upper().replace(" ", "_").replace("-", ""))
    if symbology_identifier:
        aim, _ = split_aim(symbology_identifier + "x")
        if aim and aim.startswith("GS1_"):
            return aim
    return name


def from_zbar(type_name: str) -> str:
    return _ZBAR.get(type_name, type_name)


def normalize(symbology: str, text: str) -> tuple[str, str]:
    """One spelling per code: UPC-A (12 digits) becomes EAN-13 with a leading 0, and a UPC-E
    (8 digits, as zbar gives it) its 13-digit expansion (as zxing-cpp gives it)."""
    if symbology == "EAN13" and len(text) == 12 and text.isdigit():
        return "EAN13", "0" + text
    if symbology == "UPCE" and len(text) == 8 and text.isdigit() and text[0] in "01":
        return "UPCE", "0" + upce_expand(text)
    return symbology, text


def upce_expand(upce: str) -> str:
    """The UPC-A (12 digits) a UPC-E (number system, six digits, check digit) stands for."""
    system, six, check = upce[0], upce[1:7], upce[7]
    last = six[5]
    if last in "012":
        body = six[:2] + last + "0000" + six[2:5]
    elif last == "3":
        body = six[:3] + "00000" + six[3:5]
    elif last == "4":
        body = six[:4] + "00000" + six[4]
    else:
        body = six[:5] + "0000" + last
    return system + body + check
