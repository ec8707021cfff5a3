"""May a user read or write a path? By the file's owner, group and mode, as the kernel decides
for a process of that user (no ACLs, no capabilities: posd runs with none)."""

from __future__ import annotations

import grp
import os
import pwd
import stat
from pathlib import Path
from typing import Any

_BITS = {"r": 4, "w": 2, "x": 1}


def may(st: os.stat_result, uid: int, gids: set[int], want: str) -> bool:
    if uid == 0:
        return True
    mode = stat.S_IMODE(st.st_mode)
    shift = 6 if st.st_uid == uid else (3 if st.st_gid in gids else 0)
    need = sum(_BITS[c] for c in want)
    return (mode >> shift) & need == need


def may_reach(path: Path, uid: int, gids: set[int]) -> bool:
    """Can the user traverse every folder above ``path``?"""
    for folder in list(path.parents)[::-1]:
        try:
            if not may(folder.stat(), uid, gids, "x"):
                return False
        except OSError:
            return False
    return True


def describe(path: Path) -> dict[str, Any]:
    """owner, group and mode of ``path`` (following links), for messages."""
    try:
        st = path.stat()
    except OSError:
        return {"owner": "?", "group": "?", "mode": "?"}
    return {"owner": _user(st.st_uid), "group": _group(st.st_gid), "mode": f"{stat.S_IMODE(st.st_mode):04o}"}


def _user(uid: int) -> str:
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return str(uid)


def _group(gid: int) -> str:
    try:
        return grp.getgrgid(gid).gr_name
    except KeyError:
        return str(gid)


def nearest_existing(path: Path) -> Path:
    while exists(path) is not True and path != path.parent:
        path = path.parent
    return path


def exists(path: Path) -> bool | None:
    """Does ``path`` exist? None when this process may not look (a folder above it it cannot enter)."""
    try:
        path.stat()
    except PermissionError:
        return None
    except OSError:
        return False
    return True

