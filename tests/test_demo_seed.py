"""The demo program's rules change only with its version.

`posd demo` keeps central.db beside its storage folder and seeds it at every start; central refuses a
seed whose program changes the rules of the version it publishes (lanes that earned under it refuse
them too). A demo folder from an earlier checkout would then not start: a change to the demo program's
rules must come with a new "version", and its digest here.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

SEED = Path(__file__).parent.parent / "config" / "demo-seed.json"

# version -> sha256 of the program without its version and member-token keys (as central compares them)
RULES_OF = {"demo-2026.12": "e14bc9394c4da5a06a84d283d9e80768ec2d2dea12bbf9dc3c7ad415d5e09fee"}


def test_the_demo_programs_rules_change_only_with_its_version():
    program = json.loads(SEED.read_text())["program"]
    rules = {k: v for k, v in program.items() if k not in ("version", "member_tokens")}
    digest = hashlib.sha256(json.dumps(rules, sort_keys=True, ensure_ascii=False).encode()).hexdigest()
    assert RULES_OF.get(program["version"]) == digest, (
        f"config/demo-seed.json's program changed under version {program['version']!r}: give it a new "
        f"version and put {digest} under it here")
