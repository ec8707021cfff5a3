"""A bad config stops with a message naming the key and line, never a traceback."""

import subprocess
import sys

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


def test_remote_listen_needs_explicit_permission():
    text = GOOD + '\n[api]\nlisten = "0.0.0.0:8765"\n'
    with pytest.raises(ConfigError) as err:
        parse(text)
    assert err.value.key == "api"
    assert parse(text.replace('listen = "0.0.0.0:8765"', 'listen = "0.0.0.0:8765"\nallow_remote = true'))


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
                   + '\n[storage]\ndir = "state"\n')
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
    assert proc.returncode == 2 and "not valid hex" in proc.stderr and "client_cert" not in proc.stderr
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
    cfg.write_text(GOOD + '\n[storage]\ndir = "disk/state"\n')  # found only when posd creates it
    proc = subprocess.run([sys.executable, "-m", "posd", "run", "--config", str(cfg)],
                          capture_output=True, text=True, timeout=30)
    assert proc.returncode == 2, proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1 and "Traceback" not in proc.stderr
    assert "disk/state" in proc.stderr and "Not a directory" in proc.stderr
