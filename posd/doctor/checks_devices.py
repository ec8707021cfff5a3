"""posd doctor: each configured device: present, openable by the posd user (its group, the udev
rule that grants it), the printer's own status (DLE EOT), and what the running daemon reports."""

from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import Any

from posd.doctor import Context, Finding
from posd.doctor.access import describe, exists, may, may_reach, nearest_existing
from posd.drivers.discovery import udev_rule_for
from posd.drivers.link_pty import link_path_holder
from posd.drivers.url import parse_device_url
from posd.storage.inspect import printer_answered_at, running_user

# Device nodes a driver reads and writes; keyboard-wedge devices are only read (evdev).
NODE_SCHEMES = {"serial": "rw", "msr+serial": "rw", "file": "rw", "hid": "r", "msr+hid": "r", "camera": "rw"}
PRINT_STATUS_SCHEMES = ("tcp", "serial", "file", "usb")


def devices(ctx: Context) -> list[Finding]:
    cfg = ctx.config
    configured = [(name, "scanner", s.url) for name, s in cfg.scanners()]
    configured += [(name, "card_reader", c.url) for name, c in cfg.card_readers()]
    out: list[Finding] = []
    for name, kind, url in configured:
        out += _device(ctx, name, kind, cfg.device_url(url)) + _reported(ctx, name)
    out += _printer(ctx)
    return out


def _device(ctx: Context, name: str, kind: str, url_text: str) -> list[Finding]:
    url = parse_device_url(url_text)
    base = {"name": name, "kind": ctx.tr(f"kind.{kind}"), "url": url.redacted(), "user": ctx.user}
    check = f"devices.{name}"
    if url.scheme in NODE_SCHEMES:
        return [_node(ctx, check, Path(url.fs_path), NODE_SCHEMES[url.scheme], base)]
    if url.scheme == "camera+file":
        return [_node(ctx, check, Path(url.fs_path), "r", base)]
    if url.scheme == "nfc+pcsc":
        return [_pcsc(check, url, base)]
    if url.scheme == "pty":
        holder = link_path_holder(url.fs_path)
        if holder:  # posd makes its pty's link there and replaces only a link: it cannot start the scanner
            key = {"a file": "file", "a folder": "folder"}.get(holder, "other")
            return [Finding("devices", check, "fail", "pty_blocked",
                            {**base, "path": url.fs_path, "what": ctx.tr(f"doctor.pty_holder.{key}")})]
        # posd makes the link (and the folders it lacks) as its user: where it may not, the scanner
        # is "permission denied" at every start
        folder = nearest_existing(Path(os.path.abspath(url.fs_path)).parent)
        if folder.is_dir() and not (may(folder.stat(), ctx.uid, ctx.gids, "wx")
                                    and may_reach(folder, ctx.uid, ctx.gids)):
            return [Finding("devices", check, "fail", "pty_denied",
                            {**base, "path": url.fs_path, "folder": str(folder), **describe(folder)})]
        return [Finding("devices", check, "ok", "virtual", base)]
    return [Finding("devices", check, "ok", "network", base)]


def _node(ctx: Context, check: str, path: Path, want: str, base: dict[str, Any]) -> Finding:
    params = {**base, "path": str(path), **describe(path)}
    found = exists(path)
    if found is None:  # doctor's own user may not look: it says so, and guesses nothing for posd
        return Finding("devices", check, "warn", "unseen", {**params, "runner": running_user()})
    if not found:
        return Finding("devices", check, "fail", "missing", params)
    rule, st = udev_rule_for(str(path)), path.stat()
    if rule:
        params["rule"] = ctx.tr("doctor.devices.rule", rule=rule)
    elif stat.S_ISREG(st.st_mode):  # a camera's clip or still, a test's file: nothing udev makes
        params["rule"] = ctx.tr("doctor.devices.plain_file")
    else:
        params["rule"] = ctx.tr("doctor.devices.no_rule")
    params["udev_rule"] = rule
    ok = may(st, ctx.uid, ctx.gids, want) and may_reach(path, ctx.uid, ctx.gids)
    return Finding("devices", check, "ok" if ok else "fail", "ok" if ok else "denied", params)


def _pcsc(check: str, url: Any, base: dict[str, Any]) -> Finding:
    wanted = url.netloc or url.path.strip("/")
    try:
        from smartcard.System import readers

        names = [str(r) for r in readers()]
    except Exception as exc:  # pcscd not running, pyscard missing: the reader cannot work either
        return Finding("devices", check, "fail", "pcsc_down", {**base, "message": type(exc).__name__})
    match = [n for n in names if not wanted or n.startswith(wanted)]
    if match:
        return Finding("devices", check, "ok", "pcsc_ok", {**base, "reader": match[0]})
    return Finding("devices", check, "fail", "pcsc_missing",
                   {**base, "reader": wanted, "readers": ", ".join(names) or "-"})


def _printer(ctx: Context) -> list[Finding]:
    from posd.drivers import registry

    cfg = ctx.config
    pcfg = cfg.printer
    if not pcfg.enabled:
        return [Finding("devices", "devices.printer", "ok", "printer_none")]
    name = pcfg.device_name
    url_text = cfg.device_url(pcfg.url)
    url = parse_device_url(url_text)
    base = {"name": name, "kind": ctx.tr("kind.printer"), "url": url.redacted(), "user": ctx.user}
    check = f"devices.{name}"
    out = []
    if url.scheme == "preview":
        folder = Path(url.fs_path)
        params = {**base, "path": str(folder)}
        found = exists(folder)
        if found is None:
            return [Finding("devices", check, "warn", "unseen", {**params, "runner": running_user()})]
        target = folder if found else nearest_existing(folder)
        if not target.is_dir():  # a file where the folder (or one above it) should be: posd cannot make it
            return [Finding("devices", check, "fail", "preview_not_folder", {**params, "file": str(target)})]
        ok = may(target.stat(), ctx.uid, ctx.gids, "wx") and may_reach(target, ctx.uid, ctx.gids)
        return [Finding("devices", check, "ok" if ok else "fail", "preview" if ok else "preview_denied", params)]
    if url.scheme == "file" and Path(url.fs_path).is_dir():  # it writes to a file, a FIFO or a device
        return [Finding("devices", check, "fail", "file_is_folder", {**base, "path": url.fs_path})]
    if url.scheme in ("serial", "file"):
        node = _node(ctx, check, Path(url.fs_path), "rw", base)
        out.append(node)
        if node.result == "fail" or (url.scheme == "file" and not Path(url.fs_path).is_char_device()):
            return out + _reported(ctx, name)
    if url.scheme in PRINT_STATUS_SCHEMES:
        out.append(_printer_status(ctx, registry, name, url_text, base))
    return out + _reported(ctx, name)


def _printer_status(ctx: Context, registry: Any, name: str, url_text: str, base: dict[str, Any]) -> Finding:
    """Ask the printer itself (DLE EOT 1, 2, 4) through posd's own driver, as a job would."""
    check = f"devices.{name}.status"
    try:
        printer = registry.open_printer(name, url_text, profile=ctx.config.printer.profile,
                                        width_mm=ctx.config.printer.width_mm)
    except Exception as exc:  # pyusb or libusb missing, a bad profile: what opening it would say
        return Finding("devices", check, "fail", "printer_unreachable", {**base, "reason": str(exc)})
    answered = printer_answered_at(ctx.config.storage_dir / "ledger.db", printer.url.address)
    printer.answers_status = answered is not None
    try:
        reason = printer.check_ready()
        status = getattr(printer, "last_status", None)
        if getattr(printer, "reachable", True) is False:
            return Finding("devices", check, "fail", "printer_unreachable",
                           {**base, "reason": _reason(ctx, reason), "code": reason})
        if reason == "offline" and answered is not None and status is not None and not status.answered:
            return Finding("devices", check, "fail", "printer_fell_silent", {**base, "since": answered})
        if reason:
            return Finding("devices", check, "fail", "printer_problem",
                           {**base, "reason": _reason(ctx, reason), "code": reason})
        if status is None or not status.answered:
            return Finding("devices", check, "warn", "printer_silent", base)
        paper = "near_end" if status.paper_near_end else "ok"
        return Finding("devices", check, "warn" if paper == "near_end" else "ok", "printer_ready",
                       {**base, "paper": ctx.tr(f"paper.{paper}"), "paper_state": paper})
    finally:
        printer.close()


def _reason(ctx: Context, reason: str | None) -> str:
    from posd.core.messages import has_message

    key = f"reason.{reason}"
    return ctx.tr(key) if reason and has_message(ctx.locale, key) else (reason or "-")


def _reported(ctx: Context, name: str) -> list[Finding]:
    """The running daemon's view of a device, when it is in error (it has seen more than one look)."""
    health = ctx.health
    if health is None:
        return []
    for d in health.get("devices", []):
        if d["name"] == name and d["state"] == "error":
            return [Finding("devices", f"devices.{name}.daemon", "warn", "reported",
                            {"name": name, "state": ctx.tr(f"state.{d['state']}"),
                             "reason": f": {_reason(ctx, d.get('reason'))}" if d.get("reason") else ""})]
    return []
