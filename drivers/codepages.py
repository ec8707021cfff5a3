"""Printer code pages: which ``ESC t`` slot can print a slip's text, and how.

A printer's capability profile (python-escpos' database) names the code page
in each ``ESC t`` slot. Polish needs one of CP852, Mazovia, Windows-1250 or
ISO 8859-2. Clone printers put pages in other slots than Epson does, so the
table can be replaced per printer (``[printer] code_pages``, checked by
``check_code_page_table``; ``posd print-test`` shows on paper what the
printer really has). Mazovia is not in python-escpos' database; it is
defined here. Pure.
"""

from __future__ import annotations

import codecs
import functools
from typing import Any, Iterable, Mapping

from .escpos_lib import CAPABILITIES, get_profile

__all__ = [
    "MAZOVIA",
    "CodePage",
    "code_pages_for",
    "check_code_page_table",
    "printable_code_pages",
    "choose_code_page",
    "rank_code_pages",
    "encode",
    "decode_byte",
    "EPSON_CODE_PAGES",
]

# Epson's ESC t slots, for reading bytes when no profile says otherwise.
EPSON_CODE_PAGES: dict[int, str] = {
    0: "cp437", 2: "cp850", 3: "cp860", 4: "cp863", 5: "cp865",
    13: "cp857", 14: "cp737", 15: "iso8859_7", 16: "cp1252", 17: "cp866",
    18: "cp852", 19: "cp858", 21: "cp874", 32: "cp720", 33: "cp775",
    34: "cp855", 35: "cp861", 36: "cp862", 37: "cp864", 38: "cp869",
    39: "iso8859_2", 40: "iso8859_15", 44: "cp1125", 45: "cp1250",
    46: "cp1251", 47: "cp1253", 48: "cp1254", 49: "cp1255", 50: "cp1256",
    51: "cp1257", 52: "cp1258",
}

# Mazovia: CP437 with the Polish letters in place of some accented ones.
_MAZOVIA_POLISH = {
    0x86: "ą", 0x8D: "ć", 0x8F: "Ą", 0x90: "Ę", 0x91: "ę", 0x92: "ł", 0x95: "Ć", 0x98: "Ś",
    0x9C: "Ł", 0x9E: "ś", 0xA0: "Ź", 0xA1: "Ż", 0xA2: "ó", 0xA3: "Ó", 0xA4: "ń", 0xA5: "Ń",
    0xA6: "ź", 0xA7: "ż",
}
MAZOVIA = "".join(_MAZOVIA_POLISH.get(b, bytes([b]).decode("cp437")) for b in range(0x80, 0x100))

_CUSTOM = {"MAZOVIA": MAZOVIA}
# Tie-break among pages that all cover a slip: the Polish pages in the order
# their printers most often get them right, then the lowest slot.
_PREFERRED = ("CP852", "MAZOVIA", "CP1250", "ISO_8859-2")
_CAN_KEPT = 4096  # characters a page remembers whether it prints (a few dozen on real slips)


class CodePage:
    """One usable slot: its name and a codec (Python codec name or a 128-char table)."""

    __slots__ = ("slot", "name", "codec", "_encode", "_can")

    def __init__(self, slot: int, name: str, codec: str) -> None:
        self.slot, self.name, self.codec = slot, name, codec
        self._encode = {c: 0x80 + i for i, c in enumerate(codec)} if len(codec) == 128 else None
        self._can: dict[str, bool] = {}  # answers so far: each slip asks every page about its letters

    def can_encode(self, ch: str) -> bool:
        known = self._can.get(ch)
        if known is None:
            known = encode(ch, self) is not None
            if len(self._can) < _CAN_KEPT:
                self._can[ch] = known
        return known

    def __repr__(self) -> str:
        return f"CodePage({self.slot}, {self.name!r})"


def code_pages_for(profile: str, table: Mapping[int, str] | None = None) -> dict[int, CodePage]:
    """The usable code pages of ``profile`` by slot; ``table`` (slot -> page
    name, e.g. ``{0: "CP437", 25: "MAZOVIA"}``) replaces the profile's (an empty
    one leaves no page: every non-ASCII text is drawn as raster)."""
    key = tuple(sorted((int(k), str(v).upper()) for k, v in table.items())) if table is not None else None
    return _code_pages(profile, key)


@functools.lru_cache(maxsize=64)
def _code_pages(profile: str, table: tuple[tuple[int, str], ...] | None) -> dict[int, CodePage]:
    names = dict(table) if table is not None else {int(k): v for k, v in get_profile(profile).codePages.items()}
    pages: dict[int, CodePage] = {}
    for slot, name in sorted(names.items()):
        codec = _codec_of(name)
        if codec:
            pages[slot] = CodePage(slot, name, codec)
    return pages


def _codec_of(name: str) -> str | None:
    """A page's Python codec or 128-character table, when posd can print text in it."""
    enc = CAPABILITIES["encodings"].get(name, {})
    codec = _CUSTOM.get(name) or enc.get("python_encode") or ("".join(enc["data"]) if "data" in enc else None)
    return codec if codec and _codec_works(codec) else None


@functools.lru_cache(maxsize=1)
def printable_code_pages() -> tuple[str, ...]:
    """The names of the single-byte code pages posd prints text in (python-escpos' names, and MAZOVIA)."""
    return tuple(sorted(n for n in (*CAPABILITIES["encodings"], *_CUSTOM) if _codec_of(n)))


def check_code_page_table(table: Mapping[Any, Any]) -> dict[int, str]:
    """A printer's own ``ESC t`` table as store IT writes it in the config, ``{18 = "cp852"}``:
    slots 0-255 (TOML keys are text), each naming a page posd can print text in, in any case
    (``CP852``, ``mazovia``) or by a Python codec name for one (``iso8859-2``). The table with
    the pages' canonical names; ValueError naming the slot otherwise."""
    if not isinstance(table, Mapping):
        raise ValueError('a table of ESC t slot = code page, such as { 18 = "CP852", 45 = "CP1250" }')
    out: dict[int, str] = {}
    wrong: list[str] = []  # every slot's mistake at once, as the config check reports every key's
    hint = f" (for Polish: {', '.join(_PREFERRED)}; all: {', '.join(printable_code_pages())})"
    for key, value in table.items():
        slot = int(key) if isinstance(key, int) or (isinstance(key, str) and key.strip().isdigit()) else None
        if slot is None or not 0 <= slot <= 255:
            wrong.append(f"slot {key!r}: an ESC t slot is a number 0-255")
        elif not isinstance(value, str):
            wrong.append(f'slot {slot}: name the code page as text, such as "CP852"')
        elif (name := _page_name(value)) is None:  # the pages that are, said once, at the first unknown
            wrong.append(f"slot {slot}: {value!r} is not a code page posd can print text in{hint}")
            hint = ""
        elif slot in out:  # "18" and "018": one slot written twice, the last silently winning
            wrong.append(f"slot {slot} is written twice ({key!r}): give each slot once")
        else:
            out[slot] = name
    if wrong:
        raise ValueError("; ".join(wrong))
    return dict(sorted(out.items()))


def _page_name(value: str) -> str | None:
    wanted = value.strip().upper()
    if wanted in printable_code_pages():
        return wanted
    try:
        codec = codecs.lookup(value.strip()).name
    except LookupError:
        return None
    return next((n for n in printable_code_pages() if not _CUSTOM.get(n) and len(_codec_of(n) or "") != 128
                 and codecs.lookup(_codec_of(n) or "").name == codec), None)


def _codec_works(codec: str) -> bool:
    """A single-byte codec Python knows (CJK pages such as CP932 are multi-byte:
    their bytes would not mean what one ESC t slot of 128 characters means)."""
    if len(codec) == 128:
        return True
    try:
        "A".encode(codec)
    except LookupError:
        return False
    try:
        "\u3042".encode(codec)  # HIRAGANA A: only a multi-byte page has it
    except UnicodeEncodeError:
        return True
    return False


def encode(text: str, page: CodePage | None) -> bytes | None:
    """``text`` in ``page`` (ASCII needs none); None if a character is missing."""
    try:
        raw = text.encode("ascii")
    except UnicodeEncodeError:
        raw = None
    if raw is not None or page is None:
        return raw
    if page._encode is not None:
        out = bytearray()
        for ch in text:
            if ord(ch) < 0x80:
                out.append(ord(ch))
            elif ch in page._encode:
                out.append(page._encode[ch])
            else:
                return None
        return bytes(out)
    try:
        data = text.encode(page.codec)
    except UnicodeEncodeError:
        return None
    # A multi-byte codec (CP932) would emit bytes the slot does not mean.
    return data if len(data) == len(text) else None


def decode_byte(byte: int, codec: str | None) -> str:
    if byte < 0x80:
        return chr(byte)
    if not codec:
        return "?"
    if len(codec) == 128:
        return codec[byte - 0x80]
    try:
        return bytes([byte]).decode(codec)
    except (UnicodeDecodeError, LookupError):
        return "?"


def rank_code_pages(texts: Iterable[str], pages: Mapping[int, CodePage]) -> list[CodePage]:
    """The pages that print any of the non-ASCII characters of ``texts``, best
    first: most characters covered, then the preferred Polish pages, then the
    lowest slot. Empty for plain ASCII."""
    chars = {c for t in texts for c in t if ord(c) >= 0x80}
    ranked = []
    for page in pages.values():
        covered = sum(1 for c in chars if page.can_encode(c))
        if covered:
            rank = _PREFERRED.index(page.name) if page.name in _PREFERRED else len(_PREFERRED)
            ranked.append(((-covered, rank, page.slot), page))
    return [page for _, page in sorted(ranked, key=lambda kp: kp[0])]


def choose_code_page(texts: Iterable[str], pages: Mapping[int, CodePage]) -> CodePage | None:
    """The page a slip with ``texts`` is printed in (``rank_code_pages``' first); None for plain ASCII."""
    ranked = rank_code_pages(texts, pages)
    return ranked[0] if ranked else None
