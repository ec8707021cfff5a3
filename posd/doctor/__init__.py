"""`posd doctor`: the one command store IT runs when something is off.

It checks, in order, and explains in the lane's language: the config (every
mistake), the files it names (exist, readable by the posd user, mode),
storage (free disk, integrity of both databases, ledger size and growth),
each configured device (present, openable by the posd user, its group and
udev rule, the printer's own status by DLE EOT), central (DNS, TCP, TLS, a
signed request accepted, clock skew), sync and cache, the running daemon
(health, version, uptime, what it reports) and the unit's hardening
(systemd-analyze security). Every finding has a stable ``check`` and
``code`` for fleet tools (``--json``); the exit status is 1 when anything
failed. It only reads: no database is opened for writing, nothing is
created, the daemon keeps running.
"""

from __future__ import annotations

import json
import os
import pwd
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from posd.core.messages import calendar_of, format_datetime, format_decimal, format_number, has_message, message

RESULTS = ("ok", "warn", "fail", "skip")


@dataclass(frozen=True)
class Finding:
    area: str  # config, files, storage, devices, central, sync, cache, daemon, unit
    check: str  # stable, e.g. files.store_secret_file, devices.front, central.tls
    result: str  # ok | warn | fail | skip
    code: str  # the message: doctor.<area>.<code>, or "skipped"
    params: dict[str, Any] = field(default_factory=dict)

    def text(self, locale: str) -> str:
        key = "doctor.skipped" if self.code == "skipped" else f"doctor.{self.area}.{self.code}"
        params = {k: _show(locale, k, v) for k, v in self.params.items()}
        said = self.params.get("message_code")
        if self.area == "config" and said and has_message(locale, said):  # the mistake in the lane's language
            given = dict(self.params.get("message_params") or {})
            if "got" in given:
                given["got"] = message(locale, f"config.got.{given['got']}") \
                    if has_message(locale, f"config.got.{given['got']}") else given["got"]
            params["message"] = message(locale, said, **given)
        if self.area == "config" and "config_key" in self.params:  # the line, as the locale writes figures
            line = self.params.get("line")
            params["where"] = " ".join(x for x in (self.params["config_key"] or "", message(
                locale, "doctor.config.line", line=format_number(locale, line)) if line else "") if x) or "-"
        try:
            return message(locale, key, **params)
        except (KeyError, IndexError):  # a placeholder the caller did not fill: say it raw, never crash
            return f"{key} {params}"

    def as_json(self, locale: str) -> dict[str, Any]:
        return {"area": self.area, "check": self.check, "result": self.result, "code": self.code,
                "message": self.text(locale), "details": {k: v for k, v in self.params.items()
                                                          if isinstance(v, (str, int, float, bool, type(None)))}}


# Figures that are names rather than amounts keep their ASCII digits in every language: what store IT
# types or looks up as written (a port, an HTTP status, a file mode, a version).
VERBATIM = frozenset({"port", "status", "mode", "version", "running", "installed", "code"})
DATES = frozenset({"until"})  # YYYY-MM-DD: the locale's calendar and digits (Jalali for fa)


def _show(locale: str, key: str, value: Any) -> Any:
    """A parameter as the message shows it: every amount in the locale's digits (Persian for fa)."""
    if value is None:
        return "-"
    if isinstance(value, bool) or key in VERBATIM:
        return value
    if isinstance(value, int):
        return format_number(locale, value)
    if isinstance(value, float):
        whole = int(value)
        if value == whole:
            return format_number(locale, whole)
        return format_decimal(locale, f"{value:.2f}".rstrip("0").rstrip("."))
    if key in DATES and isinstance(value, str):
        return format_datetime(locale, value, calendar=calendar_of(locale))
    return value


@dataclass
class Context:
    """What the checks share: the config (when it loaded), whose access counts, the language, options."""

    config_path: Path
    user: str
    locale: str
    config: Any = None
    uid: int = 0
    gids: set[int] = field(default_factory=set)
    unit: str | None = None  # a unit file to score instead of the installed posd.service
    health: dict[str, Any] | None = None  # the running daemon's, when it answers
    health_error: str | None = None  # why it did not
    foreign: dict[str, Any] | None = None  # the health of a posd of another store or lane on the port
    fallback_locale: str | None = None  # [lane] locale of a config that does not validate
    ledger: Any = None  # posd.storage.inspect.DbCheck of ledger.db and cache.db, once storage was checked
    cache: Any = None
    ledger_stats: Any = None

    def tr(self, key: str, **params: Any) -> str:
        return message(self.locale, key, **params)


def resolve_user(name: str) -> tuple[str, int, set[int]]:
    """The user whose access is checked; the one running doctor when ``name`` does not exist here."""
    try:
        pw = pwd.getpwnam(name)
    except KeyError:
        pw = pwd.getpwuid(os.getuid())
    return pw.pw_name, pw.pw_uid, set(os.getgrouplist(pw.pw_name, pw.pw_gid))


def run(config_path: Path, *, user: str = "posd", locale: str | None = None, unit: str | None = None,
        central: bool = True) -> tuple[Context, list[Finding]]:
    from posd.doctor import checks_central, checks_devices, checks_host, checks_lane

    name, uid, gids = resolve_user(user)
    ctx = Context(config_path=config_path, user=name, locale=locale or "en", uid=uid, gids=gids, unit=unit)
    findings = checks_host.config(ctx)
    if locale is None:
        ctx.locale = ctx.config.lane.locale if ctx.config is not None else (ctx.fallback_locale or "en")
    if ctx.config is None:
        later = ("files", "storage", "devices", "central", "sync", "cache", "daemon")
        unread = any(f.code in ("denied", "unreadable") for f in findings)
        reason = ctx.tr("doctor.skipped.config_unread" if unread else "doctor.skipped.config")
        findings += [Finding(area, area, "skip", "skipped", {"what": ctx.tr(f"doctor.area.{area}"), "reason": reason})
                     for area in later]
        return ctx, findings + checks_host.unit(ctx)
    findings += checks_host.config_access(ctx)
    ctx.health_error = checks_lane.fetch_health(ctx)  # the devices compare with what the daemon sees
    steps: list[Callable[[Context], list[Finding]]] = [
        checks_host.files, checks_host.storage, checks_devices.devices]
    if central:
        steps.append(checks_central.central)
    steps += [checks_lane.sync_and_cache, checks_lane.daemon, checks_host.unit]
    for step in steps:
        findings += step(ctx)
    return ctx, findings


def render_table(ctx: Context, findings: list[Finding]) -> str:
    rows = [(ctx.tr(f"doctor.area.{f.area}"), ctx.tr(f"doctor.result.{f.result}"), f.text(ctx.locale))
            for f in findings]
    head = (ctx.tr("doctor.col.area"), ctx.tr("doctor.col.status"), ctx.tr("doctor.col.finding"))
    widths = [max(len(r[i]) for r in [head, *rows]) for i in range(2)]
    lines = [ctx.tr("doctor.title", path=str(ctx.config_path)), ""]
    indent = " " * (widths[0] + widths[1] + 4)
    for area, result, text in [head, *rows]:
        # a finding of several lines (SQLite's integrity report) stays in its column
        first, *more = text.splitlines() or [""]
        lines.append(f"{area:<{widths[0]}}  {result:<{widths[1]}}  {first}")
        lines += [indent + line for line in more]
    failures, warnings = _counts(findings)
    lines += ["", ctx.tr("doctor.summary.fail" if failures else "doctor.summary.ok",
                         failures=format_number(ctx.locale, failures), warnings=format_number(ctx.locale, warnings))]
    return "\n".join(lines)


def render_json(ctx: Context, findings: list[Finding]) -> str:
    failures, warnings = _counts(findings)
    return json.dumps({"config": str(ctx.config_path), "user": ctx.user, "locale": ctx.locale,
                       "ok": failures == 0, "failures": failures, "warnings": warnings,
                       "checks": [f.as_json(ctx.locale) for f in findings]}, ensure_ascii=False, indent=2)


def _counts(findings: list[Finding]) -> tuple[int, int]:
    return (sum(1 for f in findings if f.result == "fail"), sum(1 for f in findings if f.result == "warn"))
