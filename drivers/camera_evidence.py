"""What a camera may report: evidence rules over decoded reads. Pure, ``now`` passed in.

A wrong code at the till can identify the wrong member, and a missed frame
only means the card is held a moment longer, so a camera reports a code only
when the evidence for it is strong:

- **Only the lane's symbologies** (``symbologies=`` on the camera URL) are
  decoded at all: a loyalty lane needs EAN-13 and Code 128 cards, phone QR
  codes and Code 128 vouchers (``DEFAULT_SYMBOLOGIES``). UPC-E, EAN-8 and the
  unchecked 1D codes (Code 39, ITF, Codabar) stay off unless asked for.
- **Well formed**: EAN/UPC check digits are verified again here; a UPC-E of
  number system 1 is never reported (what the left half of an EAN-13 reads as).
- **A symbol inside a larger one is a fragment**: the left half of an EAN-13
  is a valid UPC-E symbol for about one card number in ten. A 1D read whose
  place lies inside a longer 1D symbol read in the same frame is dropped.
- **One place, one code**: when reads of the same place in a frame disagree
  (a damaged EAN-13 read as two different valid codes by different rows or
  decoders), the frame says nothing about that place.
- **Confirmed**: a 1D code (check digit mod 10 at best) must be read by two
  independent decoders (zxing-cpp and zbar) within ``window_s``; a matrix
  code (QR, DataMatrix, Aztec, PDF417) carries Reed-Solomon error correction,
  which is its own second opinion: one clean read is enough. With only one
  decoder installed, a 1D code needs the same read in ``single_decoder_frames``
  different frames instead (weaker: a misread caused by damage repeats).

A still image is one frame: its 1D codes need both decoders on that frame.
Once confirmed, a code stays confirmed while it is seen again within
``window_s``; ``Debouncer`` then reports it once while it is in view.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from posd.core.identify import gtin_ok

__all__ = [
    "SYMBOLOGIES",
    "MATRIX_SYMBOLOGIES",
    "DEFAULT_SYMBOLOGIES",
    "parse_symbologies",
    "Read",
    "resolve_frame",
    "same_place",
    "Confirmer",
    "Debouncer",
]

# Config name -> the names our decoders give symbols of that kind (posd.drivers.symbology).
SYMBOLOGIES: dict[str, tuple[str, ...]] = {
    "ean13": ("EAN13",),  # UPC-A included: it is an EAN-13 with a leading 0
    "ean8": ("EAN8",),
    "upce": ("UPCE",),
    "code128": ("CODE128", "GS1_128"),
    "code39": ("CODE39",),
    "code93": ("CODE93",),
    "itf": ("ITF",),
    "codabar": ("CODABAR",),
    "databar": ("DATABAR",),
    "qr": ("QR", "GS1_QR"),
    "datamatrix": ("DATAMATRIX", "GS1_DATAMATRIX"),
    "pdf417": ("PDF417",),
    "aztec": ("AZTEC",),
}
MATRIX_SYMBOLOGIES = frozenset({"qr", "datamatrix", "pdf417", "aztec"})  # Reed-Solomon protected
DEFAULT_SYMBOLOGIES = frozenset({"ean13", "code128", "qr"})
_CONFIG_NAME = {name: key for key, names in SYMBOLOGIES.items() for name in names}
# Decoders disagree on what to call a UPC-E (zbar: EAN13, expanded): compare within a class.
_CLASS = {"EAN13": "EAN/UPC", "UPCE": "EAN/UPC", "EAN8": "EAN/UPC"}


def parse_symbologies(text: str) -> frozenset[str]:
    """``"ean13,code128,qr"`` -> the set of names; ValueError naming what is wrong."""
    names = [part.strip().lower() for part in text.split(",") if part.strip()]
    if not names:
        raise ValueError(f"must name at least one of {', '.join(SYMBOLOGIES)}")
    unknown = [n for n in names if n not in SYMBOLOGIES]
    if unknown:
        raise ValueError(f"unknown symbology {unknown[0]!r}; known: {', '.join(SYMBOLOGIES)}")
    return frozenset(names)


@dataclass(frozen=True)
class Read:
    """One symbol one decoder found in one frame, and where: centre and length in pixels.

    ``length`` is the symbol's extent along its scan direction (a matrix
    code's side); it is what "inside a larger symbol" compares.
    """

    text: str
    symbology: str
    decoder: str  # "zxing-cpp" or "zbar"
    cx: float = 0.0
    cy: float = 0.0
    length: float = 0.0

    @property
    def config_name(self) -> str:
        return _CONFIG_NAME.get(self.symbology, self.symbology.lower())

    @property
    def matrix(self) -> bool:
        return self.config_name in MATRIX_SYMBOLOGIES

    @property
    def key(self) -> tuple[str, str]:
        """What two reads must share to be the same code."""
        return _CLASS.get(self.symbology, self.config_name), self.text

    def __repr__(self) -> str:  # a code may be a member's identifier: keep it out of logs
        return f"Read({self.symbology}, <{len(self.text)} chars>, {self.decoder}, at {self.cx:.0f},{self.cy:.0f})"


def well_formed(read: Read) -> bool:
    if not read.text:
        return False
    if read.symbology == "UPCE" and read.text[:2] != "00":
        # Number system 1 (13 digits: 01...): the left half of an EAN-13 reads as exactly that
        # (its first-digit parities are UPC-E's number-system-1 patterns), under a thumb even
        # with light paper-like skin past it. zbar never reads one, so two decoders never
        # confirmed it anyway; now zxing-cpp alone, without zbar, cannot either.
        return False
    if _CLASS.get(read.symbology) == "EAN/UPC":
        return read.text.isdigit() and gtin_ok(read.text)
    return True


def same_place(a: Read, b: Read) -> bool:
    return math.hypot(a.cx - b.cx, a.cy - b.cy) < 0.6 * max(a.length, b.length, 1.0)


def _inside(inner: Read, outer: Read) -> bool:
    """``inner`` is a smaller 1D symbol lying within the 1D symbol ``outer``."""
    if inner.matrix or outer.matrix or inner.key == outer.key:
        return False
    return inner.length < 0.8 * outer.length and \
        math.hypot(inner.cx - outer.cx, inner.cy - outer.cy) < 0.5 * outer.length


def resolve_frame(reads: list[Read]) -> list[Read]:
    """The reads of one frame that may count as evidence: well formed, not fragments, not contested."""
    reads = [r for r in reads if well_formed(r)]
    reads = [r for r in reads if not any(_inside(r, o) for o in reads)]
    # Places: reads linked by overlap; a place whose reads disagree says nothing.
    place = list(range(len(reads)))

    def root(i: int) -> int:
        while place[i] != i:
            place[i] = place[place[i]]
            i = place[i]
        return i

    for i, a in enumerate(reads):
        for j in range(i):
            if same_place(a, reads[j]):
                place[root(i)] = root(j)
    keys: dict[int, set[tuple[str, str]]] = {}
    for i, r in enumerate(reads):
        keys.setdefault(root(i), set()).add(r.key)
    return [r for i, r in enumerate(reads) if len(keys[root(i)]) == 1]


@dataclass
class _Evidence:
    best: Read  # the read to report (zxing-cpp names UPC-E and GS1 variants)
    sightings: list[tuple[float, str, bool]]  # (when, decoder, fresh frame) within the window
    confirmed: bool = False
    last_seen: float = 0.0


class Confirmer:
    """Accumulates the evidence for each code over frames; says which codes are confirmed now."""

    def __init__(self, decoders: int = 2, *, window_s: float = 0.5, single_decoder_frames: int = 3,
                 max_codes: int = 64) -> None:
        self.decoders = decoders
        self.window_s = window_s
        self.single_decoder_frames = single_decoder_frames
        self.max_codes = max_codes
        self._codes: dict[tuple[str, str], _Evidence] = {}

    def feed(self, reads: list[Read], now: float, *, fresh: bool = True) -> list[Read]:
        """Add one frame's resolved reads; return the confirmed codes seen in it, one read each.

        ``fresh=False`` says the frame repeats the previous one pixel for pixel (a still
        image looped, a stalled camera): it keeps codes in view but adds no frame count.
        """
        self._forget(now)
        seen: dict[tuple[str, str], list[Read]] = {}
        for r in reads:
            seen.setdefault(r.key, []).append(r)
        out = []
        for key, group in seen.items():
            ev = self._codes.get(key)
            if ev is None:
                ev = self._codes[key] = _Evidence(group[0], [])
            for r in group:
                ev.sightings.append((now, r.decoder, fresh))
                if r.decoder == "zxing-cpp":
                    ev.best = r
            ev.last_seen = now
            if ev.confirmed or self._enough(ev, group[0]):
                ev.confirmed = True
                out.append(ev.best)
        return out

    def in_view(self, now: float) -> list[Read]:
        """The confirmed codes seen within the window, each where it was last read.

        A frame that shows one of them again at that place adds nothing a second opinion
        could change: the code stays confirmed while it is seen (the decoder skips it).
        """
        return [ev.best for ev in self._codes.values() if ev.confirmed and now - ev.last_seen <= self.window_s]

    def _enough(self, ev: _Evidence, read: Read) -> bool:
        if read.matrix:
            return True
        if self.decoders >= 2:
            return len({decoder for _, decoder, _ in ev.sightings}) >= 2
        return len({when for when, _, fresh in ev.sightings if fresh}) >= self.single_decoder_frames

    def _forget(self, now: float) -> None:
        for key, ev in list(self._codes.items()):
            if now - ev.last_seen > self.window_s:
                del self._codes[key]  # out of view for the window: its evidence starts again
                continue
            ev.sightings = [s for s in ev.sightings if now - s[0] <= self.window_s]
        while len(self._codes) > self.max_codes:  # a flood of distinct reads: keep the newest
            oldest = min(self._codes, key=lambda k: self._codes[k].last_seen)
            del self._codes[oldest]


class Debouncer:
    """Suppresses a code seen again within ``window_s`` of its last sighting."""

    def __init__(self, window_s: float, max_codes: int = 256) -> None:
        self.window_s = window_s
        self.max_codes = max_codes
        self._last_seen: dict[str, float] = {}

    def accept(self, code: str, now: float) -> bool:
        last = self._last_seen.get(code)
        self._last_seen[code] = now  # still in view: the window starts again
        if len(self._last_seen) > self.max_codes:
            self._forget(now)
        return last is None or now - last >= self.window_s

    def _forget(self, now: float) -> None:
        for code, seen in list(self._last_seen.items()):
            if now - seen >= self.window_s:
                del self._last_seen[code]
