"""Keyboard-wedge decoding: evdev key events in, characters out. Pure.

evdev reports physical keys, not characters, and a scanner programmed for an
AZERTY keyboard presses other keys than one programmed for US. We decode
with our own table for the layout the scanner is set to (no X display, no
host keymap): ``us``, ``pl`` (Polish programmer's), ``de``, ``fr-azerty``.

``KeyDecoder.feed(code, value)`` takes one EV_KEY event (value 1 press,
2 autorepeat, 0 release) and returns the characters it produced. It tracks
Shift, Caps Lock, AltGr and Ctrl, dead keys, and the two ways scanners send
control characters such as GS (0x1D, the GS1 separator): Ctrl + ``]`` and
Alt + keypad digits (Alt+029). Enter gives CR and Tab gives TAB, which the
scanner framing then treats as the suffix.
"""

from __future__ import annotations

import unicodedata
from dataclasses import dataclass

__all__ = ["LAYOUTS", "KeyDecoder", "Layout", "layout_names"]

# Linux input-event-codes.h (a stable kernel ABI).
KEY_ESC, KEY_BACKSPACE, KEY_TAB, KEY_ENTER, KEY_SPACE = 1, 14, 15, 28, 57
KEY_LEFTCTRL, KEY_RIGHTCTRL = 29, 97
KEY_LEFTSHIFT, KEY_RIGHTSHIFT = 42, 54
KEY_LEFTALT, KEY_RIGHTALT = 56, 100
KEY_CAPSLOCK, KEY_NUMLOCK = 58, 69
KEY_RIGHTBRACE = 27  # where US keyboards have ']': Ctrl+] is GS on every scanner we know
KEY_KPENTER = 96

_ROW1 = (41, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13)
_ROW2 = (16, 17, 18, 19, 20, 21, 22, 23, 24, 25, 26, 27)
_ROW3 = (30, 31, 32, 33, 34, 35, 36, 37, 38, 39, 40)
_ROW4 = (44, 45, 46, 47, 48, 49, 50, 51, 52, 53)
KEY_BACKSLASH, KEY_102ND = 43, 86
# Keypad with Num Lock on (scanners in "keypad emulation" send these).
_KEYPAD = {71: "7", 72: "8", 73: "9", 75: "4", 76: "5", 77: "6", 79: "1", 80: "2", 81: "3",
           82: "0", 83: ".", 55: "*", 74: "-", 78: "+", 98: "/"}
_KEYPAD_DIGITS = {code: ch for code, ch in _KEYPAD.items() if ch.isdigit()}
_DEAD = "\u0000"  # marks a dead key in the tables below: the next key carries the accent


@dataclass(frozen=True)
class Layout:
    name: str
    normal: dict[int, str]
    shift: dict[int, str]
    altgr: dict[int, str]
    dead: frozenset[str] = frozenset()  # characters that are dead keys on this layout


def _rows(*pairs: tuple[tuple[int, ...], str]) -> dict[int, str]:
    table: dict[int, str] = {}
    for keys, chars in pairs:
        if len(keys) != len(chars):
            raise ValueError(f"keymap row {chars!r} does not match its {len(keys)} keys")
        table.update({k: c for k, c in zip(keys, chars) if c != " "})
    return table


def _layout(name: str, normal: dict[int, str], shift: dict[int, str], altgr: dict[int, str],
            dead: str = "") -> Layout:
    return Layout(name, normal, shift, altgr, frozenset(dead))


_US = _layout(
    "us",
    _rows((_ROW1, "`1234567890-="), (_ROW2, "qwertyuiop[]"), (_ROW3, "asdfghjkl;'"),
          (_ROW4, "zxcvbnm,./"), ((KEY_BACKSLASH, KEY_102ND), "\\\\")),
    _rows((_ROW1, "~!@#$%^&*()_+"), (_ROW2, "QWERTYUIOP{}"), (_ROW3, 'ASDFGHJKL:"'),
          (_ROW4, "ZXCVBNM<>?"), ((KEY_BACKSLASH, KEY_102ND), "||")),
    {},
)
_PL = _layout(
    "pl", _US.normal, _US.shift,
    _rows(((30, 46, 18, 38, 49, 24, 31, 45, 44), "ąćęłńóśźż")),
)
_DE = _layout(
    "de",
    _rows((_ROW1, "^1234567890ß´"), (_ROW2, "qwertzuiopü+"), (_ROW3, "asdfghjklöä"),
          (_ROW4, "yxcvbnm,.-"), ((KEY_BACKSLASH, KEY_102ND), "#<")),
    _rows((_ROW1, '°!"§$%&/()=?`'), (_ROW2, "QWERTZUIOPÜ*"), (_ROW3, "ASDFGHJKLÖÄ"),
          (_ROW4, "YXCVBNM;:_"), ((KEY_BACKSLASH, KEY_102ND), "'>")),
    _rows(((3, 4, 8, 9, 10, 11, 12, 16, 18, 27, 50, KEY_102ND), "²³{[]}\\@€~µ|")),
    dead="^´`",
)
_FR = _layout(
    "fr-azerty",
    _rows((_ROW1, "²&é\"'(-è_çà)="), (_ROW2, "azertyuiop^$"), (_ROW3, "qsdfghjklmù"),
          (_ROW4, "wxcvbn,;:!"), ((KEY_BACKSLASH, KEY_102ND), "*<")),
    _rows((_ROW1, " 1234567890°+"), (_ROW2, "AZERTYUIOP¨£"), (_ROW3, "QSDFGHJKLM%"),
          (_ROW4, "WXCVBN?./§"), ((KEY_BACKSLASH, KEY_102ND), "µ>")),
    _rows(((3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 18, 27), "~#{[|`\\^@]}€¤")),
    dead="^¨",
)
LAYOUTS: dict[str, Layout] = {layout.name: layout for layout in (_US, _PL, _DE, _FR)}
_ACCENTS = {"^": "\u0302", "´": "\u0301", "`": "\u0300", "¨": "\u0308"}
_CTRL_CHARS = {"[": "\x1b", "\\": "\x1c", "]": "\x1d", "^": "\x1e", "_": "\x1f", "@": "\x00"}


def layout_names() -> list[str]:
    return sorted(LAYOUTS)


class KeyDecoder:
    """State machine over one device's key events; one instance per open device."""

    def __init__(self, layout: str = "us") -> None:
        try:
            self.layout = LAYOUTS[layout]
        except KeyError:
            raise ValueError(f"unknown keyboard layout {layout!r}; use one of {', '.join(layout_names())}") from None
        self.reset()

    def reset(self) -> None:
        self._held: set[int] = set()
        self.caps_lock = False
        self._alt_digits = ""
        self._dead: str | None = None

    @property
    def shift(self) -> bool:
        return bool(self._held & {KEY_LEFTSHIFT, KEY_RIGHTSHIFT})

    @property
    def ctrl(self) -> bool:
        return bool(self._held & {KEY_LEFTCTRL, KEY_RIGHTCTRL})

    def feed(self, code: int, value: int) -> str:
        if value == 0:
            self._held.discard(code)
            if code == KEY_LEFTALT:
                return self._finish_alt_code()
            return ""
        if value == 1:
            self._held.add(code)
        if code == KEY_CAPSLOCK:
            if value == 1:
                self.caps_lock = not self.caps_lock
            return ""
        if code in (KEY_LEFTSHIFT, KEY_RIGHTSHIFT, KEY_LEFTCTRL, KEY_RIGHTCTRL,
                    KEY_LEFTALT, KEY_RIGHTALT, KEY_NUMLOCK):
            return ""
        if KEY_LEFTALT in self._held and code in _KEYPAD_DIGITS:
            self._alt_digits = (self._alt_digits + _KEYPAD_DIGITS[code])[-4:]
            return ""
        return self._press(code)

    def _press(self, code: int) -> str:
        if code in (KEY_ENTER, KEY_KPENTER):
            return self._with_dead("\r")
        if code == KEY_TAB:
            return self._with_dead("\t")
        if code == KEY_SPACE:
            return self._with_dead(" ")
        if code in _KEYPAD:
            return self._with_dead(_KEYPAD[code])
        if self.ctrl:
            return self._control(code)
        char = self._char(code)
        if not char:
            return ""
        if char in self.layout.dead and self._dead is None:
            self._dead = char
            return ""
        return self._with_dead(char)

    def _char(self, code: int) -> str:
        layout = self.layout
        if KEY_RIGHTALT in self._held:
            char = layout.altgr.get(code, "")
            return char.upper() if char and self.shift else char
        base = layout.normal.get(code, "")
        # Caps Lock acts as Shift on letter keys only (digits and punctuation keep their level).
        use_shift = self.shift != (self.caps_lock and base.isalpha())
        char = layout.shift.get(code, "") if use_shift else base
        if use_shift and not char and base.isalpha():
            char = base.upper()
        return char

    def _control(self, code: int) -> str:
        if code == KEY_RIGHTBRACE:
            return "\x1d"
        base = self.layout.normal.get(code, "")
        if "a" <= base <= "z":
            return chr(ord(base) - 96)
        for char in (base, self.layout.shift.get(code, "")):
            if char in _CTRL_CHARS:
                return _CTRL_CHARS[char]
        return ""

    def _with_dead(self, char: str) -> str:
        dead, self._dead = self._dead, None
        if dead is None:
            return char
        if char == " " or char == dead:
            return dead
        composed = unicodedata.normalize("NFC", char + _ACCENTS.get(dead, ""))
        return composed if len(composed) == 1 else dead + char

    def _finish_alt_code(self) -> str:
        digits, self._alt_digits = self._alt_digits, ""
        if not digits:
            return ""
        value = int(digits)
        if value > 255:
            return ""
        # Alt+0nnn is the ANSI code page, Alt+nnn the OEM one; both are ASCII below 128.
        return bytes([value]).decode("cp1252" if digits.startswith("0") else "cp437", errors="ignore")
