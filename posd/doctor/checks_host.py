"""posd doctor: the config, the files it names, storage, and the unit's hardening."""

from __future__ import annotations

import os
import re
import shutil
import stat
import subprocess
import tomllib
from datetime import UTC, datetime
from pathlib import Path

from posd.config import refuses_files
from posd.core.messages import format_duration
from posd.doctor import Context, Finding
from posd.doctor.access import describe, exists, frozen, may, may_reach, nearest_existing
from posd.storage.inspect import check_db, ledger_stats, running_user
from posd.storage.ledger import LaneIdentity, refusal

EXPOSURE_LIMIT = 1.5  # systemd-analyze security: the score the shipped unit keeps (docs/install.md)
GROWTH_WARN_DAYS = 30  # the disk fills within this many days at the ledger's recent pace: a warning
UNIT_PLACES = ("/etc/systemd/system/posd.service", "/lib/systemd/system/posd.service",
               "/usr/lib/systemd/system/posd.service")
SECRETS = ("central.store_secret_file", "central.client_key", "api.token_file")


def config(ctx: Context) -> list[Finding]:
    from posd.config import MAX_CONFIG_BYTES, ConfigError, load

    path = ctx.config_path
    try:
        ctx.config = load(path)  # the files it names are checked below, for the posd user
    except ConfigError as exc:
        if isinstance(exc.__cause__, PermissionError):  # another user (root, posd) may: said as whom
            return [Finding("config", "config", "fail", "denied", {"path": str(path), "runner": running_user()})]
        if isinstance(exc.__cause__, OSError):  # not there, not ours to read: said in the lane's language
            return [Finding("config", "config", "fail", "unreadable",
                            {"path": str(path), "message": exc.__cause__.strerror or str(exc.__cause__)})]
        try:  # read as load read it (bounded); a file it could not read as text has no language to find
            with path.open("rb") as f:
                ctx.fallback_locale = _locale_of(f.read(MAX_CONFIG_BYTES).decode("utf-8"))
        except (OSError, UnicodeDecodeError):
            pass
        # A mistake of the file as a whole (not UTF-8, too large, TOML that ends early) has no key or
        # line: its message alone, as `posd config check` says it.
        return [Finding("config", "config", "fail", "error" if p.key or p.line else "file",
                        {"where": _where(p.key, p.line), "message": p.message, "config_key": p.key, "line": p.line,
                         "message_code": p.code, "message_params": dict(p.params)})
                for p in exc.problems]
    cfg = ctx.config
    return [Finding("config", "config", "ok", "ok", {"path": str(path), "store": cfg.lane.store_id,
                                                    "lane": cfg.lane.lane_id})]


def config_access(ctx: Context) -> list[Finding]:
    """What the config's own file tells beyond its content: posd's user must read it, and when it holds
    the store secret inline no one else may."""
    path = ctx.config_path
    try:
        st = path.stat()
    except OSError:
        return []
    params = {"path": str(path), "user": ctx.user, **describe(path)}
    if not (may(st, ctx.uid, ctx.gids, "r") and may_reach(path, ctx.uid, ctx.gids)):
        return [Finding("config", "config.access", "fail", "unreadable_by", params)]
    if ctx.config.central.store_secret is not None and st.st_mode & 0o004:
        return [Finding("config", "config.access", "warn", "secret_readable", params)]
    return []


def _where(key: str | None, line: int | None) -> str | None:
    """Where a config mistake is written: its key and line, or None for one of the file as a whole."""
    return " ".join(x for x in (key or "", f"(line {line})" if line else "") if x) or None


def _locale_of(text: str) -> str | None:
    """The lane's language from a config that does not validate, when its [lane] locale is readable."""
    try:
        locale = tomllib.loads(text).get("lane", {}).get("locale")
    except (tomllib.TOMLDecodeError, AttributeError):
        return None
    return locale if locale in ("pl", "fa", "en") else None


def files(ctx: Context) -> list[Finding]:
    from posd.config import ConfigError, client_cert_problem, read_token, referenced_files, resolve

    cfg = ctx.config
    out = []
    named = [(key, path) for key, _, path in referenced_files(cfg)]
    named.append(("api.token_file", resolve(cfg.storage_dir, cfg.api.token_file)))
    for key, path in named:
        what = ctx.tr(f"doctor.what.{key.split('.', 1)[1]}")
        params = {"what": what, "path": str(path), "user": ctx.user, "config_key": key, **describe(path)}
        found = exists(path)
        if found is None:  # doctor's own user may not look: it says so, and guesses nothing for posd
            out.append(Finding("files", f"files.{key}", "warn", "denied", {**params, "runner": running_user()}))
            continue
        if not found:
            if key == "api.token_file" and ctx.health is not None:  # posd runs: it made the file at its start
                out.append(Finding("files", f"files.{key}", "warn", "gone", params))
            elif key == "api.token_file":
                out.append(Finding("files", f"files.{key}", "ok", "not_yet", params))
            else:
                out.append(Finding("files", f"files.{key}", "fail", "missing", params))
            continue
        st = path.stat()
        if not stat.S_ISREG(st.st_mode):  # a folder where the file should be: no user reads it
            out.append(Finding("files", f"files.{key}", "fail", "not_file", params))
            continue
        if not (may(st, ctx.uid, ctx.gids, "r") and may_reach(path, ctx.uid, ctx.gids)):
            out.append(Finding("files", f"files.{key}", "fail", "unreadable", params))
            continue
        if key in ("central.store_secret_file", "api.token_file"):
            try:
                cfg.central.secret_bytes(cfg.base_dir) if key == "central.store_secret_file" else read_token(path)
            except ConfigError as exc:
                out.append(Finding("files", f"files.{key}", "fail", "invalid",
                                   {**params, "message": exc.problems[0].message}))
                continue
        if key in SECRETS and st.st_mode & 0o007:
            out.append(Finding("files", f"files.{key}", "warn", "mode", params))
            continue
        out.append(Finding("files", f"files.{key}", "ok", "ok", params))
    central = cfg.central
    failed = {f.check.removeprefix("files.") for f in out if f.result == "fail" or f.code == "denied"}
    said = client_cert_problem(central.client_cert, central.client_key, cfg.base_dir, failed)
    if said is not None:  # each file readable, the pair not one TLS loads: every contact with central fails
        key, message = said
        out = [f for f in out if f.check != f"files.{key}"]  # the failure says more than a mode warning
        path = resolve(cfg.base_dir, getattr(central, key.split(".", 1)[1]) or "")
        out.append(Finding("files", f"files.{key}", "fail", "invalid",
                           {"what": ctx.tr(f"doctor.what.{key.split('.', 1)[1]}"), "path": str(path),
                            "user": ctx.user, "config_key": key, **describe(path), "message": message}))
    return out


def _state_directories(ctx: Context) -> set[Path]:
    """The folders systemd makes for posd's unit before it starts it (StateDirectory=, under /var/lib)."""
    unit = ctx.unit or next((p for p in UNIT_PLACES if Path(p).is_file()), None)
    try:
        text = Path(unit).read_text(encoding="utf-8") if unit else ""
    except (OSError, UnicodeDecodeError):
        return set()
    names = [name for line in text.splitlines() if line.strip().startswith("StateDirectory=")
             for name in line.split("=", 1)[1].split()]
    return {Path("/var/lib") / name.split(":")[0] for name in names}


def storage(ctx: Context) -> list[Finding]:
    cfg = ctx.config
    folder = cfg.storage_dir
    out = []
    target = folder if folder.is_dir() else nearest_existing(folder)
    refused = refuses_files(target) if target.is_dir() and os.access(target, os.W_OK | os.X_OK) else None
    if refused:  # /proc, /sys: the modes let root write, the kernel makes nothing there
        out.append(Finding("storage", "storage.dir", "fail", "dir_refused", {"path": str(folder), "folder": str(target),
                                                                            "reason": refused}))
    elif exists(folder) is None:
        out.append(Finding("storage", "storage.dir", "warn", "dir_denied", {"path": str(folder),
                                                                            "runner": running_user()}))
    elif folder.is_dir():
        writable = may(folder.stat(), ctx.uid, ctx.gids, "wx") and may_reach(folder, ctx.uid, ctx.gids)
        why = frozen(folder)
        if why:  # a read-only mount, chattr +i: the modes say yes, the kernel says no to everyone
            out.append(Finding("storage", "storage.dir", "fail", "dir_frozen",
                               {"path": str(folder), "reason": ctx.tr(f"doctor.why.{why}")}))
        else:
            out.append(Finding("storage", "storage.dir", "ok" if writable else "fail",
                               "dir_ok" if writable else "dir_unwritable",
                               {"path": str(folder), "user": ctx.user, **describe(folder)}))
    elif exists(folder):  # a file (or a device) where the folder should be
        out.append(Finding("storage", "storage.dir", "fail", "dir_not_folder", {"path": str(folder)}))
    else:  # posd makes it at its first start, if its user may write in the folder above that is there,
        # or systemd does before it starts posd (the unit's StateDirectory=, /var/lib/posd as shipped)
        above = nearest_existing(folder)
        if folder in _state_directories(ctx) or above.is_dir() and may(above.stat(), ctx.uid, ctx.gids, "wx") \
                and may_reach(above, ctx.uid, ctx.gids):
            out.append(Finding("storage", "storage.dir", "warn", "dir_missing", {"path": str(folder)}))
        else:
            out.append(Finding("storage", "storage.dir", "fail", "dir_unmakable",
                               {"path": str(folder), "above": str(above), "user": ctx.user, **describe(above)}))
    usage = shutil.disk_usage(nearest_existing(folder))
    minimum = cfg.storage.min_free_mb * 2**20
    sizes = {"free": _size(ctx, usage.free), "total": _size(ctx, usage.total), "min": _size(ctx, minimum),
             "free_bytes": usage.free, "total_bytes": usage.total, "min_bytes": minimum,
             "mount": str(_mount_point(nearest_existing(folder)))}
    state = "disk_full" if usage.free < FULL_BELOW else "disk_ok" if usage.free >= minimum else "disk_low"
    out.append(Finding("storage", "storage.disk", "ok" if state == "disk_ok" else "fail", state, sizes))
    folder_failed = any(f.check == "storage.dir" and f.result == "fail" for f in out)
    ctx.ledger = check_db(folder / "ledger.db")
    ctx.cache = check_db(folder / "cache.db")
    # What makes posd run refuse the ledger beyond its integrity: asked of the ledger's own checks
    refused = refusal(ctx.ledger.path, LaneIdentity(cfg.lane.store_id, cfg.lane.lane_id))
    for db, corrupt in ((ctx.ledger, "ledger_corrupt"), (ctx.cache, "cache_corrupt")):
        check = f"storage.{db.path.stem}"
        if db is ctx.ledger and refused and (refused.code == "not_file" or not (db.denied or db.unreadable
                                                                                or db.problem)):
            out.append(Finding("storage", check, "fail", f"ledger_{refused.code}",
                               {"file": db.path.name, "path": str(db.path), **refused.params}))
        elif not db.exists and not folder_failed:
            out.append(Finding("storage", check, "warn", "db_missing", {"file": db.path.name}))
        elif db.denied:  # doctor's own user may not read it: nothing is known of its pages
            out.append(Finding("storage", check, "warn", "db_denied", {"file": db.path.name, "path": str(db.path),
                                                                       "reason": db.unreadable,
                                                                       "runner": running_user()}))
        elif folder_failed and (db.unreadable or not db.exists):  # its folder's fault, said above
            out.append(Finding("storage", check, "skip", "db_folder", {"file": db.path.name}))
        elif db.unreadable:
            out.append(Finding("storage", check, "fail", "db_unreadable", {"file": db.path.name, "path": str(db.path),
                                                                           "reason": db.unreadable}))
        elif db.problem:
            out.append(Finding("storage", check, "fail", corrupt, {"file": db.path.name, "problem": db.problem}))
        elif unwritable := _unwritable(ctx, db.path):
            out.append(Finding("storage", check, "fail", "db_unwritable", unwritable))
        else:
            out.append(Finding("storage", check, "ok", "db_ok", {"file": db.path.name, "size": _size(ctx, db.size),
                                                                 "bytes": db.size}))
    if ctx.ledger.exists and not (ctx.ledger.problem or ctx.ledger.unreadable or refused):
        out += _growth(ctx, usage.free)
    return out


FULL_BELOW = 2**20  # less free than this is a full disk: a sale's commit may not fit any more


def _mount_point(path: Path) -> Path:
    """The mount point of the file system ``path`` is on: which disk, as `df` names it."""
    path = path.resolve()
    while not os.path.ismount(path) and path != path.parent:
        path = path.parent
    return path


def _unwritable(ctx: Context, db: Path) -> dict[str, str] | None:
    """Why posd's user could not open ``db`` (or its -wal or -shm, when there) for writing, as posd run
    must: None when it could. A ledger restored as root, or made immutable, passes its integrity
    check and still stops posd from starting."""
    for path in (db, db.with_name(db.name + "-wal"), db.with_name(db.name + "-shm")):
        if exists(path) is not True:
            continue
        why = frozen(path)
        if why:
            reason = ctx.tr(f"doctor.why.{why}")
        elif not may(path.stat(), ctx.uid, ctx.gids, "w"):
            reason = ctx.tr("doctor.why.mode", **describe(path))
        else:
            continue
        return {"file": path.name, "path": str(path), "user": ctx.user, "reason": reason}
    return None


DAY_S = 86400.0


def _growth(ctx: Context, free: int) -> list[Finding]:
    """How fast the ledger grows, from the events of the last days and the bytes each costs so far."""
    try:
        stats = ledger_stats(ctx.ledger.path)
    except Exception:  # an old or foreign schema: quick_check passed, the figures are just unknown
        return []
    ctx.ledger_stats = stats
    if not stats.events or not stats.events_recent:
        return []
    # The window the recent events span: the last `days` days, or less on a younger ledger (at least a
    # day, so a ledger of a few minutes is not read as a year's growth).
    age_s = (datetime.now(UTC) - stats.first_recent_at).total_seconds() if stats.first_recent_at else 0.0
    window_s = min(stats.days * DAY_S, max(DAY_S, age_s))
    # Bytes per event from the pages the rows fill: a young ledger's file is mostly its empty tables and
    # its -wal, which a checkpoint recycles.
    per_day = stats.row_bytes / stats.events * stats.events_recent / (window_s / DAY_S)
    days_left = int(free / per_day) if per_day else None
    params = {"rate": _size(ctx, per_day), "events": stats.events_recent, "bytes_per_day": int(per_day),
              "window": format_duration(ctx.locale, window_s), "window_s": round(window_s)}
    if days_left is not None and days_left < GROWTH_WARN_DAYS:
        return [Finding("storage", "storage.growth", "warn", "growth_full", {**params, "days": days_left})]
    return [Finding("storage", "storage.growth", "ok", "growth", params)]


def _size(ctx: Context, n: float) -> str:
    from posd.core.messages import format_size

    return format_size(ctx.locale, n) or "-"


def unit(ctx: Context) -> list[Finding]:
    tool = shutil.which("systemd-analyze")
    if tool is None:
        return [Finding("unit", "unit.security", "skip", "absent")]
    if ctx.unit:
        target, args = ctx.unit, ["--offline=yes", ctx.unit]
    elif Path("/run/systemd/system").is_dir():
        target, args = "posd.service", ["posd.service"]
    else:
        found = next((p for p in UNIT_PLACES if Path(p).is_file()), None)
        if found is None:
            return [Finding("unit", "unit.security", "skip", "no_unit")]
        target, args = found, ["--offline=yes", found]
    try:
        run = subprocess.run([tool, "security", "--no-pager", *args], capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return [Finding("unit", "unit.security", "warn", "unknown", {"unit": target, "message": str(exc)})]
    score = re.search(r"Overall exposure level for \S+: (\d+(?:\.\d+)?)", run.stdout)
    if not score:
        message = (run.stderr or run.stdout).strip().splitlines()
        return [Finding("unit", "unit.security", "warn", "unknown",
                        {"unit": target, "message": message[-1] if message else f"exit {run.returncode}"})]
    value = float(score.group(1))
    params = {"unit": target, "score": value, "limit": EXPOSURE_LIMIT}
    if value > EXPOSURE_LIMIT:
        return [Finding("unit", "unit.security", "warn", "exposed", params)]
    return [Finding("unit", "unit.security", "ok", "ok", params)]
