"""`posd print-test`: a test slip and a code-page table on the configured printer."""

from __future__ import annotations

import subprocess
import sys

import pytest
import zxingcpp
from PIL import Image

from posd.cli import main
from posd.drivers.escpos_lib import get_profile
from posd.drivers.escpos_png import escpos_to_png
from posd.drivers.escpos_render import dots_for, profile_code_pages, render_slip
from posd.drivers.print_test import POLISH_LETTERS, code_page_table, parse_code_pages
from posd.drivers.escpos_text import escpos_to_text
from tests.support.other_user import needs_root, posd_as_nobody, shared_tmp  # noqa: F401 (a fixture)
from tests.support.printer_emulator import PrinterEmulator

CONFIG = """
[lane]
store_id = "S001"
lane_id = "L01"
locale = "{locale}"

[central]
url = "http://127.0.0.1:8780"
store_secret = "x"

[printer]
url = "{url}"
profile = "{profile}"
width_mm = {width}
"""


def config(tmp_path, url, locale="pl", profile="TM-T88V", width=80):
    path = tmp_path / "posd.toml"
    path.write_text(CONFIG.format(url=url, locale=locale, profile=profile, width=width))
    return str(path)


def test_print_test_on_a_preview_printer(tmp_path, capsys):
    assert main(["print-test", "--config", config(tmp_path, "preview://slips")]) == 0
    files = sorted(p.name for p in (tmp_path / "slips").iterdir())
    assert len(files) == 6 and sum(f.endswith(".png") for f in files) == 2
    slip = next(p for p in (tmp_path / "slips").glob("print-test-2*.txt")).read_text()
    assert "TM-T88V" in slip and "ESC t 18 CP852" in slip and "Zażółć gęślą jaźń" in slip
    table = next((tmp_path / "slips").glob("print-test-codepages-*.txt")).read_text()
    assert "ESC t 18: CP852" in table and "ESC t 45: CP1250" in table
    png = next(p for p in (tmp_path / "slips").glob("print-test-2*.png"))
    codes = {r.text for r in zxingcpp.read_barcodes(Image.open(png).convert("L"))}
    assert codes == {"TEST-CODE128", "TEST-QR-0001"}
    assert "printed print-test-codepages-" in capsys.readouterr().out


def test_code_page_table_sends_every_slot_with_bytes_0x80_to_0xff(tmp_path):
    with PrinterEmulator() as emulator:
        assert main(["print-test", "--code-pages", "all", "--config",
                     config(tmp_path, emulator.url, locale="fa", profile="TSP600", width=58)]) == 0
        jobs = emulator.wait_for_jobs(2, timeout=10)
    table = jobs[-1]
    for slot in (0, 5, 33):  # Star: CP437, CP852, CP1250
        assert b"\x1bt" + bytes([slot]) + b"8x  " + bytes(range(0x80, 0x90)) in table
    text = escpos_to_text(table, 32, code_pages=profile_code_pages("TSP600"))
    assert "ESC t 5: CP852" in text and "ą" in text  # 0xA5 under CP852
    for slot, name in get_profile("TSP600").codePages.items():
        assert f"ESC t {slot}: {name}" in text
        assert b"\x1bt" + bytes([int(slot)]) + b"8x  " + bytes(range(0x80, 0x90)) in table


def test_the_default_table_shows_the_slots_posd_uses_on_a_hands_length_of_paper():
    """A clone listing 68 slots: the chosen page and slot 0 in full, each Polish
    fallback as one line of Polish letters, in well under 25 cm."""
    profile, width = "NT-5890K", 58
    chosen = render_slip(code_page_table(profile, "cp"), profile, width)
    every = render_slip(code_page_table(profile, "cp", "all"), profile, width)
    pages = profile_code_pages(profile)
    text = escpos_to_text(chosen, 32, code_pages=pages)
    assert "ESC t 18: CP852 (Polish)" in text and "ESC t 0: CP437 (power-on)" in text
    assert b"\x1bt\x12" + b"8x  " + bytes(range(0x80, 0x90)) in chosen
    lines = text.splitlines()
    fallbacks = [(i, line) for i, line in enumerate(lines) if line.startswith("ESC t ")][2:]
    assert [line for _, line in fallbacks] == [
        "ESC t 54: CP852", "ESC t 72: CP1250", "ESC t 25: CP1257", "ESC t 95: CP775"]
    for i, _ in fallbacks:  # each prints the letters through its own slot
        assert lines[i + 1] == POLISH_LETTERS
    assert b"\x1bt\x48" + POLISH_LETTERS.encode("cp1250") + b"\n" in chosen
    dots_per_cm = 203 / 2.54
    chosen_cm = escpos_to_png(chosen, dots_for(profile, width), code_pages=pages).height / dots_per_cm
    every_cm = escpos_to_png(every, dots_for(profile, width), code_pages=pages).height / dots_per_cm
    assert chosen_cm < 25 < 200 < every_cm


def test_code_pages_option_prints_the_slots_asked_for(tmp_path, capsys):
    assert main(["print-test", "--code-pages", "18,45", "--config", config(tmp_path, "preview://slips")]) == 0
    table = next((tmp_path / "slips").glob("print-test-codepages-*.txt")).read_text()
    labels = [line for line in table.splitlines() if line.startswith("ESC t ")]
    assert labels == ["ESC t 18: CP852", "ESC t 45: CP1250"]
    with pytest.raises(SystemExit) as exc:
        main(["print-test", "--code-pages", "300", "--config", config(tmp_path, "preview://slips")])
    assert exc.value.code == 2 and "an ESC t slot is 0-255; got 300" in capsys.readouterr().err
    assert parse_code_pages(" All ") == "all" and parse_code_pages("7") == (7,)
    with pytest.raises(ValueError, match="expected chosen, all or ESC t slot numbers"):
        parse_code_pages("cp852")


def test_print_test_prints_through_the_code_pages_of_the_config(tmp_path):
    """Store IT wrote down what the clone's paper showed: posd prints Polish through that slot, and
    the table says which slots come from the config and which the profile lists but posd leaves alone."""
    path = config(tmp_path, "preview://slips")
    with open(path, "a") as f:
        f.write('code_pages = { 0 = "CP437", 45 = "cp852" }\n')
    assert main(["print-test", "--config", path]) == 0
    slip = next((tmp_path / "slips").glob("print-test-2*.txt")).read_text()
    assert "ESC t 45 CP852" in slip and "[printer] code_pages" in slip and "Zażółć gęślą jaźń" in slip
    table = next((tmp_path / "slips").glob("print-test-codepages-*.txt")).read_text()
    labels = [line for line in table.splitlines() if line.startswith("ESC t ")]
    assert labels == ["ESC t 45: CP852 (Polish)", "ESC t 0: CP437 (power-on)"]  # no fallback: none listed
    assert all(c in table for c in "ąćęłńóśźżĄĆĘŁŃÓŚŹŻ")  # bytes 0x80-0xFF under slot 45, read as CP852
    every = code_page_table("TM-T88V", "cp", "all", {0: "CP437", 45: "CP852"})
    text = escpos_to_text(render_slip(every, "TM-T88V", 80, code_pages={0: "CP437", 45: "CP852"}), 48,
                          code_pages=profile_code_pages("TM-T88V", {0: "CP437", 45: "CP852"}))
    assert "ESC t 45: CP852\n" in text and "ESC t 18: CP852 (profile only)" in text


def test_print_test_without_a_printer_says_so(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "posd", "print-test", "--config", config(tmp_path, "none")],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2 and "no printer" in proc.stderr


def test_print_test_to_an_offline_printer_fails_cleanly(tmp_path, capsys):
    with PrinterEmulator() as emulator:
        url = emulator.url
    assert main(["print-test", "--config", config(tmp_path, url)]) == 1
    assert "the printer failed: offline" in capsys.readouterr().err


@needs_root
def test_print_test_by_a_user_who_may_not_read_the_ledger_says_what_it_does_not_know(shared_tmp):
    """Whether the printer answered its status before is kept in ledger.db: print-test run by a user who
    may not read it printed blind without a word."""
    state = shared_tmp / "state"
    state.mkdir(mode=0o700)
    (state / "ledger.db").write_bytes(b"")
    with PrinterEmulator() as emulator:
        path = config(shared_tmp, emulator.url)
        with open(path, "a") as f:
            f.write(f'\n[storage]\ndir = "{state}"\n')
        run = posd_as_nobody("print-test", "--config", path)
    assert run.returncode == 0, run.stderr
    assert f"cannot read {state / 'ledger.db'} as nobody" in run.stderr and "blind" in run.stderr, run.stderr
