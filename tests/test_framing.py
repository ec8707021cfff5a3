"""Scanner framing from byte fixtures: split reads, several codes per read, noise."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from posd.drivers.framing import GS, UNREADABLE, ScanFramer, clean_code, make_framer, parse_suffix


def feed_all(framer: ScanFramer, chunks: list[bytes], t0: float = 100.0) -> list[str]:
    out: list[str] = []
    for i, chunk in enumerate(chunks):
        out += framer.feed(chunk, t0 + i * 0.001)
    return out


def test_one_code_with_cr():
    assert feed_all(ScanFramer(), [b"5901234123457\r"]) == ["5901234123457"]


def test_code_split_across_reads():
    chunks = [b"59", b"0123", b"412345", b"7", b"\r"]
    assert feed_all(ScanFramer(), chunks) == ["5901234123457"]


def test_several_codes_in_one_read():
    assert feed_all(ScanFramer(), [b"111\r222\r33"]) == ["111", "222"]


def test_partial_code_completes_on_next_read():
    framer = ScanFramer()
    assert framer.feed(b"AAA\rBB", 1.0) == ["AAA"]
    assert framer.pending
    assert framer.feed(b"B\r", 1.1) == ["BBB"]
    assert not framer.pending


def test_cr_then_lf_from_a_crlf_scanner_configured_for_cr():
    # The LF lands at the start of the next frame; it is noise, not a code.
    assert feed_all(ScanFramer(suffix=b"\r"), [b"123\r", b"\n456\r\n"]) == ["123", "456"]


def test_crlf_suffix_split_between_reads():
    framer = ScanFramer(suffix=b"\r\n")
    assert framer.feed(b"ABC\r", 1.0) == ["ABC"]  # the CR ends it; its LF is no second code
    assert framer.feed(b"\nDEF\r\n", 1.1) == ["DEF"]
    assert not framer.pending


@pytest.mark.parametrize("ends", [b"\n", b"\r", b"\r\n"])
def test_a_crlf_scanner_completes_codes_ended_by_lf_or_cr_alone(ends):
    """A scanner configured CRLF that sends LF (or CR) alone: every code completes at once,
    not held until the line goes quiet and then dropped as a partial code."""
    framer = make_framer(suffix=b"\r\n")
    assert framer.feed(b"2900000000018" + ends + b"5901234123457" + ends, 1.0) == ["2900000000018", "5901234123457"]
    assert not framer.pending and framer.flush_if_idle(5.0) == [] and framer.take_drops() == []


def test_empty_frames_are_ignored():
    assert feed_all(ScanFramer(), [b"\r\r\r", b"X\r\r"]) == ["X"]


def test_prefix_is_stripped():
    framer = ScanFramer(prefix=b"]E0")
    assert framer.feed(b"]E05901234123457\r", 1.0) == ["5901234123457"]


def test_frame_without_the_prefix_is_kept_whole():
    assert ScanFramer(prefix=b"]E0").feed(b"ABC\r", 1.0) == ["ABC"]


def test_gs_is_kept_inside_gs1_codes_and_other_controls_dropped():
    raw = b"\x0201" + b"09501101530003" + b"\x1d" + b"10ABC\x00\x7f\xff\r"
    assert ScanFramer().feed(raw, 1.0) == ["0109501101530003" + GS + "10ABC"]


def test_over_long_garbage_is_dropped_with_a_reason_then_framing_recovers():
    framer = ScanFramer(max_len=16)
    assert framer.feed(b"x" * 20, 1.0) == []
    assert framer.feed(b"y" * 20, 1.1) == []
    drops = framer.take_drops()
    assert len(drops) == 1 and "longer than 16" in drops[0]
    # The rest of the garbage frame up to its suffix is discarded too.
    assert framer.feed(b"zzz\rGOOD\r", 1.2) == ["GOOD"]
    assert framer.take_drops() == []


def test_over_long_frame_arriving_whole_is_dropped():
    framer = ScanFramer(max_len=8)
    assert framer.feed(b"123456789\rOK\r", 1.0) == ["OK"]
    assert framer.take_drops()


def test_suffix_none_frames_by_silence():
    framer = ScanFramer(suffix=b"", idle_flush_s=0.05)
    assert framer.feed(b"5901", 10.0) == []
    assert framer.feed(b"234123457", 10.01) == []
    assert framer.flush_if_idle(10.03) == []  # not quiet long enough
    assert framer.flush_if_idle(10.07) == ["5901234123457"]
    assert framer.flush_if_idle(10.5) == []


def test_suffix_none_without_idle_time_is_refused():
    with pytest.raises(ValueError):
        ScanFramer(suffix=b"")


def test_stale_partial_with_a_suffix_is_dropped_on_idle():
    framer = ScanFramer(idle_flush_s=1.0)
    framer.feed(b"12345", 1.0)
    assert framer.flush_if_idle(2.5) == []
    assert "incomplete" in framer.take_drops()[0]
    assert framer.feed(b"678\r", 3.0) == ["678"]


def test_reset_forgets_a_partial_code():
    framer = ScanFramer()
    framer.feed(b"1234", 1.0)
    framer.reset()
    assert framer.feed(b"99\r", 2.0) == ["99"]


@pytest.mark.parametrize(
    "name, value",
    [("CR", b"\r"), ("lf", b"\n"), ("CrLf", b"\r\n"), ("tab", b"\t"), ("none", b"")],
)
def test_suffix_names(name, value):
    assert parse_suffix(name) == value


def test_unknown_suffix_lists_the_names():
    with pytest.raises(ValueError, match="CR, LF, CRLF, TAB, NONE"):
        parse_suffix("ETX")


def test_make_framer_ends_codes_by_silence_only_without_suffix():
    assert make_framer(suffix=b"", idle_ms=80).idle_flush_s == pytest.approx(0.08)
    framer = make_framer(suffix=b"\r", idle_ms=80)  # with a suffix, silence only drops a stale partial
    framer.feed(b"2900000", 1.0)
    assert framer.flush_if_idle(1.5) == []  # not stale yet: a scanner may pause inside a code
    assert framer.flush_if_idle(2.1) == [] and "incomplete" in framer.take_drops()[0]
    assert framer.feed(b"5555555555554444\r", 3.0) == ["5555555555554444"]  # alone: the card check sees it


def test_clean_code_is_latin1_safe():
    assert clean_code(bytes(range(256))) == GS + "".join(chr(c) for c in range(0x20, 0x7F))


@given(st.lists(st.binary(max_size=64), max_size=20))
def test_fuzzed_reads_never_crash_and_codes_are_clean(chunks):
    framer = ScanFramer(max_len=32)
    for i, chunk in enumerate(chunks):
        for code in framer.feed(chunk, float(i)):
            assert code and len(code) <= 32
            if code == UNREADABLE:  # a frame with bytes but nothing readable: the POS hears an invalid scan
                assert chunk.strip(b" \t\r\n\x00") or any(c.strip(b" \t\r\n\x00") for c in chunks[:i])
                continue
            assert all(" " <= c <= "~" or c == GS for c in code)
    framer.flush_if_idle(1e9)


@given(st.lists(st.text(alphabet="0123456789ABCZ-", min_size=1, max_size=20), max_size=8),
       st.data())
def test_any_split_of_a_stream_gives_the_same_codes(codes, data):
    stream = b"".join(c.encode() + b"\r" for c in codes)
    cuts = sorted(data.draw(st.lists(st.integers(0, len(stream)), max_size=6)))
    chunks = [stream[a:b] for a, b in zip([0, *cuts], [*cuts, len(stream)])]
    assert feed_all(ScanFramer(), chunks) == codes
