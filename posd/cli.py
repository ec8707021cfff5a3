"""The `posd` command: run the daemon, check a config, feed a scan, run central, check a central."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from posd import __version__

DEFAULT_CONFIG = "/etc/posd/posd.toml"
T = TypeVar("T")


def default_config() -> str:
    """The config a command reads without --config: $POSD_CONFIG when set and not empty, else the
    installed one."""
    return os.environ.get("POSD_CONFIG") or DEFAULT_CONFIG


def _logging(level: str) -> contextlib.AbstractContextManager[None]:
    """Log lines for the command's duration (journald priorities under systemd: posd/logs.py)."""
    from posd.logs import command_logging

    return command_logging(level)


def _error_line(text: str) -> None:
    """One line for store IT on stderr: under systemd at error priority (``journalctl -p err`` and
    doctor's ``-p warning`` find it; a bare line is stored as info), at a terminal as it is."""
    from posd.logs import journal_stream

    print(f"{'<3>' if journal_stream(sys.stderr) else ''}posd: {text}", file=sys.stderr)


def _load(path: str, *, check_files: bool = False):
    """The config, or exit 2 with one line naming the (first) mistake."""
    from posd.config import ConfigError, load

    try:
        return load(path, check_files=check_files)
    except ConfigError as exc:
        _error_line(f"{path}: {exc}")
        raise SystemExit(2) from None


def cmd_run(args: argparse.Namespace) -> int:
    from posd.stop_signals import keep_early_stops

    keep_early_stops()  # before the heavy imports: a stop while starting is a clean stop, not a kill
    from posd.config import ConfigError, placed
    from posd.storage.db import StorageError, StorageUnavailable, check_ahead

    config = _load(args.config, check_files=True)
    # What posd writes (ledger.db and cache.db hold members' names, the token its clients' key) is
    # its own alone, also when store IT runs it by hand: as the unit's UMask=0077 does under systemd.
    os.umask(0o077)
    # The integrity checks of ledger.db and cache.db read every page (a large cache.db about 0.3 s):
    # started now, they run on another core while the rest of the daemon is imported.
    check_ahead(config.storage_dir / "ledger.db", config.storage_dir / "cache.db")
    import uvloop

    from posd.daemon import Daemon
    try:
        # uvloop: the event loop and its transports in C (libuv); a sale's HTTP round trip and the
        # writer's hand-back to the loop cost about a third less CPU than on the pure-Python loop.
        return uvloop.run(Daemon(config).run())
    except ConfigError as exc:  # a file named by the config changed under us since the check
        _error_line(f"{args.config}: {placed(exc, args.config)}")
        return 2
    except StorageError as exc:
        _error_line(str(exc))
        return 3
    except StorageUnavailable as exc:  # the disk or the folder: 1 may pass (systemd starts posd again), 2 wants IT
        _error_line(str(exc))
        return 2 if exc.lasting else 1


def cmd_config_check(args: argparse.Namespace) -> int:
    """Every mistake at once, one per line: the config's own, then the files it names."""
    from posd.config import ConfigError, load

    try:
        config = load(args.file, check_files=True)
    except ConfigError as exc:
        for problem in exc.problems:
            print(f"posd: {args.file}: {problem}", file=sys.stderr)
        if len(exc.problems) > 1:
            print(f"posd: {args.file}: {len(exc.problems)} problems", file=sys.stderr)
        return 2
    print(f"{args.file}: ok (store {config.lane.store_id}, lane {config.lane.lane_id}, "
          f"{len(config.scanner)} scanner(s), printer {config.printer.url})")
    return 0


def _phone_code(config, args: argparse.Namespace) -> str:
    """What the member's phone would show now: a fresh QR token, or the wallet pass's current value,
    from the reference central's issuing routes (docs/member-tokens.md)."""
    import json
    import time
    import urllib.error
    import urllib.request
    from urllib.parse import quote

    from posd.core.member_tokens import totp_code

    member = args.member_token or args.wallet_pass
    route = "token" if args.member_token else "wallet-pass"
    url = f"{config.central.url}/_admin/members/{quote(member, safe='')}/{route}"
    request = urllib.request.Request(url, data=b"{}", method="POST", headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=10) as resp:
            answer = json.load(resp)
    except urllib.error.HTTPError as exc:
        raise SystemExit(f"posd scan: central refused: {exc.code} {exc.read().decode(errors='replace')[:200]}")
    except (OSError, ValueError) as exc:
        raise SystemExit(f"posd scan: cannot reach central at {config.central.url}: {exc}")
    if args.member_token:
        return answer["token"]
    barcode = answer["rotatingBarcode"]
    totp = barcode["totpDetails"]
    parameter = totp["parameters"][0]
    code = totp_code(bytes.fromhex(parameter["key"]), int(time.time() * 1000) // totp["periodMillis"],
                     parameter["valueLength"])
    return barcode["valuePattern"].replace("{totp_value_0}", code)


def cmd_scan(args: argparse.Namespace) -> int:
    """Type a code into a virtual (pty) scanner, exactly as a device would send it."""
    from posd.drivers.framing import parse_suffix
    from posd.drivers.link_pty import link_path_holder
    from posd.drivers.scanner_serial import write_scan
    from posd.drivers.url import parse_device_url
    from posd.storage.db import folder_held

    config = _load(args.config)
    given = sum(bool(x) for x in (args.code, args.member_token, args.wallet_pass))
    if given != 1:
        print(f"posd scan: give {'only ' if given else ''}one of a CODE, --member-token MEMBER_ID or "
              "--wallet-pass MEMBER_ID", file=sys.stderr)
        return 2
    if args.code and any(ch < " " or ch == "\x7f" for ch in args.code.replace("\x1d", "")):
        # the scanner's suffix (CR by default) ends a code: one inside CODE would type two codes
        print("posd scan: CODE holds a control character (a CR, LF or TAB ends a code at the scanner): give "
              "one code; GS (0x1D), the GS1 separator, is the one kept", file=sys.stderr)
        return 2
    scanners = config.scanners()
    if args.scanner and args.scanner not in [name for name, _ in scanners]:
        names = ", ".join(name for name, _ in scanners) or "none"
        print(f"posd scan: the config has no scanner called {args.scanner} (its scanners: {names})", file=sys.stderr)
        return 2
    ptys = [(name, s) for name, s in scanners if s.url.startswith("pty:")]
    if args.scanner:
        ptys = [(n, s) for n, s in ptys if n == args.scanner]
        if not ptys:
            print(f"posd scan: scanner {args.scanner} is not a pty:// scanner: posd scan types only into those",
                  file=sys.stderr)
            return 2
    if not ptys:
        print("posd scan: the config has no pty:// scanner to type into", file=sys.stderr)
        return 2
    url = parse_device_url(config.device_url(ptys[0][1].url))
    link = Path(url.fs_path)
    suffix = parse_suffix(url.params.get("suffix", "CR"))
    code = args.code or _phone_code(config, args)
    if folder_held(config.storage_dir) is False:
        # the link a posd that died left behind names a pty the system may have given to another lane, or
        # to a terminal: typed into, a code and its Enter would land there
        print(f"posd scan: no posd is running on {config.storage_dir} (storage.dir): start it first; nothing "
              "typed", file=sys.stderr)
        return 1
    try:
        write_scan(str(link), code, suffix=suffix)
    except OSError as exc:
        print(f"posd scan: cannot write to {link}: {exc.strerror} (is posd running?)", file=sys.stderr)
        return 1
    except ValueError:  # something else is at the link's path: posd cannot make its pty there either
        print(f"posd scan: {link} is not the scanner's pty but {link_path_holder(str(link)) or 'no terminal'}: "
              "move it away: a running posd makes its link again within a second (its log names it too)",
              file=sys.stderr)
        return 1
    ending = url.params.get("suffix", "CR").upper()
    what = args.code or (f"{args.member_token}'s phone QR token ({len(code)} characters)" if args.member_token
                         else f"{args.wallet_pass}'s wallet pass code {code}")
    if args.code:
        from posd.core.identify import identify_code

        kind = identify_code(args.code).kind
        if kind == "payment_card":  # its digits are not repeated here either
            what = f"a payment card number ({len(args.code)} characters)"
        elif kind == "qr_token":  # a bearer credential until it is used: not echoed, as --member-token's is not
            what = f"a member token ({len(args.code)} characters)"
    print(f"typed {what}{'' if ending == 'NONE' else ' + ' + ending} into scanner {ptys[0][0]} ({link})")
    return 0


def cmd_print_test(args: argparse.Namespace) -> int:
    """Print a test slip and a code-page table on the configured printer."""
    from posd.drivers import registry
    from posd.drivers.base import PrinterError
    from posd.drivers.print_test import print_test_documents
    from posd.storage.inspect import printer_answered_at, running_user

    config = _load(args.config)
    pcfg = config.printer
    if not pcfg.enabled:
        print("posd print-test: the config has no printer (printer.url = \"none\")", file=sys.stderr)
        return 2
    try:
        printer = registry.open_printer(pcfg.device_name, config.device_url(pcfg.url), profile=pcfg.profile,
                                        width_mm=pcfg.width_mm, code_pages=pcfg.code_pages)
    except (registry.DriverUnavailableError, ValueError) as exc:
        print(f"posd print-test: {exc}", file=sys.stderr)
        return 2
    # a printer posd saw answer its status: silent now, it is not listening, and the test is not printed
    ledger = config.storage_dir / "ledger.db"
    printer.answers_status = printer_answered_at(ledger, printer.url.address) is not None
    if not printer.answers_status and not _readable(ledger):
        print(f"posd print-test: cannot read {ledger} as {running_user()}: whether this printer answered its "
              "status before is not known, so a silent one may be printed to blind; run as root or the posd user",
              file=sys.stderr)
    docs = print_test_documents(pcfg.profile, pcfg.width_mm, config.lane.locale,
                                store_id=config.lane.store_id, lane_id=config.lane.lane_id,
                                code_pages=args.code_pages, table=pcfg.code_pages)
    try:
        for doc in docs:
            printer.print_document(doc)
            print(f"printed {doc.slip_id} on {pcfg.url} ({pcfg.profile}, {pcfg.width_mm} mm)")
    except PrinterError as exc:
        status = printer.last_status
        if exc.reason == "offline" and printer.answers_status and status is not None and not status.answered:
            print("posd print-test: the printer failed: offline: it answered its status (DLE EOT) before and is "
                  "silent now (switched off, stalled, or not listening behind its print server); a printer "
                  "replaced by a model that never answers: add status=0 to its URL", file=sys.stderr)
        else:
            print(f"posd print-test: the printer failed: {exc.reason}", file=sys.stderr)
        return 1
    finally:
        printer.close()
    return 0


def _readable(path: Path) -> bool:
    """Can this user read ``path``? True when it is not there (nothing to read, nothing missed)."""
    try:
        return not path.exists() or os.access(path, os.R_OK)
    except OSError:  # a folder on the way this user may not enter
        return False


def _code_pages_option(text: str) -> str | tuple[int, ...]:
    from posd.drivers.print_test import parse_code_pages

    try:
        return parse_code_pages(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _user_option(name: str) -> str:
    """A user named on the command line exists here: checking access as one who does not would
    answer for someone else (doctor fell back to the user running it and said all was readable)."""
    import pwd

    try:
        return pwd.getpwnam(name).pw_name
    except KeyError:
        raise argparse.ArgumentTypeError(f"there is no user {name!r} on this machine") from None


def _unit_option(name: str) -> str:
    """A unit file named on the command line is there to be scored: one that is not is a mistake in
    the command, not a finding about the lane (it passed as a mere warning, exit 0)."""
    path = Path(name)
    try:
        if path.is_file():
            return name
        problem = "is not a file" if path.exists() else "does not exist"
    except OSError as exc:
        problem = f"cannot be read: {exc.strerror}"
    raise argparse.ArgumentTypeError(f"{name} {problem}")


def cmd_devices(args: argparse.Namespace) -> int:
    """List attached scanners, card readers and printers with the URL for posd.toml."""
    import json

    from posd.drivers.discovery import access_hint, find_devices

    args.user = args.user or "posd"  # when there is none here, each device says so (access unknown)
    found = find_devices(dev_root=args.dev, user=args.user)
    if args.json:
        # the note is what the listing says beside the device: why it is denied, and what gives it to posd
        print(json.dumps([{**f.as_dict(), "note": access_hint(f, args.user)} for f in found], indent=2))
    elif not found:
        print("no scanners, card readers or printers found")
    for f in found if not args.json else ():
        hint = access_hint(f, args.user)
        print(f"{f.role:<12} {f.access:<8} {f.url}")
        print(f"{'':<12} {'':<8} {f.description}{' - ' + hint if hint else ''}")
    return 1 if any(f.access == "denied" for f in found) else 0  # as a script reads it, --json or not


def cmd_doctor(args: argparse.Namespace) -> int:
    """Check everything store IT would, say what is wrong in the lane's language; 1 when anything failed."""
    import logging

    from posd.doctor import render_json, render_table, run

    # The devices' own state lines (printer: idle, ...) are findings of the report: not said again on
    # stderr between its lines, unless --log-level debug asks for everything.
    drivers = logging.getLogger("posd.drivers")
    level = drivers.level
    if logging.getLogger().getEffectiveLevel() > logging.DEBUG:
        drivers.setLevel(logging.ERROR)
    try:
        ctx, findings = run(Path(args.config), user=args.user or "posd", locale=args.lang, unit=args.unit,
                            central=not args.no_central)
    finally:
        drivers.setLevel(level)
    print(render_json(ctx, findings) if args.json else render_table(ctx, findings))
    return 1 if any(f.result == "fail" for f in findings) else 0


def cmd_ledger_backup(args: argparse.Namespace) -> int:
    """Copy ledger.db while posd runs (SQLite's online backup API), checked, then renamed into place."""
    from datetime import datetime

    from posd.config import live_storage_files, protected_files
    from posd.storage.db import StorageError
    from posd.storage.inspect import BackupGate, backup_ledger, remove_partial

    config = _load(args.config)
    source = config.storage_dir / "ledger.db"
    if not args.dest.strip():  # Path("") is the current folder: a cron line whose $DEST is unset
        print("posd ledger backup: no destination given (an empty DEST): name a file or an existing folder",
              file=sys.stderr)
        return 2
    dest = Path(args.dest)
    try:
        if dest.is_dir():
            dest = dest / f"ledger-{config.lane.store_id}-{config.lane.lane_id}-{datetime.now():%Y%m%d-%H%M%S}.db"
        elif args.dest.endswith("/") or not dest.parent.is_dir():
            folder = dest if args.dest.endswith("/") else dest.parent
            print(f"posd ledger backup: {folder}: no such folder (create it first)", file=sys.stderr)
            return 2
        live = live_storage_files(config)
        if dest.resolve() in live:  # replacing one would lose the sales it holds (the -wal: the newest)
            name = live[dest.resolve()]
            what = "ledger.db itself" if name == "ledger.db" else f"{name}, a file of the lane's live storage"
            print(f"posd ledger backup: the copy cannot replace {what} ({config.storage_dir}): name a file "
                  "outside it", file=sys.stderr)
            return 2
        # by name: the copy is renamed into place, so a hard link's other name keeps its bytes
        kept = protected_files(config).get(dest.resolve())  # the config itself, the store secret, ...
        if kept is not None:
            print(f"posd ledger backup: the copy cannot replace {kept} ({dest}): name another file",
                  file=sys.stderr)
            return 2
        if config.storage_dir.resolve() in dest.resolve().parents:
            # lost with the disk or the folder it is a copy of; and the folder is posd's, for its own files
            print(f"posd ledger backup: {dest} is inside the lane's live storage folder ({config.storage_dir}): "
                  "a backup there is lost with it; name a folder elsewhere (/var/backups/posd, another disk)",
                  file=sys.stderr)
            return 2
        if dest.exists() and not dest.is_file():  # a device (/dev/full), a pipe: not even --force replaces it
            print(f"posd ledger backup: {dest}: is not a regular file: a backup only replaces a file",
                  file=sys.stderr)
            return 2
        if dest.exists() and not args.force:
            print(f"posd ledger backup: {dest} exists: give --force to replace it", file=sys.stderr)
            return 2
    except PermissionError as exc:  # a folder on the way this user may not enter
        print(f"posd ledger backup: {exc.filename or dest}: {exc.strerror}", file=sys.stderr)
        return 1
    try:
        gate = BackupGate()

        def stopped() -> None:  # the copy's thread runs on: it is told first, then what it left removed
            gate.close()
            remove_partial(dest)

        done = _stoppable(lambda: backup_ledger(source, dest, replace=args.force, gate=gate), stopped)
    except FileExistsError:  # it appeared while the copy was taken
        print(f"posd ledger backup: {dest} exists: give --force to replace it", file=sys.stderr)
        return 2
    except FileNotFoundError as exc:
        if exc.filename == str(source):
            print(f"posd ledger backup: {source} does not exist (has posd run here?)", file=sys.stderr)
        else:
            print(f"posd ledger backup: {exc.filename or dest}: {exc.strerror or exc}", file=sys.stderr)
        return 1
    except OSError as exc:
        print(f"posd ledger backup: {exc.filename or dest}: {exc.strerror or exc}", file=sys.stderr)
        return 1
    except StorageError as exc:
        print(f"posd ledger backup: {exc}", file=sys.stderr)
        return 1
    print(f"{done.path}: {done.size} bytes, events up to seq {done.last_seq}, integrity ok")
    return 0


def _acknowledge_quarantine(folder: Path, found: list[Any], before: int, as_json: bool = False) -> int:
    """Every event quarantined now is store IT's business done: health and doctor stop warning about
    them (a later one warns again). They stay in ledger.db and in the list. ``before``: the seq
    acknowledged already for this ledger. ``as_json``: the outcome as one JSON object
    (``acknowledged``: how many now, ``up_to_seq``: the newest acknowledged), for a script."""
    from posd.storage.outbox import ACK_FILE, acknowledge

    def said(count: int, up_to: int | None, text: str) -> int:
        print(json.dumps({"acknowledged": count, "up_to_seq": up_to}) if as_json else text)
        return 0

    if not found:
        return said(0, before or None, "no quarantined events: nothing to acknowledge")
    newest = max(found, key=lambda q: q.seq)
    if newest.seq <= before:
        return said(0, before, f"every quarantined event is acknowledged already (up to seq {before})")
    up_to = newest.seq
    try:
        acknowledge(folder, up_to, newest.event_id)
    except OSError as exc:
        print(f"posd ledger quarantine: cannot write {folder / ACK_FILE}: {exc.strerror}", file=sys.stderr)
        return 1
    count = sum(1 for q in found if q.seq > before)
    return said(count, up_to, f"acknowledged {count} quarantined event(s), up to seq {up_to}: health and doctor "
                              "no longer warn about them; they stay in ledger.db and in this list")


def _stoppable(work: Callable[[], T], undo: Callable[[], None]) -> T:
    """``work()`` on a thread of its own, so a stop signal (a service manager, a timeout) is taken at
    once even while the work sits in one long SQLite call: ``undo()`` then removes what it left and
    the command exits 128 + the signal. The work's own outcome otherwise, as if called here.

    The stop signals are blocked, in this thread and the worker (which inherits the mask), and taken
    here by ``sigtimedwait`` alone: a handler's exception could come anywhere, inside ``start()`` or
    a lock's release, where it skipped ``undo()`` or ended in a RuntimeError. A second stop during
    ``undo()`` stays blocked and cannot cut it short. One that comes after the work is done ends the
    command as it returns (128 + the signal; what the work made stays, whole)."""
    import signal
    import threading

    from posd.stop_signals import STOP_SIGNALS, stops_unwind

    outcome: list[Any] = []

    def run() -> None:
        try:
            outcome.append((True, work()))
        except BaseException as exc:  # handed to the caller's thread, as raised
            outcome.append((False, exc))

    stops_unwind()  # for a stop still pending when the mask is restored below
    mask = signal.pthread_sigmask(signal.SIG_BLOCK, STOP_SIGNALS)
    worker = threading.Thread(target=run, name="stoppable", daemon=True)
    try:
        worker.start()
        while worker.is_alive():
            taken = signal.sigtimedwait(STOP_SIGNALS, 0.1)
            if taken is not None:
                raise SystemExit(128 + taken.si_signo)
    except BaseException:  # also a stop another thread of the process took, raised here by its handler
        undo()  # the worker dies with the process, in the middle of whatever it was writing
        raise
    signal.pthread_sigmask(signal.SIG_SETMASK, mask)
    ok, value = outcome[0]
    if not ok:
        raise value
    return value


def cmd_ledger_quarantine(args: argparse.Namespace) -> int:
    """The events central refused for good: what store IT or the member desk looks at to decide."""
    from posd.storage.db import StorageError
    from posd.storage.inspect import quarantined

    config = _load(args.config)
    source = config.storage_dir / "ledger.db"
    try:
        found, acknowledged = quarantined(source)
    except FileNotFoundError:
        print(f"posd ledger quarantine: {source} does not exist (has posd run here?)", file=sys.stderr)
        return 1
    except StorageError as exc:  # also one this user may not read (CannotRead): said so, as whom
        print(f"posd ledger quarantine: {exc}", file=sys.stderr)
        return 1
    if args.acknowledge:
        return _acknowledge_quarantine(source.parent, found, acknowledged, args.json)
    if args.json:
        print(json.dumps([q.to_json() for q in found], ensure_ascii=False))
        return 0
    if not found:
        print("no quarantined events")
        return 0
    rows = [(str(q.seq), q.type, q.code or "-", q.refused_at or "-", q.member_id or "-", q.ref or "-") for q in found]
    head = ("seq", "type", "code", "refused at", "member", "ref")
    widths = [max(len(row[i]) for row in [head, *rows]) for i in range(len(head))]  # a long code shifts nothing
    for row in [head, *rows]:
        print("  ".join([row[0].rjust(widths[0]), *(cell.ljust(w) for cell, w in zip(row[1:-1], widths[1:-1])),
                         row[-1]]))
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from posd.config import ConfigError
    from posd.demo import run_demo

    try:
        return run_demo(Path(args.config), Path(args.seed), Path(args.second_lane) if args.second_lane else None)
    except ConfigError as exc:
        print(f"posd: {exc}", file=sys.stderr)
        return 2


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="posd", description="The loyalty program at the till.")
    p.add_argument("--version", action="version", version=f"posd {__version__}")
    p.add_argument("--log-level", default=os.environ.get("POSD_LOG_LEVEL", "info"), type=str.lower,
                   help=f"{' | '.join(LOG_LEVELS)} (default: $POSD_LOG_LEVEL, else info)")
    sub = p.add_subparsers(dest="command", required=True)

    run = sub.add_parser("run", help="run the daemon")
    run.add_argument("--config", "-c", default=default_config())
    run.set_defaults(func=cmd_run)

    cfg = sub.add_parser("config", help="work with config files")
    cfg_sub = cfg.add_subparsers(dest="config_command", required=True)
    check = cfg_sub.add_parser("check", help="validate a config file without starting anything")
    check.add_argument("file", nargs="?", default=default_config(),
                       help="the config file (default: $POSD_CONFIG, else /etc/posd/posd.toml)")
    check.set_defaults(func=cmd_config_check)

    scan = sub.add_parser("scan", help="feed a code to the configured virtual (pty) scanner")
    scan.add_argument("code", nargs="?")
    scan.add_argument("--member-token", metavar="MEMBER_ID",
                      help="a fresh signed phone QR token for the member, from the (reference) central")
    scan.add_argument("--wallet-pass", metavar="MEMBER_ID",
                      help="the member's wallet pass barcode as it shows now (TOTP), from the (reference) central")
    scan.add_argument("--config", "-c", default=default_config())
    scan.add_argument("--scanner", help="scanner name when there are several")
    scan.set_defaults(func=cmd_scan)

    ptest = sub.add_parser("print-test", help="print a test slip and a code-page table on the configured printer")
    ptest.add_argument("--config", "-c", default=default_config())
    ptest.add_argument("--code-pages", default="chosen", type=_code_pages_option, metavar="chosen|all|N[,N]",
                       help="code-page table: the slots posd uses (default), every slot of the profile, "
                            "or the given ESC t slots")
    ptest.set_defaults(func=cmd_print_test)

    # `posd central ...` is dispatched in main() to posd.sync.central; listed here for --help
    sub.add_parser("central", help="run the reference central receiver (development, demos, tests)",
                   add_help=False)

    # `posd conformance ...` likewise, to posd.sync.conformance
    sub.add_parser("conformance", help="check a central against the sync protocol (pass/fail table, exit 0/1)",
                   add_help=False)

    devices = sub.add_parser("devices", help="list attached scanners, card readers and printers with their URLs")
    devices.add_argument("--user", type=_user_option,
                         help="the user whose access is checked (default: posd, when it exists)")
    devices.add_argument("--dev", default="/dev", help=argparse.SUPPRESS)
    devices.add_argument("--json", action="store_true", help="machine-readable output")
    devices.set_defaults(func=cmd_devices)

    doctor = sub.add_parser("doctor", help="check config, files, storage, devices, central, sync and the running "
                                           "daemon; say what is wrong (exit 1)")
    doctor.add_argument("--config", "-c", default=default_config())
    doctor.add_argument("--user", type=_user_option,
                        help="the user whose access to files and devices is checked (default: posd; the user "
                             "running doctor when there is no posd user)")
    doctor.add_argument("--lang", choices=("pl", "fa", "en"), help="language (default: the lane's)")
    doctor.add_argument("--json", action="store_true", help="machine-readable output for fleet tools")
    doctor.add_argument("--unit", type=_unit_option,
                        help="score this unit file instead of the installed posd.service")
    doctor.add_argument("--no-central", action="store_true", help="do not contact central")
    doctor.set_defaults(func=cmd_doctor)

    ledger = sub.add_parser("ledger", help="work with ledger.db")
    ledger_sub = ledger.add_subparsers(dest="ledger_command", required=True)
    backup = ledger_sub.add_parser("backup", help="copy ledger.db while posd runs (SQLite online backup)")
    backup.add_argument("dest", help="the copy's file name, or a folder for a dated name")
    backup.add_argument("--config", "-c", default=default_config())
    backup.add_argument("--force", action="store_true", help="replace DEST when it exists")
    backup.set_defaults(func=cmd_ledger_backup)

    quarantine = ledger_sub.add_parser("quarantine", help="list the events central refused for good (newest first)")
    quarantine.add_argument("--config", "-c", default=default_config())
    quarantine.add_argument("--json", action="store_true", help="one JSON array")
    quarantine.add_argument("--acknowledge", action="store_true",
                            help="the member desk has dealt with every event listed now: stop warning about them")
    quarantine.set_defaults(func=cmd_ledger_quarantine)

    demo = sub.add_parser("demo", help="run the reference central and the daemon on the demo config")
    demo.add_argument("--config", default="config/demo.toml")
    demo.add_argument("--seed", default="config/demo-seed.json")
    demo.add_argument("--second-lane", metavar="CONFIG",
                      help="also run this lane of the same store (config/demo-lane2.toml): vouchers across lanes")
    demo.set_defaults(func=cmd_demo)
    return p


class OutputFailed(Exception):
    """Writing the command's own output failed (a full disk, /dev/full, an I/O error): not an OSError,
    so that no command's own ``except OSError`` (around a device, a file it copies) takes it for its."""

    def __init__(self, cause: OSError):
        super().__init__(cause.strerror or str(cause))


class _Output:
    """sys.stdout while a command runs: a failed write or flush is an OutputFailed. A reader that left
    (BrokenPipeError) stays what it is: main() ends that one as SIGPIPE would."""

    def __init__(self, stream: Any):
        self._stream = stream

    def write(self, text: str) -> int:
        try:
            return self._stream.write(text)
        except BrokenPipeError:
            raise
        except OSError as exc:
            raise OutputFailed(exc) from exc

    def flush(self) -> None:
        try:
            self._stream.flush()
        except BrokenPipeError:
            raise
        except OSError as exc:
            raise OutputFailed(exc) from exc

    def __getattr__(self, name: str) -> Any:
        return getattr(self._stream, name)


def _stdout_to_devnull() -> None:
    """Point stdout at /dev/null so that the exit's own flush of what is still buffered does not fail again."""
    try:
        fd = sys.stdout.fileno()
    except (AttributeError, OSError, ValueError):  # not a file (captured in a test): nothing to flush at exit
        return
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, fd)
    os.close(devnull)


def main(argv: list[str] | None = None) -> int:
    """``posd``; output read by a pipe that closes early (``posd doctor --json | head``) ends quietly,
    output that cannot be written (``> /dev/full``) is one line on stderr and exit 1."""
    stdout = sys.stdout
    if stdout is not None:
        sys.stdout = _Output(stdout)
    try:
        try:
            return _main(sys.argv[1:] if argv is None else argv)
        finally:
            sys.stdout.flush()  # what is still buffered fails here, not in the interpreter's exit
    except KeyboardInterrupt:  # Ctrl-C before a command's own handling took over (while importing)
        print("posd: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        # The reader left: nothing more can be said to it; exit as a process killed by SIGPIPE would (128 + 13).
        sys.stdout = stdout
        _stdout_to_devnull()
        return 141
    except OutputFailed as exc:
        sys.stdout = stdout
        _stdout_to_devnull()
        _error_line(f"cannot write the output: {exc}")
        return 1
    finally:
        sys.stdout = stdout


LOG_LEVELS = ("debug", "info", "warning", "error", "critical")


def _log_level(level: str, where: str) -> str:
    """``level`` if it is one; else exit 2 naming where it came from."""
    if level.lower() not in LOG_LEVELS:
        print(f"posd: {where} {level!r} is not a log level; one of {', '.join(LOG_LEVELS)}", file=sys.stderr)
        raise SystemExit(2)
    return level.lower()


def _main(argv: list[str]) -> int:
    if argv[:1] in (["central"], ["conformance"]) or not any(a.startswith("--log-level") for a in argv):
        _log_level(os.environ.get("POSD_LOG_LEVEL", "info"), "POSD_LOG_LEVEL")
    if argv[:1] == ["central"]:
        # central has its own options; argparse's REMAINDER cannot pass leading --flags through
        from posd.sync.central.cli import main as central_main

        with _logging(os.environ.get("POSD_LOG_LEVEL", "info")):
            return central_main(argv[1:])
    if argv[:1] == ["conformance"]:
        from posd.sync.conformance.cli import main as conformance_main

        with _logging(os.environ.get("POSD_LOG_LEVEL", "info")):
            return conformance_main(argv[1:])
    args = build_parser().parse_args(argv)
    with _logging(_log_level(args.log_level, "--log-level")):
        return args.func(args)


if __name__ == "__main__":
    raise SystemExit(main())
