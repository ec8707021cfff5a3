"""Magnetic stripe swipes: ISO 7811/7813 track parsing and the card decision. Pure.

A reader sends what it read from up to three tracks, each between a start
sentinel and ``?`` (optionally followed by an LRC character), then usually
CR::

    %B4111111111111111^DOE/JOHN^2512101000000000?     track 1 (IATA, format code B = financial)
    ;4111111111111111=25121010000000000000?          track 2 (ABA: PAN = YYMM ...)
    ;2900000000018?                                  track 2 of a loyalty card

``classify_swipe`` decides what may leave the driver: a loyalty card's number
(``member``), nothing but the fact of a payment card (``payment_card``), or
nothing at all (``unreadable``). The decision errs on the side of dropping:
a financial format code, a PAN-shaped primary field with a card-brand prefix
that passes Luhn (or, on track 2, is followed by an expiry and a service
code), or such a digit run anywhere in the swipe means payment.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Literal

from posd.core.identify import gtin_ok, has_brand_prefix, looks_like_pan, pan_in_digits

__all__ = ["Track", "Swipe", "SwipeKind", "parse_tracks", "classify_swipe"]

SwipeKind = Literal["member", "payment_card", "unreadable"]

_TRACK1 = re.compile(r"%([A-Z])([^^?]{0,79})(?:\^([^^?]{0,26})\^?([^?]*))?\?")
_TRACK23 = re.compile(r";([^=?;%]{0,104})(?:=([^?;%]*))?\?")
_ERROR_SENTINELS = ("%E?", ";E?", "+E?")
_MEMBER = re.compile(r"^[A-Za-z0-9-]{4,64}$")
_DIGIT_RUN = re.compile(r"\d{13,}")
_EXPIRY_SERVICE = re.compile(r"\d{2}(?:0[1-9]|1[0-2])\d{3}")  # track 2 after "=": YYMM, then the service code


@dataclass(frozen=True, repr=False)
class Track:
    number: int  # 1, or 2 for ';' tracks (track 3 has the same framing and is read as 2)
    format_code: str | None  # track 1 only: 'B' is financial
    primary: str  # PAN or account / member number
    name: str = ""
    rest: str = ""  # expiry, service code, discretionary data

    def __repr__(self) -> str:
        # Never show the data: a track may be a payment card.
        return f"Track({self.number}, format={self.format_code!r}, primary=<{len(self.primary)} chars>)"


@dataclass(frozen=True, repr=False)
class Swipe:
    kind: SwipeKind
    code: str | None = None  # the member number; None unless kind == "member"
    tracks: tuple[Track, ...] = field(default=(), compare=False)

    def __repr__(self) -> str:
        return f"Swipe({self.kind!r}, tracks={len(self.tracks)})"


def parse_tracks(text: str) -> tuple[Track, ...]:
    tracks: list[Track] = []
    for m in _TRACK1.finditer(text):
        tracks.append(Track(1, m.group(1), m.group(2).strip(), (m.group(3) or "").strip(), m.group(4) or ""))
    for m in _TRACK23.finditer(text):
        if m.group(1).strip().upper() == "E":
            continue
        tracks.append(Track(2, None, m.group(1).strip(), "", m.group(2) or ""))
    return tuple(tracks)


def _is_financial(track: Track) -> bool:
    digits = track.primary.replace(" ", "")
    if track.format_code == "B":
        return True
    if not digits.isdigit():
        return False
    # A brand's number followed by an expiry (YYMM) and a service code is a payment track even when a
    # misread digit fails its Luhn check: the other 15 digits are still a real card's.
    # (A valid EAN-13 is a loyalty card's number however it starts, as looks_like_pan has it.)
    return looks_like_pan(digits) or (track.number == 2 and has_brand_prefix(digits)
                                      and not (len(digits) == 13 and gtin_ok(digits))
                                      and _EXPIRY_SERVICE.match(track.rest) is not None)


def _pan_anywhere(text: str) -> bool:
    """A PAN outside the track framing (a reader sending raw data, a mangled swipe), alone or followed by
    its expiry and the rest of its track (track 2 whose "=" was lost)."""
    return any(pan_in_digits(run) for run in _DIGIT_RUN.findall(text))


def classify_swipe(text: str) -> Swipe:
    """Decide what a swipe is; only a member number ever comes out of it."""
    tracks = parse_tracks(text)
    if any(_is_financial(t) for t in tracks) or _pan_anywhere(text):
        return Swipe("payment_card", None, tracks)
    for number in (2, 1):  # a loyalty card's number is on track 2 first
        for track in tracks:
            if track.number == number and _MEMBER.match(track.primary):
                return Swipe("member", track.primary, tracks)
    if not tracks and not any(s in text for s in _ERROR_SENTINELS):
        # A reader set to send bare data (no sentinels): the line is the number.
        bare = text.strip()
        if _MEMBER.match(bare):
            return Swipe("member", bare, ())
    return Swipe("unreadable", None, tracks)
