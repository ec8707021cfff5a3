"""The seed file of the reference central: stores and their secrets, the program, members.

    {"stores": {"S001": {"secret": "..."}}, "program": {...}, "members": [member, ...]}

Read and checked here, before anything is written; members are checked one by
one as the store writes them (members.member_row), in the same transaction.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from posd.sync.protocol import secret_from_text


@dataclass(frozen=True)
class Seed:
    secrets: dict[str, bytes]  # store_id -> HMAC key
    program: dict[str, Any] | None
    members: list[Any]


def load_seed(path: str | Path) -> dict[str, Any]:
    """The seed file's JSON; ValueError naming the file (and line) when it cannot be read or is not JSON."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ValueError(f"seed file {path}: {getattr(exc, 'strerror', None) or exc}") from exc
    try:
        return json.loads(text)
    except ValueError as exc:
        raise ValueError(f"seed file {path}: {exc}") from exc


def parse_seed(doc: Any) -> Seed:
    """The seed's parts, or ValueError naming what is wrong."""
    if not isinstance(doc, dict):
        raise ValueError("seed must be a JSON object")
    stores, members = doc.get("stores", {}), doc.get("members", [])
    if not isinstance(stores, dict) or not isinstance(members, list):
        raise ValueError("seed needs 'stores' as an object and 'members' as a list")
    secrets = {}
    for store_id, entry in stores.items():
        if not isinstance(entry, dict) or not isinstance(entry.get("secret"), str):
            raise ValueError(f"seed store {store_id!r} needs a 'secret' string")
        try:
            secrets[store_id] = secret_from_text(entry["secret"])
        except ValueError as exc:
            raise ValueError(f"seed store {store_id!r}: {exc}") from exc
    program = doc.get("program")
    if program is not None and not isinstance(program, dict):
        raise ValueError("seed 'program' must be an object")
    return Seed(secrets, program, members)
