"""Keyboard-wedge decoding from synthetic key events, per layout: pure, no devices."""

from __future__ import annotations

import pytest
from evdev import ecodes

from posd.drivers.keymaps import LAYOUTS, KeyDecoder

SHIFT = ecodes.KEY_LEFTSHIFT


def press(code: int, shift: bool = False) -> list[tuple[int, int]]:
    events = [(SHIFT, 1)] if shift else []
    events += [(code, 1), (code, 0)]
    return events + ([(SHIFT, 0)] if shift else [])


def decode(layout: str, events: list[tuple[int, int]]) -> str:
    decoder = KeyDecoder(layout)
    return "".join(decoder.feed(code, value) for code, value in events)


def typed(layout: str, keys: list[tuple[str, bool]]) -> list[tuple[int, int]]:
    return [e for name, shift in keys for e in press(getattr(ecodes, name), shift)]


def test_keymap_codes_match_the_kernel_headers():
    from posd.drivers import keymaps

    assert (keymaps.KEY_ENTER, keymaps.KEY_TAB, keymaps.KEY_LEFTSHIFT, keymaps.KEY_RIGHTALT) == (
        ecodes.KEY_ENTER, ecodes.KEY_TAB, ecodes.KEY_LEFTSHIFT, ecodes.KEY_RIGHTALT)
    assert LAYOUTS["us"].normal[ecodes.KEY_Q] == "q" and LAYOUTS["fr-azerty"].normal[ecodes.KEY_Q] == "a"


# "HA112" as each layout's scanner types it, then Enter.
HA112 = {
    "us": [("KEY_H", True), ("KEY_A", True), ("KEY_1", False), ("KEY_1", False), ("KEY_2", False)],
    "pl": [("KEY_H", True), ("KEY_A", True), ("KEY_1", False), ("KEY_1", False), ("KEY_2", False)],
    "de": [("KEY_H", True), ("KEY_A", True), ("KEY_1", False), ("KEY_1", False), ("KEY_2", False)],
    "fr-azerty": [("KEY_H", True), ("KEY_Q", True), ("KEY_1", True), ("KEY_1", True), ("KEY_2", True)],
}


@pytest.mark.parametrize("layout", sorted(HA112))
def test_each_layout_decodes_what_its_scanner_types(layout):
    events = typed(layout, HA112[layout]) + press(ecodes.KEY_ENTER)
    assert decode(layout, events) == "HA112\r"


def test_azerty_keys_read_as_us_give_the_classic_garbage():
    # The pitfall: the AZERTY scanner's keys decoded with a US table.
    assert decode("us", typed("us", HA112["fr-azerty"])) == "HQ!!@"
    # and a US scanner's keys decoded as AZERTY: digits without shift are symbols.
    assert decode("fr-azerty", typed("fr-azerty", HA112["us"])) == "HQ&&é"


def test_y_and_z_swap_on_german_layout():
    keys = [("KEY_Y", False), ("KEY_Z", False), ("KEY_MINUS", True), ("KEY_SLASH", False)]
    assert decode("de", typed("de", keys)) == "zy?-"
    assert decode("us", typed("us", keys)) == "yz_/"


def test_caps_lock_uppercases_letters_but_not_digits():
    events = press(ecodes.KEY_CAPSLOCK) + typed("us", [("KEY_A", False), ("KEY_1", False), ("KEY_B", True)])
    assert decode("us", events) == "A1b"  # shift under caps lock gives lower case again


def test_ctrl_right_bracket_is_gs_on_every_layout():
    for layout in LAYOUTS:
        events = [(ecodes.KEY_LEFTCTRL, 1)] + press(ecodes.KEY_RIGHTBRACE) + [(ecodes.KEY_LEFTCTRL, 0)]
        assert decode(layout, events) == "\x1d", layout


def test_alt_keypad_code_gives_gs_and_other_characters():
    def alt(*digits: int) -> list[tuple[int, int]]:
        return [(ecodes.KEY_LEFTALT, 1)] + [e for d in digits for e in press(d)] + [(ecodes.KEY_LEFTALT, 0)]

    kp = {0: ecodes.KEY_KP0, 2: ecodes.KEY_KP2, 9: ecodes.KEY_KP9, 6: ecodes.KEY_KP6, 5: ecodes.KEY_KP5}
    events = alt(kp[0], kp[0], kp[2], kp[9]) + alt(kp[6], kp[5])
    assert decode("de", events) == "\x1dA"


def test_altgr_gives_polish_letters_and_german_at():
    events = [(ecodes.KEY_RIGHTALT, 1)] + press(ecodes.KEY_A) + [(ecodes.KEY_RIGHTALT, 0)]
    assert decode("pl", events) == "ą"
    events = [(ecodes.KEY_RIGHTALT, 1)] + press(ecodes.KEY_Q) + [(ecodes.KEY_RIGHTALT, 0)]
    assert decode("de", events) == "@"


def test_dead_keys_compose_or_stand_alone():
    circ = ecodes.KEY_LEFTBRACE  # '^' is dead on AZERTY
    assert decode("fr-azerty", press(circ) + press(ecodes.KEY_E)) == "ê"
    assert decode("fr-azerty", press(circ) + press(ecodes.KEY_SPACE)) == "^"
    assert decode("fr-azerty", press(circ) + press(ecodes.KEY_1, True)) == "^1"


def test_keypad_digits_tab_autorepeat_and_unknown_keys():
    events = press(ecodes.KEY_KP4) + [(ecodes.KEY_KP2, 1), (ecodes.KEY_KP2, 2), (ecodes.KEY_KP2, 0)]
    events += press(ecodes.KEY_TAB) + press(ecodes.KEY_F5) + press(ecodes.KEY_KPENTER)
    assert decode("us", events) == "422\t\r"


def test_unknown_layout_is_refused_with_the_known_ones():
    with pytest.raises(ValueError, match="fr-azerty"):
        KeyDecoder("dvorak")
