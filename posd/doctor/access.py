"""May a user read or write a path? By the file's owner, group and mode, as the kernel decides
for a process of that user (no ACLs, no capabilities: posd runs with none)."""

from __future__ import annotations

import fcntl
import grp
import os
import pwd
import stat
import struct
from pathlib import Path
from typing import Any

_BITS = {"r": 4, "w": 2, "x": 1}
_FS_IOC_GETFLAGS = 0x80086601  # linux/fs.h: a file's attributes (chattr), readable by anyone who may open it
_FS_IMMUTABLE_FL, _FS_APPEND_FL = 0x10, 0x20


def may(st: os.stat_result, uid: int, gids: set[int], want: str) -> bool:
    if uid == 0:
        return True
    mode = stat.S_IMODE(st.st_mode)
    shift = 6 if st.st_uid == uid else (3 if st.st_gid in gids else 0)
    need = sum(_BITS[c] for c in want)
    return (mode >> shift) & need == need


def frozen(path: Path) -> str | None:
    """Why no user, root included, may write ``path`` whatever its mode: "read_only" (its file system is
    mounted read-only), "immutable" (chattr +i, or +a: append only, which SQLite cannot write either);
    None when nothing but the mode decides."""
    try:
        if os.statvfs(path).f_flag & os.ST_RDONLY:
            return "read_only"
    except OSError:
        return None
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    except OSError:
        return None
    try:
        flags = struct.unpack("i", fcntl.ioctl(fd, _FS_IOC_GETFLAGS, struct.pack("i", 0)))[0]
    except OSError:  # a file system without attributes (tmpfs has them; some FUSE ones do not)
        return None
    finally:
        os.close(fd)
    return "immutable" if flags & (_FS_IMMUTABLE_FL | _FS_APPEND_FL) else None


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

