"""Docs are tested: every API route, config key and CLI command is documented."""

from __future__ import annotations

import re
from pathlib import Path

from pydantic import BaseModel

from posd import config as config_module
from posd.cli import build_parser

ROOT = Path(__file__).parent.parent
README = (ROOT / "README.md").read_text()
EXAMPLE = (ROOT / "config" / "posd.example.toml").read_text()


def test_readme_starts_with_the_two_setup_commands():
    block = re.search(r"```sh\n(.*?)```", README, re.S).group(1).strip().splitlines()
    assert [line.split("#")[0].strip() for line in block] == ["make run", "make test"]
    assert "make test" in (ROOT / ".ci" / "run").read_text()


def test_every_api_route_is_in_the_readme():
    from posd.api.app import create_app

    app = create_app(lane=None, bus=None, token="t", host="127.0.0.1", port=1, health=dict, metrics=str)
    paths = {r.path_format for r in app.routes if r.path.startswith(("/v1", "/metrics"))}  # no `:path`
    missing = {p for p in paths if f"`{p}`" not in README and f" {p}`" not in README}
    assert not missing, f"undocumented routes: {sorted(missing)}"


def test_every_config_key_is_in_the_example_config():
    for section_name, field in config_module.Config.model_fields.items():
        if section_name == "source":
            continue
        model = field.annotation
        if getattr(model, "__origin__", None) is tuple:
            model = model.__args__[0]
        assert f"[{section_name}]" in EXAMPLE or f"[[{section_name}]]" in EXAMPLE, section_name
        if isinstance(model, type) and issubclass(model, BaseModel):
            for key in model.model_fields:
                assert re.search(rf"^#?\s*{key}\s*=", EXAMPLE, re.M), f"{section_name}.{key} not in the example"


def test_every_cli_command_is_in_the_readme():
    parser = build_parser()
    sub = next(a for a in parser._actions if a.dest == "command")
    for name in sub.choices:
        assert f"posd {name}" in README, name


def test_the_docs_say_which_relative_paths_are_under_storage_dir_and_which_beside_the_config(tmp_path):
    """[api] token_file is under storage.dir (installed lanes rely on it); every other path is beside the
    config file. README and the example config's header said all were beside the config."""
    etc = tmp_path / "etc"
    cfg = config_module.parse(
        '[lane]\nstore_id = "S"\nlane_id = "L"\n[api]\ntoken_file = "state/api.token"\n[storage]\ndir = "state"\n'
        '[central]\nurl = "https://central.example"\nstore_secret_file = "store.secret"\nclient_cert = "lane.pem"\n'
        'client_key = "lane.key"\n[[scanner]]\nurl = "pty://scanner"\n', source=str(etc / "posd.toml"))
    assert config_module.resolve(cfg.storage_dir, cfg.api.token_file) == etc / "state" / "state" / "api.token"
    assert {key: path for key, _, path in config_module.referenced_files(cfg)} == {
        "central.store_secret_file": etc / "store.secret", "central.client_cert": etc / "lane.pem",
        "central.client_key": etc / "lane.key"}
    assert cfg.device_url(cfg.scanner[0].url) == f"pty://{etc.resolve()}/scanner"

    said = " ".join(README.split("Relative paths", 1)[1].split("Devices are configured", 1)[0].split())
    assert "except `[api] token_file`, which is relative to `storage.dir`" in said, said
    header = " ".join(line.lstrip("# ") for line in EXAMPLE.split("\n[lane]", 1)[0].splitlines())
    assert "except [api] token_file, which is relative to storage.dir" in header, header
    for key in ("[storage] dir", *(f"{key.split('.')[1]}" for key in config_module.REFERENCED_FILES)):
        assert key in said.replace("`", "") and key in header, key
    for scheme in config_module.PATH_SCHEMES:
        assert f"`{scheme}://`" in said, scheme


def test_the_readme_gives_the_exit_code_of_a_second_posd_on_one_storage_folder(tmp_path):
    """Refused with a clear message and exit 1 (not lasting: systemd starts it again once the first
    stopped, as docs/install.md says); README's list of `posd run`'s exit codes gave 1 to the listener alone."""
    import pytest

    from posd.storage.db import StorageUnavailable, hold_folder, release_folder

    first = hold_folder(tmp_path)
    try:
        with pytest.raises(StorageUnavailable, match="another posd") as err:
            hold_folder(tmp_path)
        assert err.value.lasting is False  # cmd_run: exit 1, not 2
        (tmp_path / "posd.lock").unlink()  # it looks like a stale pid file: the folder is held all the same
        with pytest.raises(StorageUnavailable, match="another posd"):
            hold_folder(tmp_path)
    finally:
        release_folder(first)
    release_folder(hold_folder(tmp_path))  # released: the next posd takes it
    codes = " ".join(README.split("Exit codes of `posd run`:", 1)[1].split("\n\n", 1)[0].split())
    one = codes.split("; 1 ", 1)[1].split("; 2 ", 1)[0]
    assert "another posd is already running on the same storage folder" in one, codes
    assert "could not listen" in one and "disk is full" in one, codes


def test_the_demos_hints_scan_what_the_readme_scans(capsys):
    """`make run` printed `--member-token M0001` where the README's walk has M0002: both worked, and a
    new user comparing the two did not know which to follow. The demo's hints are the README's lines."""
    from posd.demo import _print_try_this

    cfg = ROOT / "config" / "demo.toml"
    _print_try_this(cfg, config_module.load(str(cfg)), ROOT / "var" / "demo" / "api.token",
                    ROOT / "config" / "demo-seed.json")
    hints = re.findall(r"posd scan (--member-token \S+|--wallet-pass \S+|\d+) --config", capsys.readouterr().out)
    walk = re.findall(r"posd scan (--member-token \S+|--wallet-pass \S+|\d+) +--config", README)
    assert hints and hints == walk[:len(hints)], (hints, walk)
