"""The demo program's rules change only with its version.

`posd demo` keeps central.db beside its storage folder and seeds it at every start; central refuses a
seed whose program changes the rules of the version it publishes (lanes that earned under it refuse
them too). A demo folder from an earlier checkout would then not start: a change to the demo program's
rules must come with a new "version", and its digest here.
"""

from __future__ import annotations

import json
from pathlib import Path

from posd.sync.central.store_sql import rules_digest

SEED = Path(__file__).parent.parent / "config" / "demo-seed.json"

# version -> the program's digest as central compares programs under one version (rules_digest)
RULES_OF = {"demo-2026.12": "2531db4659cfd85d458c14900bc30fe312ec2aaaea6b347cb135c3ca9b890c19"}


def test_the_demo_programs_rules_change_only_with_its_version():
    program = json.loads(SEED.read_text())["program"]
    digest = rules_digest(program)
    assert RULES_OF.get(program["version"]) == digest, (
        f"config/demo-seed.json's program changed under version {program['version']!r}: give it a new "
        f"version and put {digest} under it here")
