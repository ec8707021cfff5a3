"""A bad config stops with a message naming the key and line, never a traceback."""

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from posd.config import ConfigError, absolutize_url, parse

GOOD = """
[lane]
store_id = "S001"
lane_id = "L01"
locale = "pl"
timezone = "Europe/Warsaw"

[central]
url = "http://127.0.0.1:8780"
store_secret = "x"

[[scanner]]
url = "pty:///tmp/posd-test-scanner?suffix=CR"

[printer]
url = "preview:///tmp/slips"
"""


def test_good_config_parses():
    cfg = parse(GOOD)
    assert cfg.lane.locale == "pl"
    assert cfg.api.listen == "127.0.0.1:8765"
    assert cfg.scanners()[0][0] == "scanner0"
    assert cfg.printer.width_mm == 80


@pytest.mark.parametrize(
    "change, key, line",
    [
        (('locale = "pl"', 'locale = "de"'), "lane.locale", 5),
        (('timezone = "Europe/Warsaw"', 'timezone = "Mars/Base"'), "lane.timezone", 6),
        (('url = "pty:///tmp/posd-test-scanner?suffix=CR"', 'url = "gopher://x"'), "scanner[0].url", 13),
        (('url = "preview:///tmp/slips"', 'url = "laser://x"'), "printer.url", 16),
        (('store_secret = "x"', 'store_secret = "x"\nsecret_typo = 1'), "central.secret_typo", 11),
        (('lane_id = "L01"\n', ''), "lane.lane_id", 2),
        (('url = "http://127.0.0.1:8780"', 'url = "ftp://central"'), "central.url", 9),
        (('url = "http://127.0.0.1:8780"', 'url = "https://[::1"'), "central.url", 9),
        (('url = "http://127.0.0.1:8780"', 'url = "http://127.0.0.1:99999"'), "central.url", 9),
        (('url = "http://127.0.0.1:8780"', 'url = "http://:8780"'), "central.url", 9),
        # what the sync client refuses, or could not put its own paths after
        (('url = "http://127.0.0.1:8780"', 'url = "http://127.0.0.1:8780#x"'), "central.url", 9),
        (('url = "http://127.0.0.1:8780"', 'url = "http://127.0.0.1:8780/?a=b"'), "central.url", 9),
        (('url = "http://127.0.0.1:8780"', 'url = "http://127.0.0.1:8780/lane?"'), "central.url", 9),
        (('url = "http://127.0.0.1:8780"', 'url = "http://posd:pw@127.0.0.1:8780"'), "central.url", 9),
        (('url = "http://127.0.0.1:8780"', 'url = "http://127.0.0.1:0"'), "central.url", 9),
        (('store_secret = "x"', 'store_secret = "hex:"'), "central.store_secret", 10),  # no key at all
        (('timezone = "Europe/Warsaw"', 'timezone = "Europe/Warsaw"\ncountry = "XX"'), "lane.country", 7),
    ],
)
def test_bad_values_name_key_and_line(change, key, line):
    text = GOOD.replace(*change)
    with pytest.raises(ConfigError) as err:
        parse(text)
    assert err.value.key == key
    assert err.value.line == line
    assert key in str(err.value)


def test_the_printers_own_code_page_table():
    """[printer] code_pages: a clone's ESC t slots, by any spelling of a page posd can print text in."""
    text = GOOD + 'code_pages = { 0 = "cp437", 45 = "Cp852", 39 = "iso8859-2", 25 = "mazovia" }\n'
    assert parse(text).printer.code_pages == {0: "CP437", 25: "MAZOVIA", 39: "ISO_8859-2", 45: "CP852"}
    assert parse(GOOD).printer.code_pages is None  # the profile's table
    assert parse(GOOD + "code_pages = {}\n").printer.code_pages == {}  # no page: Polish is drawn
    table = parse(GOOD + '\n[printer.code_pages]\n18 = "CP852"\n').printer.code_pages
    assert table == {18: "CP852"}


@pytest.mark.parametrize("value, message", [
    ('{ 256 = "cp852" }', "slot '256': an ESC t slot is a number 0-255"),
    ('{ x = "cp852" }', "slot 'x': an ESC t slot is a number 0-255"),
    ('{ 18 = "cp8520" }', "slot 18: 'cp8520' is not a code page posd can print text in (for Polish: CP852"),
    ('{ 1 = "CP932" }', "slot 1: 'CP932' is not a code page posd can print text in"),  # multi-byte
    ('{ 18 = 852 }', 'slot 18: name the code page as text, such as "CP852"'),
    ('"cp852"', "a table of ESC t slot = code page"),
    ('{ 18 = "CP852", 018 = "CP1250" }', "slot 18 is written twice ('018'): give each slot once"),
    # every slot's mistake at once: a second one was found only once the first was mended
    ('{ 0 = "CP437", 300 = "CP852", 5 = "CP932" }',
     "slot '300': an ESC t slot is a number 0-255; slot 5: 'CP932' is not a code page posd can print text in"),
])
def test_a_wrong_code_page_table_names_the_key_the_line_and_the_slot(value, message):
    with pytest.raises(ConfigError) as err:
        parse(GOOD + f"code_pages = {value}\n")
    assert (err.value.key, err.value.line) == ("printer.code_pages", 17)
    assert message in str(err.value)
    with pytest.raises(ConfigError) as err:
        parse(GOOD + '\n[printer.code_pages]\n0 = "CP437"\n45 = "klingon"\n')
    assert (err.value.key, err.value.line) == ("printer.code_pages", 18)  # the sub-table's header
    assert "slot 45: 'klingon'" in str(err.value)


@pytest.mark.parametrize("text, key, line", [
    (GOOD.replace('locale = "pl"', '"locale" = "de"'), "lane.locale", 5),  # a quoted key
    (GOOD.replace('locale = "pl"', "'locale' = 'de'"), "lane.locale", 5),
    ("printer.width_mm = 72\n" + GOOD.replace("[printer]\n", "").replace('url = "preview:///tmp/slips"\n', ""),
     "printer.width_mm", 1),  # a dotted key at the top
    ('printer = { url = "none", width_mm = 72 }\n' + GOOD.replace("[printer]\n", "")
     .replace('url = "preview:///tmp/slips"\n', ""), "printer.width_mm", 1),  # an inline table
    (GOOD + 'code_pages.300 = "CP437"\n', "printer.code_pages", 17),  # a dotted key in a table
    (GOOD.replace("[[scanner]]", '[["scanner"]]  # the front one').replace("pty:///tmp/posd-test-scanner",
                                                                          "gopher://x"),
     "scanner[0].url", 13),
    # a line of a multi-line array or string is not a table header or a key
    (GOOD.replace("[lane]", '[api]\nallowed_origins = [\n  "http://a",\n  ["x"]\n]\n\n[lane]'),
     "api.allowed_origins[1]", 3),
    (GOOD.replace('store_secret = "x"', 'store_secret = """x\n[lane]\nlocale = "de"\n"""\nverify_tls = "no"'),
     "central.verify_tls", 14),
])
def test_the_line_is_found_for_every_way_toml_writes_a_key(text, key, line):
    with pytest.raises(ConfigError) as err:
        parse(text)
    assert (err.value.key, err.value.line) == (key, line), str(err.value)


def test_unknown_scheme_lists_known_ones():
    with pytest.raises(ConfigError) as err:
        parse(GOOD.replace('url = "preview:///tmp/slips"', 'url = "laser://x"'))
    message = str(err.value)
    for scheme in ("tcp", "file", "preview", "none"):
        assert scheme in message


def test_toml_syntax_error_has_line():
    with pytest.raises(ConfigError) as err:
        parse(GOOD.replace('lane_id = "L01"', 'lane_id = "L01'))
    assert err.value.line == 4
    # a string left open with single quotes or triple quotes: tomllib says only "at end of document"
    for opened in ("lane_id = 'L01", 'lane_id = " ""L01'.replace(" ", ""), "lane_id = ''" + "'L01"):
        with pytest.raises(ConfigError) as err:
            parse(GOOD.replace('lane_id = "L01"', opened))
        assert err.value.line == 4 and "a string opened at line 4 is never closed" in str(err.value), str(err.value)


def test_a_key_or_table_set_twice_is_named_and_a_byte_order_mark_is_no_mistake():
    """A key set twice is named with its line (tomllib names only the line); the value never (it may
    be a secret). A file Notepad saved "UTF-8 with BOM" is read as the config it is."""
    with pytest.raises(ConfigError) as err:
        parse(GOOD.replace('lane_id = "L01"', 'lane_id = "L01"\nlane_id = "L02-secret"'))
    assert err.value.line == 5 and "lane_id is set twice" in str(err.value) and "L02-secret" not in str(err.value)
    with pytest.raises(ConfigError) as err:
        parse(GOOD + "\n[lane]\n")
    assert "[lane] is set twice" in str(err.value)
    assert parse("\ufeff" + GOOD).lane.lane_id == parse(GOOD).lane.lane_id


def test_remote_listen_needs_explicit_permission():
    text = GOOD + '\n[api]\nlisten = "0.0.0.0:8765"\n'
    with pytest.raises(ConfigError) as err:
        parse(text)
    assert err.value.key == "api.listen" and err.value.line == text.splitlines().index('listen = "0.0.0.0:8765"') + 1
    shared = GOOD + '\n[status]\nlisten = "127.0.0.1:8765"\n'  # the status page on the API's own port
    with pytest.raises(ConfigError) as err:
        parse(shared)
    assert err.value.key == "status" and err.value.line == shared.splitlines().index("[status]") + 1
    assert "shares the API's port" in str(err.value)
    assert parse(text.replace('listen = "0.0.0.0:8765"', 'listen = "0.0.0.0:8765"\nallow_remote = true'))


@pytest.mark.parametrize("section, listen", [("api", "127.0.0.1:١٩٣٠١"), ("api", "127.0.0.1:۸۷۶۵"),
                                             ("status", "127.0.0.1:８７６６")])
def test_a_port_is_written_in_ascii_digits(section, listen):
    """int() reads Arabic-Indic, Persian and full-width digits too: such a port passed, and the lane
    announced "API on http://127.0.0.1:١٩٣٠١/", an address no POS can type."""
    text = GOOD + f'\n[{section}]\nlisten = "{listen}"\n'
    with pytest.raises(ConfigError) as err:
        parse(text)
    assert (err.value.key, err.value.line) == (f"{section}.listen", 19) and "digits 0-9" in str(err.value)
    # nor is a width in Persian digits told to be "a number without quotes": unquoted it is no TOML
    with pytest.raises(ConfigError) as err:
        parse(GOOD + 'width_mm = "۵۸"\n')
    assert err.value.key == "printer.width_mm" and "without quotes" not in str(err.value), str(err.value)


def test_relative_device_paths_resolve_against_config_folder(tmp_path):
    assert absolutize_url("pty://../var/s0?suffix=CR", tmp_path / "etc") == f"pty://{tmp_path}/var/s0?suffix=CR"
    assert absolutize_url("tcp://10.0.0.5:9100", tmp_path) == "tcp://10.0.0.5:9100"
    assert absolutize_url("preview:///abs/slips", tmp_path) == "preview:///abs/slips"


def test_a_relative_device_path_is_not_followed_through_its_symlink(tmp_path):
    """The link a pty:// scanner made (left behind by a daemon killed with SIGKILL, pointing at a
    pseudo-terminal that died with it) or a by-id link is the device's name, not its target."""
    run = tmp_path / "run"
    run.mkdir()
    (run / "scanner0").symlink_to("/dev/pts/4242")
    (tmp_path / "etc").mkdir()
    (tmp_path / "etc" / "here").symlink_to(run, target_is_directory=True)
    assert absolutize_url("pty://../run/scanner0?suffix=CR", tmp_path / "etc") == f"pty://{run}/scanner0?suffix=CR"
    assert absolutize_url("pty://here/scanner0", tmp_path / "etc") == f"pty://{run}/scanner0"  # folders resolve
    assert absolutize_url("serial://here/..", tmp_path / "etc") == f"serial://{tmp_path}"  # as the kernel walks it


def test_config_check_cli(tmp_path):
    good = tmp_path / "good.toml"
    good.write_text(GOOD)
    bad = tmp_path / "bad.toml"
    bad.write_text(GOOD.replace('locale = "pl"', 'locale = "de"'))
    ok = subprocess.run([sys.executable, "-m", "posd", "config", "check", str(good)], capture_output=True, text=True)
    assert ok.returncode == 0, ok.stderr
    assert "ok" in ok.stdout
    no = subprocess.run([sys.executable, "-m", "posd", "config", "check", str(bad)], capture_output=True, text=True)
    assert no.returncode == 2
    assert "lane.locale" in no.stderr and "line 5" in no.stderr
    assert "Traceback" not in no.stderr


@pytest.mark.parametrize("value", ["99999999999999999999", "1048577"])
def test_a_minimum_free_space_beyond_a_tebibyte_is_a_typo_named_by_key_and_line(tmp_path, value):
    """Not passed by `config check` for doctor to demand 95367431640625 TB later."""
    cfg = tmp_path / "posd.toml"
    cfg.write_text(GOOD + f"\n[storage]\nmin_free_mb = {value}\n")
    proc = config_check(cfg)
    assert proc.returncode == 2
    assert "storage.min_free_mb" in proc.stderr and "line 19" in proc.stderr and "1 TiB" in proc.stderr
    assert parse(GOOD + "\n[storage]\nmin_free_mb = 1048576\n").storage.min_free_mb == 1024 * 1024


def test_demo_config_is_valid():
    from pathlib import Path

    from posd.config import load

    cfg = load(Path(__file__).parent.parent / "config" / "demo.toml")
    assert cfg.lane.store_id == "S001"
    example = load(Path(__file__).parent.parent / "config" / "posd.example.toml")
    assert example.printer.url.startswith("tcp://")


def test_every_mistake_is_reported_at_once():
    text = GOOD.replace('locale = "pl"', 'locale = "de"').replace('timezone = "Europe/Warsaw"', 'timezone = "Mars/Base"')
    text = text.replace('url = "preview:///tmp/slips"', 'url = "laser://x"')
    with pytest.raises(ConfigError) as err:
        parse(text)
    found = [(p.key, p.line) for p in err.value.problems]
    assert found == [("lane.locale", 5), ("lane.timezone", 6), ("printer.url", 16)]
    assert "and 2 more" in str(err.value) and "\n" not in str(err.value)


def test_a_wrong_printer_url_does_not_hide_a_mistyped_profile_and_each_has_its_line():
    text = GOOD.replace('url = "preview:///tmp/slips"', 'url = "laser://x"\nprofile = "TM-T88X"')
    with pytest.raises(ConfigError) as err:
        parse(text)
    found = {p.key: (p.line, p.message) for p in err.value.problems}
    assert set(found) == {"printer.url", "printer.profile"}, found
    assert found["printer.profile"][0] == found["printer.url"][0] + 1  # its own line, not the table's
    assert "did you mean TM-T88V" in found["printer.profile"][1]


def test_a_camera_clip_that_does_not_exist_is_named_by_config_check(tmp_path):
    from posd.config import load

    cfg = tmp_path / "posd.toml"
    cfg.write_text(GOOD + '\n[[scanner]]\nname = "cam"\nurl = "camera+file://clips/missing.avi"\n')
    with pytest.raises(ConfigError) as err:
        load(cfg, check_files=True)
    (problem,) = [p for p in err.value.problems if p.key.startswith("scanner")]
    assert problem.key == "scanner[1].url" and str(tmp_path / "clips" / "missing.avi") in problem.message
    (tmp_path / "clips").mkdir()
    (tmp_path / "clips" / "missing.avi").write_bytes(b"RIFF")
    load(cfg, check_files=True)  # there now: the config is good


@pytest.mark.parametrize("text, key, line, message", [
    (GOOD.replace('store_secret = "x"', 'store_secret = "x"\npush_interval_s = nan'), "central.push_interval_s", 11,
     "must be a number (not nan)"),
    (GOOD + "\n[offline]\nmax_hours = nan\n", "offline.max_hours", 19, "must be a number (not nan)"),
    (GOOD + "\n[offline]\nmax_voucher_uses_per_lane = -nan\n", "offline.max_voucher_uses_per_lane", 19,
     "must be a whole number (not nan)"),
    (GOOD.replace("[[scanner]]", "[scanner]"), "scanner", 12, "write [[scanner]] (double brackets)"),
    (GOOD + '\n[card_reader]\nurl = "msr+serial:///dev/ttyS9"\n', "card_reader", 18, "write [[card_reader]]"),
    ('source = "/etc/posd/other.toml"\n' + GOOD, "source", 1, "unknown key"),  # the field the file's path fills
    (GOOD.replace('store_id = "S001"', "store_id = nan"), "lane.store_id", 3, "must be text in quotes (got a number)"),
])
def test_a_mistake_is_told_as_the_file_should_be_written(text, key, line, message):
    with pytest.raises(ConfigError) as err:
        parse(text, source="/etc/posd/posd.toml")
    assert (err.value.key, err.value.line) == (key, line) and message in str(err.value), str(err.value)


def test_a_camera_clip_that_is_a_folder_is_called_one(tmp_path):
    from posd.config import load

    (tmp_path / "clips").mkdir()
    cfg = tmp_path / "posd.toml"
    cfg.write_text(GOOD + '\n[[scanner]]\nname = "cam"\nurl = "camera+file://clips"\n')
    with pytest.raises(ConfigError) as err:
        load(cfg, check_files=True)
    assert (err.value.key, err.value.line) == ("scanner[1].url", 20)
    assert f"the camera clip {tmp_path / 'clips'} is a directory, not a video file" in str(err.value)


def test_a_missing_camera_clip_is_named_beside_another_scanners_bad_setting(tmp_path):
    """One `posd config check` lists every mistake: a missing clip was named only once another
    scanner's bad setting (layout=xx) had been corrected."""
    from posd.config import load

    cfg = tmp_path / "posd.toml"
    cfg.write_text(GOOD + '\n[[scanner]]\nname = "cam"\nurl = "camera+file://nope.avi"\n'
                   '\n[[scanner]]\nname = "wedge"\nurl = "hid:///dev/input/by-id/kbd-event-kbd?layout=xx"\n')
    with pytest.raises(ConfigError) as err:
        load(cfg, check_files=True)
    told = {(p.key, p.message.split(" (")[0][:40]) for p in err.value.problems}
    assert any(key == "scanner[2].url" for key, _ in told), told
    assert ("scanner[1].url", f"the camera clip {tmp_path / 'nope.avi'} does not exist"[:40]) in told, told


def test_a_secret_must_be_given_once(tmp_path):
    from posd.config import load

    cfg = tmp_path / "posd.toml"
    cfg.write_text(GOOD.replace('store_secret = "x"', ''))
    with pytest.raises(ConfigError) as err:
        load(cfg, check_files=True)  # what `config check` and `posd run` do
    assert (err.value.key, err.value.line) == ("central", 8) and "store_secret_file" in str(err.value)
    with pytest.raises(ConfigError) as err:
        parse(GOOD.replace('store_secret = "x"', 'store_secret = "x"\nstore_secret_file = "s"'))
    assert err.value.key == "central"
    with pytest.raises(ConfigError) as err:
        parse(GOOD.replace('store_secret = "x"', 'store_secret = "hex:zz"'))
    assert err.value.key == "central.store_secret" and "hex" in str(err.value)


def files_config(tmp_path, secret_line):
    cfg = tmp_path / "posd.toml"
    cfg.write_text(GOOD.replace('store_secret = "x"', secret_line + '\nclient_cert = "certs/lane.pem"')
                   .replace("http://", "https://") + '\n[storage]\ndir = "state"\n')  # a client cert is TLS's
    return cfg


def test_config_check_names_every_missing_or_unusable_file(tmp_path):
    cfg = files_config(tmp_path, 'store_secret_file = "store.secret"')
    proc = subprocess.run([sys.executable, "-m", "posd", "config", "check", str(cfg)],
                          capture_output=True, text=True, timeout=30)
    assert proc.returncode == 2
    lines = proc.stderr.splitlines()
    assert any("central.store_secret_file" in ln and "store.secret does not exist" in ln and "line 10" in ln
               for ln in lines), proc.stderr
    assert any("central.client_cert" in ln and "lane.pem does not exist" in ln for ln in lines), proc.stderr
    assert "2 problems" in lines[-1] and "Traceback" not in proc.stderr
    (tmp_path / "store.secret").write_text("hex:nothex\n")
    (tmp_path / "certs").mkdir()
    (tmp_path / "certs" / "lane.pem").write_text("-----BEGIN CERTIFICATE-----\n")
    proc = subprocess.run([sys.executable, "-m", "posd", "config", "check", str(cfg)],
                          capture_output=True, text=True, timeout=30)
    assert proc.returncode == 2 and "not valid hex" in proc.stderr and "lane.pem does not load" in proc.stderr
    cert, key = _certificate(tmp_path, "lane")  # the certificate with its key, in one file
    (tmp_path / "certs" / "lane.pem").write_bytes(cert.read_bytes() + key.read_bytes())
    proc = subprocess.run([sys.executable, "-m", "posd", "config", "check", str(cfg)],
                          capture_output=True, text=True, timeout=30)
    assert proc.returncode == 2 and "not valid hex" in proc.stderr and "client_cert" not in proc.stderr
    # said ok, then every request signed with the mark (or both lines) was 401 at central
    for text, says in (("\ufeffs3cret\n", "byte-order mark"), ("s3cret\nold-secret\n", "more than one line")):
        (tmp_path / "store.secret").write_text(text, encoding="utf-8")
        proc = subprocess.run([sys.executable, "-m", "posd", "config", "check", str(cfg)],
                              capture_output=True, text=True, timeout=30)
        assert proc.returncode == 2 and says in proc.stderr and "central.store_secret_file" in proc.stderr, \
            proc.stderr
    (tmp_path / "store.secret").write_text("hex:00ff\n")
    proc = subprocess.run([sys.executable, "-m", "posd", "config", "check", str(cfg)],
                          capture_output=True, text=True, timeout=30)
    assert proc.returncode == 0, proc.stderr


def test_run_with_a_missing_secret_file_exits_2_with_one_line(tmp_path):
    cfg = files_config(tmp_path, 'store_secret_file = "store.secret"')
    proc = subprocess.run([sys.executable, "-m", "posd", "run", "--config", str(cfg)],
                          capture_output=True, text=True, timeout=30)
    assert proc.returncode == 2
    assert len(proc.stderr.strip().splitlines()) == 1, proc.stderr
    assert "central.store_secret_file" in proc.stderr and "and 1 more" in proc.stderr
    assert not (tmp_path / "state").exists()  # nothing was created before giving up


def test_run_with_a_storage_folder_it_cannot_use_exits_2_with_one_line(tmp_path):
    cfg = tmp_path / "posd.toml"
    (tmp_path / "disk").write_text("a file where a folder should be")
    cfg.write_text(GOOD + '\n[storage]\ndir = "disk/state"\n')  # found before anything is made
    proc = subprocess.run([sys.executable, "-m", "posd", "run", "--config", str(cfg)],
                          capture_output=True, text=True, timeout=30)
    assert proc.returncode == 2, proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1 and "Traceback" not in proc.stderr
    assert "disk/state" in proc.stderr and "disk is not a directory" in proc.stderr and "storage.dir" in proc.stderr


def test_a_central_url_the_sync_client_refuses_stops_run_and_doctor_as_a_config_error(tmp_path):
    """Not a traceback from the sync client after ledger.db, cache.db and the lock were made."""
    import json

    cfg = tmp_path / "posd.toml"
    cfg.write_text(GOOD.replace('url = "http://127.0.0.1:8780"', 'url = "http://127.0.0.1:8780#x"')
                   + '\n[storage]\ndir = "state"\n')
    proc = subprocess.run([sys.executable, "-m", "posd", "run", "--config", str(cfg)],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr
    assert "config error at 'central.url' (line 9)" in proc.stderr and "fragment" in proc.stderr
    assert not (tmp_path / "state").exists()
    doctor = subprocess.run([sys.executable, "-m", "posd", "doctor", "--config", str(cfg), "--json", "--no-central"],
                            capture_output=True, text=True, timeout=120)
    assert doctor.returncode == 1 and "Traceback" not in doctor.stderr, doctor.stderr
    named = [(c["result"], c["details"]["config_key"], c["details"]["line"])
             for c in json.loads(doctor.stdout)["checks"] if c["check"] == "config"]
    assert named == [("fail", "central.url", 9)]
    assert config_check(cfg).returncode == 2


@pytest.mark.parametrize("token_file, contents, message", [
    ("", None, "must name a file"),
    ("folder", None, "is a directory, not a file"),
    ("api.token", b"abc\xff\xfe\n", "is not UTF-8 text"),
    ("api.token", b"", "is empty"),
    ("api.token", b" \n", "is empty"),
    # a header carries latin-1: every request was a 401 (the token compared as UTF-8)
    ("api.token", "żółw-token\n".encode(), "holds 'ż' (U+017C)"),
    ("api.token", b"two words\n", "holds ' ' (U+0020)"),
    ("api.token", b"tab\there\n", "holds '\\t' (U+0009)"),
])
def test_an_api_token_file_posd_cannot_use_is_named_and_nothing_is_created(tmp_path, token_file, contents, message):
    """Named by `config check` and `posd run` under api.token_file with its line, before ledger.db, cache.db or
    the lock are made; an existing token file is left as it was (posd never changes one: docs/install.md)."""
    cfg = tmp_path / "posd.toml"
    state = tmp_path / "state"
    state.mkdir()
    (state / "folder").mkdir()
    cfg.write_text(GOOD + f'\n[storage]\ndir = "state"\n\n[api]\ntoken_file = "{token_file}"\n')
    if contents is not None:
        (state / token_file).write_bytes(contents)
        (state / token_file).chmod(0o666)
    proc = config_check(cfg)
    assert proc.returncode == 2 and f"config error at 'api.token_file' (line 22): " in proc.stderr, proc.stderr
    assert message in proc.stderr
    run = subprocess.run([sys.executable, "-m", "posd", "run", "--config", str(cfg)],
                         capture_output=True, text=True, timeout=60)
    assert run.returncode == 2 and "Traceback" not in run.stderr, run.stderr
    assert "config error at 'api.token_file' (line 22)" in run.stderr and message in run.stderr
    assert sorted(p.name for p in state.iterdir()) == sorted({"folder", token_file or "folder"})
    if contents is not None:
        assert (state / token_file).read_bytes() == contents
        assert (state / token_file).stat().st_mode & 0o777 == 0o666


def test_a_token_file_behind_a_link_is_made_where_the_link_points_and_one_under_a_file_is_refused(tmp_path):
    """A token file that is a link to a file not made yet gets the token there (0600), read back through
    the link; one whose folder is a file is a ConfigError naming api.token_file. Both were an endless
    retry in the daemon (a RecursionError)."""
    from posd.daemon import load_token

    link = tmp_path / "state" / "api.token"
    link.parent.mkdir()
    link.symlink_to(tmp_path / "etc" / "posd" / "api.token")
    token = load_token(link)
    assert (tmp_path / "etc" / "posd" / "api.token").stat().st_mode & 0o777 == 0o600
    assert load_token(link) == token and link.is_symlink()
    (tmp_path / "afile").write_text("not a folder\n")
    with pytest.raises(ConfigError, match="cannot make the folder") as err:
        load_token(tmp_path / "afile" / "api.token")
    assert err.value.key == "api.token_file"


def config_check(path):
    proc = subprocess.run([sys.executable, "-m", "posd", "config", "check", str(path)],
                          capture_output=True, text=True, timeout=60)
    assert "Traceback" not in proc.stderr, proc.stderr
    return proc


def test_config_check_lists_every_mistake_and_every_missing_file_at_once(tmp_path):
    """The files a config names are checked even when other keys are wrong, each with key and line."""
    cfg = tmp_path / "posd.toml"
    cfg.write_text(GOOD.replace('locale = "pl"', 'locale = "de"')
                   .replace('store_secret = "x"', 'store_secret_file = "gone.secret"\nclient_cert = "gone.pem"\n'
                            'client_key = "gone.key"\nverify_tls = "no"').replace("http://", "https://"))
    proc = config_check(cfg)
    assert proc.returncode == 2
    lines = proc.stderr.splitlines()
    expected = [("lane.locale", 5), ("central.verify_tls", 13), ("central.store_secret_file", 10),
                ("central.client_cert", 11), ("central.client_key", 12)]
    for key, line in expected:
        assert any(f"'{key}' (line {line})" in ln for ln in lines), (key, proc.stderr)
    assert "gone.secret does not exist" in proc.stderr and "gone.key does not exist" in proc.stderr
    assert lines[-1].endswith("5 problems")
    # one mistake besides the missing files is enough to have hidden them before
    cfg.write_text(GOOD.replace('locale = "pl"', 'locale = "de"').replace('store_secret = "x"',
                                                                          'store_secret_file = "gone.secret"'))
    proc = config_check(cfg)
    assert "lane.locale" in proc.stderr and "central.store_secret_file" in proc.stderr, proc.stderr
    # a file key that is itself wrong is named once, for its type, and not looked for
    cfg.write_text(GOOD.replace('store_secret = "x"', 'store_secret_file = 7'))
    proc = config_check(cfg)
    assert proc.returncode == 2 and "central.store_secret_file' (line 10): must be text in quotes" in proc.stderr
    assert "problems" not in proc.stderr and "does not exist" not in proc.stderr


def _typed_fields():
    """Every bool and number key of every section, with a valid value of it."""
    from typing import get_args

    from posd.config import Config

    out = []
    for section, field in Config.model_fields.items():
        model = next((a for a in (field.annotation, *get_args(field.annotation)) if hasattr(a, "model_fields")),
                     None)
        if model is None:
            continue
        for key, f in model.model_fields.items():
            kinds = {f.annotation, *get_args(f.annotation)} & {bool, int, float}
            if kinds:
                value = f.default if f.default is not None and type(f.default) in kinds else None
                value = value if value is not None else (1 if int in kinds or float in kinds else True)
                out.append((section, key, value))
    return out


@pytest.mark.parametrize("section, key, value", _typed_fields())
def test_a_quoted_value_is_not_a_bool_or_a_number(section, key, value):
    """Strict types for every bool and number: "yes" does not open a listener, "no" does not turn TLS
    checking off, "1.5" is not 1.5. The unquoted value is taken (an integer where a number is asked too)."""
    literal = str(value).lower() if isinstance(value, bool) else str(value)
    header = f"[{section}]\n"
    good = GOOD.replace(header, f"{header}{key} = {literal}\n", 1) if header in GOOD else (
        GOOD + f"\n{header}{key} = {literal}\n")
    assert parse(good)
    bad = good.replace(f"{key} = {literal}\n", f'{key} = "{literal}"\n')
    with pytest.raises(ConfigError) as err:
        parse(bad)
    assert err.value.key.endswith(key) and "without quotes" in str(err.value), str(err.value)


def test_the_listener_and_tls_are_not_opened_by_a_quoted_word():
    with pytest.raises(ConfigError) as err:
        parse(GOOD + '\n[api]\nlisten = "0.0.0.0:8765"\nallow_remote = "yes"\n')
    assert err.value.key == "api.allow_remote" and err.value.line == 20
    with pytest.raises(ConfigError) as err:
        parse(GOOD.replace('store_secret = "x"', 'store_secret = "x"\nverify_tls = "no"'))
    assert err.value.key == "central.verify_tls" and "true or false" in str(err.value)
    assert parse(GOOD.replace('store_secret = "x"', 'store_secret = "x"\npush_interval_s = 2')).central.push_interval_s == 2.0
    https = GOOD.replace("http://", "https://")  # verify_tls = false is for an https:// central only
    unverified = parse(https.replace('store_secret = "x"', 'store_secret = "x"\nverify_tls = false'))
    assert unverified.central.verify_tls is False
    with pytest.raises(ConfigError) as err:
        parse(GOOD.replace('url = "preview:///tmp/slips"', 'url = "preview:///tmp/slips"\nwidth_mm = "58"'))
    assert err.value.key == "printer.width_mm" and "without quotes" in str(err.value)


@pytest.mark.parametrize("keys, named", [
    ('verify_tls = false', ["central.verify_tls"]),
    ('client_cert = "lane.pem"', ["central.client_cert"]),
    ('client_cert = "lane.pem"\nclient_key = "lane.key"', ["central.client_cert", "central.client_key"]),
])
def test_tls_keys_with_a_plain_http_central_are_refused_by_key_and_line(tmp_path, keys, named):
    """Nothing reads them without TLS: the lane would seem to present a certificate it never sends."""
    cert, key = _certificate(tmp_path, "made")
    (tmp_path / "lane.pem").write_bytes(cert.read_bytes() + key.read_bytes())  # with its key, or beside it
    (tmp_path / "lane.key").write_bytes(key.read_bytes())
    cfg = tmp_path / "posd.toml"
    cfg.write_text(GOOD.replace('store_secret = "x"', f'store_secret = "x"\n{keys}') + '\n[storage]\ndir = "state"\n')
    proc = config_check(cfg)
    assert proc.returncode == 2
    for line, key in enumerate(named, start=11):
        assert any(f"'{key}' (line {line})" in ln and "only applies to an https:// central" in ln
                   for ln in proc.stderr.splitlines()), proc.stderr
    run = subprocess.run([sys.executable, "-m", "posd", "run", "--config", str(cfg)],
                         capture_output=True, text=True, timeout=30)
    assert run.returncode == 2 and named[0] in run.stderr and "Traceback" not in run.stderr
    assert not (tmp_path / "state").exists()  # refused before anything is made
    cfg.write_text(cfg.read_text().replace("http://", "https://"))
    assert config_check(cfg).returncode == 0
    # true is the default, said or not: it changes nothing on http either
    assert parse(GOOD.replace('store_secret = "x"', 'store_secret = "x"\nverify_tls = true')).central.verify_tls


def test_the_printers_name_counts_among_the_device_names():
    named = GOOD.replace('url = "preview:///tmp/slips"', 'url = "preview:///tmp/slips"\nname = "front"')
    assert parse(named).printer.device_name == "front"
    assert parse(GOOD).printer.device_name == "printer"
    with pytest.raises(ConfigError) as err:
        parse(named + '\n[[scanner]]\nname = "front"\nurl = "tcp://127.0.0.1:7001"\n')
    (problem,) = err.value.problems
    assert problem.key == "scanner[1].name" and "already used by printer.name (line" in problem.message


DUPLICATES = GOOD + """
[[scanner]]
name = "front"
url = "tcp://127.0.0.1:7001"

[[scanner]]
name = "front"
url = "tcp://127.0.0.1:7002"

[[card_reader]]
name = "scanner0"
url = "msr+serial:///dev/ttyS9"
"""


def test_an_empty_device_name_is_refused():
    """name = "" passed config check and ran under the default name: beside a second scanner named
    scanner0, both ran as scanner0 and one was gone from health and /metrics."""
    text = GOOD.replace('[[scanner]]\n', '[[scanner]]\nname = " "\n')
    with pytest.raises(ConfigError) as refused:
        parse(text)
    problem = refused.value.problems[0]
    assert problem.key == "scanner[0].name" and problem.line == text.splitlines().index('name = " "') + 1
    assert "must not be empty" in problem.message
    with pytest.raises(ConfigError) as refused:  # a NUL reached /metrics' labels, a line end the log
        parse(GOOD.replace('[[scanner]]\n', '[[scanner]]\nname = "front\\u0000"\n'))
    assert "control or format character" in refused.value.problems[0].message


def test_a_device_name_used_twice_is_refused_naming_both_lines(tmp_path):
    with pytest.raises(ConfigError) as err:
        parse(DUPLICATES)
    found = [(p.key, p.line, p.message) for p in err.value.problems]
    assert [(k, n) for k, n, _ in found] == [("scanner[2].name", 23), ("card_reader[0].name", 27)]
    assert "'front' is already used by scanner[1].name (line 19)" in found[0][2]
    assert "'scanner0' is already used by scanner[0] (line 12)" in found[1][2]  # the first scanner's default name
    with pytest.raises(ConfigError) as err:
        parse(GOOD + '\n[[card_reader]]\nname = "printer"\nurl = "msr+serial:///dev/ttyS9"\n')
    assert err.value.key == "card_reader[0].name" and "used by printer (line 15)" in str(err.value)
    # two unnamed devices of different kinds have different default names
    assert parse(GOOD + '\n[[card_reader]]\nurl = "msr+serial:///dev/ttyS9"\n').card_readers()[0][0] == "card_reader0"
    cfg = tmp_path / "posd.toml"
    cfg.write_text(DUPLICATES)
    proc = config_check(cfg)
    assert proc.returncode == 2 and "scanner[2].name' (line 23)" in proc.stderr and "line 19" in proc.stderr
    doctor = subprocess.run([sys.executable, "-m", "posd", "doctor", "--config", str(cfg), "--json", "--no-central"],
                            capture_output=True, text=True, timeout=120)
    assert doctor.returncode == 1 and "Traceback" not in doctor.stderr
    import json

    report = json.loads(doctor.stdout)
    named = [(c["details"]["config_key"], c["details"]["line"]) for c in report["checks"] if c["check"] == "config"]
    assert named == [("scanner[2].name", 23), ("card_reader[0].name", 27)]


def test_a_storage_folder_under_a_file_is_named_by_config_check(tmp_path):
    """config check said ok and posd run exited 2 (storage.dir: Not a directory)."""
    (tmp_path / "notes.txt").write_text("x")
    (tmp_path / "dangling").symlink_to("/nowhere/posd")
    cfg = tmp_path / "posd.toml"
    cfg.write_text(GOOD + f'\n[storage]\ndir = "{tmp_path / "dangling"}"\n')
    proc = config_check(cfg)
    assert proc.returncode == 2 and "is a link to /nowhere/posd, which does not exist" in proc.stderr, proc.stderr
    cfg.write_text(GOOD + f'\n[storage]\ndir = "{tmp_path / "dangling" / "state"}"\n')
    proc = config_check(cfg)
    assert proc.returncode == 2 and "dangling is a link to /nowhere/posd, which does not exist" in proc.stderr
    for folder, ok in ((tmp_path / "notes.txt" / "posd", False), (tmp_path / "new" / "posd", True)):
        cfg.write_text(GOOD + f'\n[storage]\ndir = "{folder}"\n')
        proc = config_check(cfg)
        if ok:
            assert proc.returncode == 0, proc.stderr
            continue
        assert proc.returncode == 2 and "storage.dir" in proc.stderr, proc.stderr
        assert f"{folder} cannot be made: {tmp_path / 'notes.txt'} is not a directory" in proc.stderr


def test_an_api_token_posd_cannot_make_is_named_before_anything_is_made(tmp_path):
    """A token file whose folder is a file: config check said ok, and posd run exited 2 only after
    ledger.db, cache.db and the lock were made."""
    (tmp_path / "afile").write_text("not a folder\n")
    cfg = tmp_path / "posd.toml"
    cfg.write_text(GOOD + f'\n[storage]\ndir = "state"\n\n[api]\ntoken_file = "{tmp_path / "afile" / "api.token"}"\n')
    said = f"the API token {tmp_path / 'afile' / 'api.token'} cannot be made: {tmp_path / 'afile'} is not a directory"
    proc = config_check(cfg)
    assert proc.returncode == 2 and "config error at 'api.token_file' (line 22)" in proc.stderr, proc.stderr
    assert said in proc.stderr
    run = subprocess.run([sys.executable, "-m", "posd", "run", "--config", str(cfg)],
                         capture_output=True, text=True, timeout=60)
    assert run.returncode == 2 and "Traceback" not in run.stderr and said in run.stderr, run.stderr
    assert not (tmp_path / "state").exists()


@pytest.mark.skipif(os.geteuid() != 0 or not shutil.which("runuser"), reason="checks as another user: needs root")
def test_a_storage_folder_this_user_cannot_write_is_named_by_config_check():
    """As the user posd runs as: a storage folder it cannot write, or cannot make where its parent is
    read-only, is storage.dir's error (config check said ok; posd run then exited 2 without the line)."""
    top = Path(tempfile.mkdtemp(prefix="posd-ro-", dir="/tmp"))
    try:
        top.chmod(0o755)
        (top / "ro").mkdir(mode=0o555)
        (top / "ro").chmod(0o555)
        (top / "ro" / "kept").mkdir()
        (top / "ro" / "kept").chmod(0o555)
        for folder, said in ((top / "ro" / "state", f"{top / 'ro' / 'state'} cannot be made: {top / 'ro'} is not "
                                                     "writable by this user"),
                             (top / "ro" / "kept", f"{top / 'ro' / 'kept'} is not writable by this user")):
            cfg = top / "posd.toml"
            cfg.write_text(GOOD + f'\n[storage]\ndir = "{folder}"\n')
            cfg.chmod(0o644)
            proc = subprocess.run(["runuser", "-u", "nobody", "--", sys.executable, "-m", "posd", "config", "check",
                                   str(cfg)], capture_output=True, text=True, timeout=60, cwd="/")
            assert proc.returncode == 2 and "config error at 'storage.dir' (line 19)" in proc.stderr, proc.stderr
            assert said in proc.stderr and "Traceback" not in proc.stderr
            assert "api.token_file" not in proc.stderr  # the token's folder is storage.dir: said once
        # a storage folder this user may not even look into (posd's own, 0750): named, not a traceback
        (top / "ro" / "kept").chmod(0o750)
        (top / "ro" / "kept" / "inner").mkdir()
        cfg.write_text(GOOD + f'\n[storage]\ndir = "{top / "ro" / "kept" / "inner"}"\n')
        proc = subprocess.run(["runuser", "-u", "nobody", "--", sys.executable, "-m", "posd", "config", "check",
                               str(cfg)], capture_output=True, text=True, timeout=60, cwd="/")
        assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr
        assert "config error at 'storage.dir' (line 19)" in proc.stderr and "may not look into" in proc.stderr
        # a folder this user may write, holding a ledger.db another user owns: posd run refused it (exit 2)
        mine = top / "mine"
        mine.mkdir()
        shutil.chown(mine, "nobody")
        (mine / "ledger.db").write_bytes(b"")
        (mine / "ledger.db").chmod(0o644)  # root's
        cfg.write_text(GOOD + f'\n[storage]\ndir = "{mine}"\n')
        proc = subprocess.run(["runuser", "-u", "nobody", "--", sys.executable, "-m", "posd", "config", "check",
                               str(cfg)], capture_output=True, text=True, timeout=60, cwd="/")
        assert proc.returncode == 2 and "config error at 'storage.dir' (line 19)" in proc.stderr, proc.stderr
        assert f"{mine / 'ledger.db'} is not writable by this user" in proc.stderr, proc.stderr
        shutil.chown(mine / "ledger.db", "nobody")
        (mine / "posd.lock").write_bytes(b"")  # root's, as a posd run by hand as root leaves it
        proc = subprocess.run(["runuser", "-u", "nobody", "--", sys.executable, "-m", "posd", "config", "check",
                               str(cfg)], capture_output=True, text=True, timeout=60, cwd="/")
        assert proc.returncode == 2 and f"{mine / 'posd.lock'} is not writable by this user" in proc.stderr, \
            proc.stderr
    finally:
        shutil.rmtree(top)


def test_a_config_with_old_mac_line_ends_reads_as_before(tmp_path):
    """Line ends as Python's text mode reads them: \\r\\n and a lone \\r are line ends (the bounded read
    took the bytes as they are, and a config saved with \\r alone stopped being TOML)."""
    cfg = tmp_path / "posd.toml"
    for end in ("\r\n", "\r"):
        cfg.write_bytes((GOOD + '\n[storage]\ndir = "state"\n').replace("\n", end).encode())
        assert config_check(cfg).returncode == 0, end


def test_an_empty_storage_folder_is_refused_as_an_empty_token_file_is(tmp_path):
    """storage.dir = "" was taken as the config file's own folder (the ledger beside /etc/posd/posd.toml)."""
    cfg = tmp_path / "posd.toml"
    for empty in ('""', '"  "'):
        cfg.write_text(GOOD + f"\n[storage]\ndir = {empty}\n")
        proc = config_check(cfg)
        assert proc.returncode == 2 and "config error at 'storage.dir' (line 19)" in proc.stderr, proc.stderr
        assert "must name a folder" in proc.stderr


def test_a_config_nested_too_deep_or_too_large_is_a_config_error_not_a_traceback(tmp_path):
    """tomllib reads nesting by recursion: a RecursionError traceback and exit 1 (which systemd restarts
    on); and a config check of /dev/zero never came back."""
    cfg = tmp_path / "posd.toml"
    cfg.write_text(GOOD + "\n[offline]\nmax_hours = " + "[" * 5000 + "]" * 5000 + "\n")
    line = GOOD.count("\n") + 3
    proc = config_check(cfg)
    assert proc.returncode == 2 and f"config error (line {line}): " in proc.stderr and "nested" in proc.stderr, \
        proc.stderr
    run = subprocess.run([sys.executable, "-m", "posd", "run", "--config", str(cfg)],
                         capture_output=True, text=True, timeout=60)
    assert run.returncode == 2 and "Traceback" not in run.stderr, run.stderr
    big = config_check("/dev/zero")
    assert big.returncode == 2 and "larger than 1 MiB" in big.stderr, big.stderr


def test_one_serial_port_by_its_link_and_by_its_node_is_one_device(tmp_path):
    """/dev/serial/by-id/... (what docs recommend) beside the /dev/ttyUSB0 it links to: config check said
    ok, both drivers opened the port, and each took part of every card's digits (unknown members)."""
    node = tmp_path / "ttyUSB0"
    node.write_text("")
    link = tmp_path / "by-id-scanner"
    link.symlink_to(node)
    twice = GOOD + f'\n[[scanner]]\nname = "byid"\nurl = "serial://{link}"\n' \
        f'\n[[scanner]]\nname = "raw"\nurl = "serial://{node}"\n'
    with pytest.raises(ConfigError) as err:
        parse(twice)
    [problem] = err.value.problems
    assert problem.key == "scanner[2].url" and f"{node} is already the device of scanner[1].url" in problem.message


def test_a_storage_folder_reached_through_a_link_is_that_folder(tmp_path):
    """A storage.dir that is a link to a folder that exists (store IT moving the data to another
    disk) was refused as "a link to ..., which does not exist", by config check and posd run alike."""
    (tmp_path / "disk" / "posd").mkdir(parents=True)
    (tmp_path / "state").symlink_to(tmp_path / "disk" / "posd", target_is_directory=True)
    (tmp_path / "relative").symlink_to("disk/posd", target_is_directory=True)
    cfg = tmp_path / "posd.toml"
    for folder in (tmp_path / "state", "relative", tmp_path / "state" / "lane"):
        cfg.write_text(GOOD + f'\n[storage]\ndir = "{folder}"\n')
        proc = config_check(cfg)
        assert proc.returncode == 0 and "ok" in proc.stdout, (folder, proc.stderr)


def test_a_device_path_two_devices_name_is_refused_naming_both_lines():
    """Two scanners on one pty path: the second's link replaced the first's, and nothing could type
    into the first; two devices on one serial port fight over its bytes."""
    twice = GOOD + '\n[[scanner]]\nname = "back"\nurl = "pty:///tmp/./posd-test-scanner?suffix=LF"\n' \
        '\n[[card_reader]]\nurl = "msr+serial:///dev/ttyS9"\n\n[[card_reader]]\nname = "two"\n' \
        'url = "msr+serial:///dev/ttyS9?baudrate=19200"\n'
    with pytest.raises(ConfigError) as err:
        parse(twice)
    found = [(p.key, p.line, p.message) for p in err.value.problems]
    assert [(k, n) for k, n, _ in found] == [("scanner[1].url", 20), ("card_reader[1].url", 27)], found
    assert "/tmp/posd-test-scanner is already the device of scanner[0].url (line 13)" in found[0][2]
    assert "/dev/ttyS9 is already the device of card_reader[0].url (line 23)" in found[1][2]
    # tcp scanners and a preview printer name no device path: several may share a bridge or a folder
    assert parse(GOOD + '\n[[scanner]]\nname = "a"\nurl = "tcp://127.0.0.1:7001"\n'
                        '\n[[scanner]]\nname = "b"\nurl = "tcp://127.0.0.1:7001"\n')


@pytest.mark.parametrize("code, ok", [("PLN", True), ("EUR", True), ("IRR", True), ("USD", True), ("XOF", True),
                                      ("XYZ", False), ("pln", False), ("PL", False), ("XAU", False),
                                      ("XTS", False), ("XXX", False), ("ZZZ", False)])
def test_the_currency_is_an_iso_4217_currency_in_use(code, ok):
    text = GOOD.replace('locale = "pl"', f'locale = "pl"\ncurrency = "{code}"')
    if ok:
        assert parse(text).lane.currency == code
        return
    with pytest.raises(ConfigError) as err:
        parse(text)
    assert (err.value.key, err.value.line) == ("lane.currency", 6) and "ISO 4217" in str(err.value)


@pytest.mark.parametrize("lane_id, ok", [("L01", True), ("KASA-2", True), ("1.2a", True), ("KASA.2", False),
                                         ("1.3", False), ("L01.10", False)])
def test_a_lane_id_ending_in_a_number_after_a_dot_is_refused(lane_id, ok):
    """posd gives a lane whose ledger.db was replaced the id L01.2, and central counts a sale L01 and L01.2
    share once: two tills configured KASA.2 and KASA.3 would have refused each other's sales."""
    text = GOOD.replace('lane_id = "L01"', f'lane_id = "{lane_id}"', 1)
    if ok:
        assert parse(text).lane.lane_id == lane_id
        return
    with pytest.raises(ConfigError) as err:
        parse(text)
    assert err.value.key == "lane.lane_id" and "ends in .N" in str(err.value)


@pytest.mark.parametrize("folder, said", [("/proc/posd", "/proc refuses new folders"), ("/proc", "/proc refuses new files"),
                                          ("/sys/posd", "/sys refuses new folders")])
def test_a_storage_folder_the_kernel_refuses_is_named_by_config_check_as_run_names_it(tmp_path, folder, said):
    """os.access lets root write in /proc and /sys, where nothing can be made: config check said ok for
    storage.dir = "/proc/posd", and run then refused it without a line. Both name the key and its line."""
    cfg = tmp_path / "posd.toml"
    cfg.write_text(GOOD + f'\n[storage]\ndir = "{folder}"\n')
    for proc in (config_check(cfg), subprocess.run([sys.executable, "-m", "posd", "run", "--config", str(cfg)],
                                                   capture_output=True, text=True, timeout=60)):
        assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr
        assert "config error at 'storage.dir' (line 19)" in proc.stderr and said in proc.stderr, proc.stderr
    assert not (tmp_path / "posd.lock").exists() and not list(tmp_path.glob(".posd-check-*"))


def test_an_error_found_after_the_config_was_read_is_placed_on_its_line(tmp_path):
    """An error the daemon finds once running (a file changed since the check) names its key's line."""
    from posd.config import ConfigError, placed

    cfg = tmp_path / "posd.toml"
    cfg.write_text(GOOD + '\n[storage]\ndir = "state"\n')
    assert placed(ConfigError("gone", key="storage.dir"), cfg).line == 19
    assert placed(ConfigError("gone", key="scanner[0].url"), cfg).line == 13
    assert placed(ConfigError("gone", key="storage.dir"), tmp_path / "missing.toml").line is None
    assert placed(ConfigError("gone", key="storage.dir", line=3), cfg).line == 3


def test_config_check_refuses_a_printer_path_of_the_wrong_kind(tmp_path):
    """`config check` passed preview:// naming a file and file:// naming a folder; the daemon then started
    with its printer red (io_error)."""
    (tmp_path / "afile").write_text("")
    cfg = tmp_path / "posd.toml"
    for url, says in ((f"preview://{tmp_path / 'afile'}", f"{tmp_path / 'afile'} is a file, not a folder"),
                      (f"preview://{tmp_path / 'afile' / 'slips'}", f"{tmp_path / 'afile'} is a file, not a folder"),
                      (f"file://{tmp_path}", f"{tmp_path} is a folder: a file:// printer writes to a file")):
        cfg.write_text(_with_printer(url))
        proc = subprocess.run([sys.executable, "-m", "posd", "config", "check", str(cfg)],
                              capture_output=True, text=True, timeout=30)
        assert proc.returncode == 2 and says in proc.stderr and "'printer.url'" in proc.stderr, proc.stderr
    for url in (f"preview://{tmp_path / 'slips'}", f"file://{tmp_path / 'out.bin'}"):  # made at start: fine
        cfg.write_text(_with_printer(url))
        proc = subprocess.run([sys.executable, "-m", "posd", "config", "check", str(cfg)],
                              capture_output=True, text=True, timeout=30)
        assert proc.returncode == 0, proc.stderr


def _with_printer(url: str) -> str:
    head, _, rest = GOOD.partition("[printer]")
    tail = rest.split("\n[", 1)
    return f'{head}[printer]\nurl = "{url}"\n' + (f"\n[{tail[1]}" if len(tail) > 1 else "")


def test_every_command_reads_posd_config_when_no_config_is_given(tmp_path):
    """$POSD_CONFIG set the default of run, doctor, scan and the ledger commands but not of config check,
    and set empty it named "." ("cannot read .: Is a directory")."""
    cfg = tmp_path / "posd.toml"
    cfg.write_text(GOOD)
    env = {**os.environ, "POSD_CONFIG": str(cfg)}
    proc = subprocess.run([sys.executable, "-m", "posd", "config", "check"], capture_output=True, text=True,
                          timeout=30, env=env)
    assert proc.returncode == 0 and str(cfg) in proc.stdout, proc.stderr
    proc = subprocess.run([sys.executable, "-m", "posd", "config", "check"], capture_output=True, text=True,
                          timeout=30, env={**env, "POSD_CONFIG": ""}, cwd=tmp_path)
    # the installed config, whether or not this machine has one
    assert "/etc/posd/posd.toml" in proc.stdout + proc.stderr and "Is a directory" not in proc.stderr


def test_a_device_path_naming_a_file_of_the_storage_folder_is_refused(tmp_path):
    """pty://state/ledger.db (a typo for state/scanner0) passed config check; posd kept the file safe but
    the scanner never worked, and `posd scan` advised moving ledger.db away (a new lane history)."""
    cfg = tmp_path / "posd.toml"
    for url, name in (("pty://state/ledger.db", "ledger.db"), (f"serial://{tmp_path}/state/api.token", "api.token"),
                      ("pty://state/cache.db-wal", "cache.db-wal")):
        cfg.write_text(GOOD + f'\n[storage]\ndir = "state"\n\n[[scanner]]\nname = "typo"\nurl = "{url}"\n')
        proc = config_check(cfg)
        assert proc.returncode == 2 and f"is {name}, a file of the lane's storage folder" in proc.stderr, proc.stderr
        assert "scanner[" in proc.stderr and "line" in proc.stderr
    cfg.write_text(GOOD + '\n[storage]\ndir = "state"\n\n[[scanner]]\nname = "ok"\nurl = "pty://state/scanner0"\n')
    assert config_check(cfg).returncode == 0


def test_a_printer_or_the_api_token_on_a_file_posd_keeps_or_reads_is_refused(tmp_path):
    """config check passed a file:// printer at the store secret or at posd.toml itself (the first slip
    wrote over it: posd could not start again, and the secret had to come from central's operators), and
    at the boot counter or the quarantine acknowledgement. The API token at the store secret handed the
    POS the HMAC secret as its token; at posd.lock, the daemon's pid was the token; at ledger.db, posd
    wrote its databases and only then refused the token."""
    secret = tmp_path / "store.secret"
    secret.write_text("s3cret\n")
    secret.chmod(0o600)
    cfg = tmp_path / "posd.toml"
    base = GOOD.replace('store_secret = "x"', f'store_secret_file = "{secret}"')
    for url, said in ((f"file://{secret}", "the store secret (central.store_secret_file)"),
                      (f"file://{cfg}", "this config file"),
                      ("file://state/event-boot", "event-boot, a file of the lane's storage folder"),
                      ("file://state/quarantine-acknowledged", "quarantine-acknowledged, a file of the lane's")):
        cfg.write_text(_with_printer(url).replace('store_secret = "x"', f'store_secret_file = "{secret}"')
                       + '\n[storage]\ndir = "state"\n')
        proc = config_check(cfg)
        assert proc.returncode == 2 and f"is {said}" in proc.stderr and "printer.url" in proc.stderr, proc.stderr
    for token, said in ((str(secret), "the store secret"), ("posd.lock", "posd.lock, a file of the lane's"),
                        ("ledger.db", "ledger.db, a file of the lane's")):
        cfg.write_text(base + f'\n[storage]\ndir = "state"\n\n[api]\ntoken_file = "{token}"\n')
        proc = config_check(cfg)
        assert proc.returncode == 2 and f"is {said}" in proc.stderr and "api.token_file" in proc.stderr, proc.stderr
        line = cfg.read_text().splitlines().index(f'token_file = "{token}"') + 1
        assert "the API token needs a file of its own" in proc.stderr and f"line {line}" in proc.stderr, proc.stderr
    run = subprocess.run([sys.executable, "-m", "posd", "run", "--config", str(cfg)], capture_output=True,
                         text=True, timeout=60)
    assert run.returncode == 2 and "api.token_file" in run.stderr, run.stderr
    linked = tmp_path / "printer.out"  # the store secret by another name: the same file written over
    os.link(secret, linked)
    cfg.write_text(_with_printer(f"file://{linked}").replace('store_secret = "x"', f'store_secret_file = "{secret}"'))
    proc = config_check(cfg)
    assert proc.returncode == 2 and "is the store secret (central.store_secret_file)" in proc.stderr, proc.stderr
    linked.unlink()
    assert not (tmp_path / "state").exists()  # refused before anything was written
    cfg.write_text(base + '\n[storage]\ndir = "state"\n\n[api]\ntoken_file = "pos.token"\n')
    assert config_check(cfg).returncode == 0


def _certificate(folder: Path, name: str) -> tuple[Path, Path]:
    """A self-signed client certificate and its key, PEM, in files of their own."""
    import datetime as dt

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = dt.datetime.now(dt.UTC)
    cert = (x509.CertificateBuilder().subject_name(subject).issuer_name(subject).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now)
            .not_valid_after(now + dt.timedelta(days=1)).sign(key, hashes.SHA256()))
    cert_path, key_path = folder / f"{name}.crt", folder / f"{name}.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return cert_path, key_path


def test_a_client_certificate_and_key_that_do_not_load_together_are_named(tmp_path):
    """A client_key that was a certificate, another certificate's key, or a certificate with no key
    passed config check: every contact with central then failed with an SSLError naming no file."""
    cert, key = _certificate(tmp_path, "lane")
    _, other_key = _certificate(tmp_path, "other")
    cfg = tmp_path / "posd.toml"

    def check(tls: str) -> subprocess.CompletedProcess:
        cfg.write_text(GOOD.replace('store_secret = "x"', 'store_secret = "x"\n' + tls)
                       .replace('"http://127.0.0.1:8780"', '"https://127.0.0.1:8780"'))
        return config_check(cfg)

    for tls, key_named, said in ((f'client_cert = "{cert}"\nclient_key = "{cert}"', "central.client_key", str(cert)),
                                 (f'client_cert = "{cert}"\nclient_key = "{other_key}"', "central.client_key",
                                  str(other_key)),
                                 (f'client_cert = "{cert}"', "central.client_cert", "central.client_key")):
        proc = check(tls)
        assert proc.returncode == 2 and key_named in proc.stderr and said in proc.stderr, (tls, proc.stderr)
        assert "(line 1" in proc.stderr, proc.stderr
    assert check(f'client_cert = "{cert}"\nclient_key = "{key}"').returncode == 0
    from cryptography.hazmat.primitives import serialization

    locked = tmp_path / "locked.key"  # a passphrase nothing gives (TLS to central takes none): named
    locked.write_bytes(serialization.load_pem_private_key(key.read_bytes(), None).private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.BestAvailableEncryption(b"secret")))
    proc = check(f'client_cert = "{cert}"\nclient_key = "{locked}"')
    assert proc.returncode == 2 and "central.client_key" in proc.stderr and str(locked) in proc.stderr, proc.stderr
    both = tmp_path / "both.pem"
    both.write_bytes(cert.read_bytes() + key.read_bytes())
    assert check(f'client_cert = "{both}"').returncode == 0


def test_every_bad_setting_of_one_device_url_is_named_at_once():
    """serial:///dev/ttyUSB0?suffix=XX&parity=Q named parity only; suffix came up on the next run."""
    with pytest.raises(ConfigError) as err:
        parse(GOOD + '\n[[scanner]]\nname = "s2"\nurl = "serial:///dev/ttyUSB9?baudrate=9600&suffix=XX&zz=1&parity=Q"\n',
              source="/etc/posd/posd.toml")
    told = str(err.value)
    assert "suffix='XX'" in told and "parity='Q'" in told and told.index("suffix='XX'") < told.index("parity='Q'"), told
    assert "unknown parameter 'zz'" in told, told  # an unknown one beside them, not a round of its own
