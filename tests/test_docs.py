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
    paths = {r.path for r in app.routes if r.path.startswith(("/v1", "/metrics"))}
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
