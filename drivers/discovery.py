"""``posd devices``: what is plugged into this lane, and the URL to configure for it.

Looks where stable names live (``/dev/serial/by-id``, ``/dev/input/by-id``,
``/dev/v4l/by-id``), asks pyserial's ``comports()`` for USB ids, pyusb for
USB printers and pcscd for NFC readers. Each device gets a role, the URL to
put in posd.toml and whether the posd user may open it (by the file's
owner, group and mode against that user's groups), so store IT sees at
once when a udev rule or a group is missing.
"""

from __future__ import annotations

import grp
import os
import pwd
import re
import stat
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable, Iterable
from urllib.parse import quote, urlsplit

__all__ = ["Found", "find_devices", "may_open", "PRINTER_VENDORS", "SCANNER_VENDORS"]

PRINTER_VENDORS = {0x04B8: "Epson", 0x0519: "Star", 0x1504: "Bixolon", 0x0DD4: "Custom", 0x154F: "SNBC",
                   0x1FC9: "POS (NXP-based)", 0x0416: "Winbond-based POS printer"}
SCANNER_VENDORS = {0x0C2E: "Honeywell", 0x0536: "Hand Held Products", 0x05E0: "Zebra/Symbol",
                   0x05F9: "Datalogic", 0x1EAB: "Newland", 0x2DD6: "Datalogic", 0x1A86: "QinHeng (generic)"}
_MSR_WORDS = re.compile(r"msr|magtek|idtech|id_tech|magnetic|card_?reader", re.I)
_SCANNER_WORDS = re.compile(r"scan|barcode|honeywell|symbol|zebra|datalogic|newland|metrologic|hand_?held", re.I)


@dataclass(frozen=True)
class Found:
    role: str  # scanner | card_reader | printer
    url: str  # what to put in posd.toml
    description: str
    access: str  # ok | denied | unknown
    note: str = ""

    def as_dict(self) -> dict[str, str]:
        return asdict(self)


def may_open(path: str, user: str = "posd") -> str:
    """``ok`` when ``user`` may read and write ``path``, ``denied`` if not, ``unknown`` without the user."""
    try:
        pw = pwd.getpwnam(user)
    except KeyError:
        return "unknown"
    try:
        st = os.stat(path)
    except OSError:
        return "unknown"
    return "ok" if _allowed(st, pw.pw_uid, set(os.getgrouplist(user, pw.pw_gid))) else "denied"


def _allowed(st: os.stat_result, uid: int, gids: set[int]) -> bool:
    if uid == 0:
        return True
    mode = stat.S_IMODE(st.st_mode)
    if st.st_uid == uid:
        need = stat.S_IRUSR | stat.S_IWUSR
    elif st.st_gid in gids:
        need = stat.S_IRGRP | stat.S_IWGRP
    else:
        need = stat.S_IROTH | stat.S_IWOTH
    return mode & need == need


def _group_name(path: str) -> str:
    try:
        return grp.getgrgid(os.stat(path).st_gid).gr_name
    except (KeyError, OSError):
        return "?"


def _by_id(folder: Path, pattern: str = "*") -> list[Path]:
    try:
        return sorted(p for p in folder.glob(pattern))
    except OSError:
        return []


def _serial_devices(dev: Path, comports: Iterable[Any], user: str) -> list[Found]:
    ports = {os.path.realpath(p.device): p for p in comports}
    found, linked = [], set()
    for link in _by_id(dev / "serial" / "by-id"):
        target = os.path.realpath(link)
        linked.add(target)
        found.append(_serial_entry(str(link), ports.get(target), user))
    for target, port in sorted(ports.items()):
        if target not in linked:
            found.append(_serial_entry(port.device, port, user, note="no by-id link: the name may change"))
    return found


def _serial_entry(path: str, port: Any, user: str, note: str = "") -> Found:
    vid = getattr(port, "vid", None)
    desc = " ".join(x for x in (getattr(port, "manufacturer", None), getattr(port, "product", None)
                                or getattr(port, "description", None)) if x) or os.path.basename(path)
    if vid in PRINTER_VENDORS:
        return Found("printer", f"serial://{path}?baudrate=38400", desc, may_open(path, user), note)
    if vid not in SCANNER_VENDORS and not _SCANNER_WORDS.search(path + desc):
        note = (note + "; " if note else "") + "scanner or printer: check the device"
    return Found("scanner", f"serial://{path}?baudrate=9600&suffix=CR", desc, may_open(path, user), note)


def _input_devices(dev: Path, user: str) -> list[Found]:
    found = []
    for link in _by_id(dev / "input" / "by-id", "*-event-kbd"):
        name, path = link.name, str(link)
        if _MSR_WORDS.search(name):
            found.append(Found("card_reader", f"msr+hid://{path}", name, may_open(path, user)))
        else:
            note = "" if _SCANNER_WORDS.search(name) else "a keyboard, unless it is a keyboard-wedge scanner"
            found.append(Found("scanner", f"hid://{path}?layout=us", name, may_open(path, user), note))
    return found


def _cameras(dev: Path, user: str) -> list[Found]:
    return [Found("scanner", f"camera://{link}", link.name, may_open(str(link), user))
            for link in _by_id(dev / "v4l" / "by-id", "*-video-index0")]


def _usb_printers(dev: Path, usb_devices: Iterable[Any], user: str) -> list[Found]:
    found = []
    for d in usb_devices:
        if d.idVendor not in PRINTER_VENDORS and getattr(d, "bDeviceClass", 0) != 7:
            continue
        serial = getattr(d, "serial_number", None)
        url = f"usb://{d.idVendor:04x}:{d.idProduct:04x}" + (f"?serial={quote(serial, safe='')}" if serial else "")
        node = dev / "bus" / "usb" / f"{d.bus:03d}" / f"{d.address:03d}"
        desc = " ".join(x for x in (getattr(d, "manufacturer", None), getattr(d, "product", None)) if x)
        found.append(Found("printer", url, desc or PRINTER_VENDORS.get(d.idVendor, "USB printer"),
                           may_open(str(node), user)))
    for lp in _by_id(dev / "usb", "lp*"):
        found.append(Found("printer", f"file://{lp}", lp.name, may_open(str(lp), user),
                           "usblp device; usb:// survives replug better"))
    return found


def _nfc_readers(readers: Callable[[], list[Any]]) -> list[Found]:
    try:
        names = [str(r) for r in readers()]
    except Exception as exc:
        return [Found("card_reader", "nfc+pcsc://", "PC/SC", "unknown",
                      f"pcscd not reachable ({type(exc).__name__}): apt-get install pcscd")]
    out = []
    for name in names:
        stable = re.sub(r"(\s+\d\d)+$", "", name)  # slot numbers depend on plug order
        out.append(Found("card_reader", f"nfc+pcsc://{quote(stable)}", name, "ok",
                         "blacklist nfc/pn533 modules (systemd/posd-blacklist-nfc.conf)"))
    return out


def _default_comports() -> list[Any]:
    try:
        from serial.tools import list_ports
    except ImportError:
        return []
    return list(list_ports.comports())


def _default_usb() -> list[Any]:
    try:
        import usb.core

        return list(usb.core.find(find_all=True) or [])
    except Exception:  # no libusb, no permission: the other sources still answer
        return []


def _default_readers() -> list[Any]:
    from smartcard.System import readers

    return readers()


def find_devices(*, dev_root: str = "/dev", user: str = "posd", comports: Callable[[], Iterable[Any]] | None = None,
                 usb_devices: Callable[[], Iterable[Any]] | None = None,
                 pcsc_readers: Callable[[], list[Any]] | None = None) -> list[Found]:
    dev = Path(dev_root)
    found = _serial_devices(dev, (comports or _default_comports)(), user)
    found += _input_devices(dev, user)
    found += _cameras(dev, user)
    found += _usb_printers(dev, (usb_devices or _default_usb)(), user)
    found += _nfc_readers(pcsc_readers or _default_readers)
    return found


# The groups posd.service runs posd in (SupplementaryGroups=) and posd.sysusers.conf puts its user in:
# the ones Debian gives serial ports, line printers and cameras.
UNIT_GROUPS = ("dialout", "lp", "video")
INSTALLED_RULES = "/lib/udev/rules.d/70-posd-devices.rules"  # where the package puts systemd/posd-devices.rules


def access_hint(found: Found, user: str = "posd") -> str:
    if found.access == "denied":
        return _denied_hint(found, user)
    if found.access == "unknown":
        return f"no {user} user here (systemd/posd.sysusers.conf creates it)" if not found.note else found.note
    return found.note


def _denied_hint(found: Found, user: str) -> str:
    """What gives ``user`` the device: the group it is in already (a serial port on the board is
    dialout's), the package's udev rule not applied yet, or a rule of store IT's own."""
    path = urlsplit(found.url).path if not found.url.startswith("usb:") else ""
    group = _group_name(path) if path else "?"
    if group in UNIT_GROUPS:
        return (f"it is group {group}'s: posd.service runs posd in {group} (SupplementaryGroups=); to run it by "
                f"hand as {user}: usermod -aG {group} {user}")
    rule = udev_rule_for(path) if path else None
    if rule:
        return f"the udev rule {rule} gives it to group posd but was not applied yet: replug it, or udevadm trigger"
    board = re.fullmatch(r".*/(tty(?:S|AMA|mxc|SAC)\d+)", path)
    if board:  # a serial port on the board, dialout's on Debian: here another group's
        return (f"a serial port on the board, of group {group} here: a udev rule KERNEL==\"{board[1]}\", "
                f"GROUP=\"dialout\", MODE=\"0660\" gives it to dialout, which posd.service runs posd in")
    return (f"the {user} user may not open it (group {group}): a udev rule giving it GROUP=\"posd\", MODE=\"0660\" "
            f"by its USB vendor, as {INSTALLED_RULES} does for known scanners and printers")


UDEV_RULE_DIRS = ("/etc/udev/rules.d", "/run/udev/rules.d", "/usr/lib/udev/rules.d", "/lib/udev/rules.d")


def usb_ids(path: str, sys_root: str = "/sys") -> tuple[str, str] | None:
    """(idVendor, idProduct) in hex of the USB device behind a device node, from sysfs; None when it
    is no USB device (a pty, a board's serial port) or sysfs does not say."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    if not (stat.S_ISCHR(st.st_mode) or stat.S_ISBLK(st.st_mode)):
        return None
    kind = "char" if stat.S_ISCHR(st.st_mode) else "block"
    node = Path(sys_root) / "dev" / kind / f"{os.major(st.st_rdev)}:{os.minor(st.st_rdev)}"
    try:
        folder = node.resolve(strict=True)
    except OSError:
        return None
    for parent in [folder, *folder.parents]:
        try:
            vid = (parent / "idVendor").read_text().strip().lower()
            pid = (parent / "idProduct").read_text().strip().lower()
        except OSError:
            continue
        return vid, pid
    return None


def udev_rule_for(path: str, rule_dirs: Iterable[str] = UDEV_RULE_DIRS, sys_root: str = "/sys") -> str | None:
    """``file:line`` of the udev rule that names this device's USB vendor (and product) and sets its
    GROUP, the way store IT would look for it; None when none does."""
    ids = usb_ids(path, sys_root)
    if ids is None:
        return None
    vid, pid = ids
    seen: set[str] = set()
    for folder in rule_dirs:
        for rules in sorted(Path(folder).glob("*.rules")) if Path(folder).is_dir() else []:
            if rules.name in seen:  # a file of the same name earlier in the list overrides this one
                continue
            seen.add(rules.name)
            try:
                lines = rules.read_text(errors="replace").splitlines()
            except OSError:
                continue
            for number, line in enumerate(lines, start=1):
                text = line.strip().lower()
                if text.startswith("#") or "group" not in text or f'idvendor}}=="{vid}"' not in text:
                    continue
                product = re.search(r'idproduct}=="([0-9a-f*?]+)"', text)
                if product is None or product.group(1) in (pid, "*"):
                    return f"{rules}:{number}"
    return None
