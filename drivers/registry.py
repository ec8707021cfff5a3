"""The one registry of device drivers: (role, scheme) -> driver.

Config validation calls ``validate(role, url)``: it parses the URL, checks
the scheme and every parameter without importing any driver or optional
library. ``open_scanner`` / ``open_printer`` import the driver module on
first use; if its library is missing, the error names the package to
install (unlike pyserial, an ImportError never becomes "unknown scheme").

Adding a driver is one ``register(DriverSpec(...))`` call. Roles: scanners,
card readers (magstripe, NFC) and printers.
"""

from __future__ import annotations

import importlib
import re
from dataclasses import dataclass, field
from typing import Any, Callable, Literal, Mapping

from .base import DataCallback, Printer, RejectCallback, Scanner, StatusCallback
from .camera_evidence import DEFAULT_SYMBOLOGIES, parse_symbologies
from .framing import parse_suffix
from .keymaps import layout_names
from .url import DeviceURL, DeviceURLError, parse_device_url

__all__ = [
    "ROLES",
    "Param",
    "DriverSpec",
    "DriverUnavailableError",
    "register",
    "unregister",
    "known_schemes",
    "spec_for",
    "validate",
    "options_for",
    "open_scanner",
    "open_printer",
    "open_card_reader",
    "validate_printer_settings",
]

ROLES = ("scanner", "card_reader", "printer")
# What the URL must name: a path, host:port, USB VID:PID, a free-form name, or nothing.
Target = Literal["path", "hostport", "usbid", "name", "none"]


class DriverUnavailableError(RuntimeError):
    """The driver's optional library is not installed; the message says which."""


@dataclass(frozen=True)
class Param:
    """One URL parameter: its parser (raises ValueError) and default."""

    parse: Callable[[str], Any]
    default: Any
    help: str = ""


# What a path-naming URL of each scheme names, for the message that says one is missing.
_EXAMPLE_PATHS = {
    "pty": "/run/posd/scanner",  # the link posd makes to its end of the pty
    "hid": "/dev/input/by-id/usb-Vendor_Scanner-event-kbd",
    "msr+hid": "/dev/input/by-id/usb-Vendor_MSR-event-kbd",
    "camera": "/dev/video0",
    "camera+file": "/var/lib/posd/clips/front.mp4",
    "file": "/dev/usb/lp0",
    "preview": "/var/lib/posd/slips",
}


@dataclass(frozen=True)
class DriverSpec:
    role: str
    scheme: str
    target: str  # "package.module:Class", imported on first open
    kind: Target  # what the URL must name: a path, host:port or nothing
    params: Mapping[str, Param] = field(default_factory=dict)
    package: str | None = None  # pip package of the optional library
    modules: tuple[str, ...] = ()  # its top-level import names
    description: str = ""


_REGISTRY: dict[str, dict[str, DriverSpec]] = {role: {} for role in ROLES}


def register(spec: DriverSpec) -> None:
    if spec.role not in _REGISTRY:
        raise ValueError(f"unknown device role {spec.role!r}")
    _REGISTRY[spec.role][spec.scheme] = spec


def unregister(role: str, scheme: str) -> None:
    _roles(role).pop(scheme, None)


def known_schemes(role: str) -> list[str]:
    return sorted(_roles(role))


def spec_for(role: str, scheme: str) -> DriverSpec:
    specs = _roles(role)
    if scheme not in specs:
        known = ", ".join(f"{s}://" if s != "none" else s for s in sorted(specs))
        raise DeviceURLError(f"unknown {role} URL scheme {scheme!r}; known: {known}")
    return specs[scheme]


def _roles(role: str) -> dict[str, DriverSpec]:
    try:
        return _REGISTRY[role]
    except KeyError:
        raise ValueError(f"unknown device role {role!r}; roles: {', '.join(ROLES)}") from None


# -- validation ------------------------------------------------------------
def validate(role: str, url_text: str) -> DeviceURL:
    """Parse and check a device URL for ``role``; raise DeviceURLError saying what is wrong."""
    url = parse_device_url(url_text)
    options_for(role, url)
    return url


def options_for(role: str, url: DeviceURL) -> dict[str, Any]:
    """The driver options of ``url``: every known parameter parsed, defaults filled in."""
    spec = spec_for(role, url.scheme)
    _check_target(spec, url)
    options: dict[str, Any] = {name: param.default for name, param in spec.params.items()}
    unknown, bad = [], []  # every mistake of the URL at once, in the order written: one round of corrections
    for name, text in url.params.items():
        if name not in spec.params:
            unknown.append(name)
            continue
        try:
            options[name] = spec.params[name].parse(text)
        except ValueError as exc:
            bad.append(f"bad parameter {name}={text!r}: {exc}")
    if unknown:
        known = ", ".join(sorted(spec.params)) or "none"
        names = ", ".join(repr(name) for name in unknown)
        bad.insert(0, f"unknown parameter{'s' if len(unknown) > 1 else ''} {names} for {spec.scheme}:// {role}; "
                      f"known parameters: {known}")
    if bad:
        raise DeviceURLError(" | ".join(bad))
    return options


def _check_target(spec: DriverSpec, url: DeviceURL) -> None:
    where = f"{spec.scheme}:// {spec.role} URL"
    if spec.kind == "path":
        if not url.fs_path or url.fs_path == "/":
            example = _EXAMPLE_PATHS.get(spec.scheme, "/dev/ttyUSB0")
            raise DeviceURLError(f"{where} needs a path, e.g. {spec.scheme}://{example}")
    elif spec.kind == "hostport":
        if url.path not in ("", "/"):
            raise DeviceURLError(f"{where} takes host:port only, not a path ({url.path!r})")
        try:
            port = _port_of(url)
        except ValueError as exc:
            raise DeviceURLError(f"{where}: {exc}") from None
        if not url.host or port is None:
            raise DeviceURLError(f"{where} needs host:port, e.g. {spec.scheme}://127.0.0.1:9100")
    elif spec.kind == "usbid":
        try:
            parse_usb_id(url.netloc)
        except ValueError as exc:
            raise DeviceURLError(f"{where}: {exc}, e.g. usb://04b8:0202") from None
        if url.path not in ("", "/"):
            raise DeviceURLError(f"{where} takes VID:PID only (add ?serial= to pick one of several)")
    elif spec.kind == "none" and (url.netloc or url.path not in ("", "/")):
        raise DeviceURLError(f"'none' ({spec.role}) takes nothing after it: write none")


def parse_usb_id(text: str) -> tuple[int, int]:
    """``"04b8:0202"`` -> ``(0x04B8, 0x0202)``; raises ValueError."""
    vid, sep, pid = text.partition(":")
    if not sep or len(vid) != 4 or len(pid) != 4:
        raise ValueError("needs the USB vendor and product id as VID:PID in hex")
    try:
        return int(vid, 16), int(pid, 16)
    except ValueError:
        raise ValueError("VID:PID must be hexadecimal") from None


def _port_of(url: DeviceURL) -> int | None:
    """The port as the driver will read it (DeviceURL.port); a port written otherwise is an error."""
    if "@" in url.netloc:
        raise ValueError("takes host:port only, not a user name")
    text = url.port_text
    if text is None:
        return None
    port = _int_range(1, 65535, "port")(text)
    if url.port != port:  # " 9100": spaces the driver would not read past
        raise ValueError(f"port must be written without spaces, not {text!r}")
    return port


# -- parameter parsers -------------------------------------------------------
_DIGITS = re.compile(r"[0-9]+")


def _int_range(lo: int, hi: int, what: str = "value") -> Callable[[str], int]:
    def parse(text: str) -> int:
        text = text.strip()
        try:
            if not _DIGITS.fullmatch(text):  # int() also reads Persian or fullwidth digits, "+9100", "9_600"
                raise ValueError
            value = int(text, 10)
        except ValueError:
            raise ValueError(f"{what} must be an integer written in the digits 0-9") from None
        if not lo <= value <= hi:
            raise ValueError(f"{what} must be between {lo} and {hi}")
        return value

    return parse


def _float_range(lo: float, hi: float) -> Callable[[str], float]:
    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise ValueError("must be a number of seconds") from None
        if not lo <= value <= hi:  # also rejects nan
            raise ValueError(f"must be between {lo:g} and {hi:g}")
        return value

    return parse


def _choice(*choices: str, upper: bool = True) -> Callable[[str], str]:
    def parse(text: str) -> str:
        value = text.strip().upper() if upper else text.strip()
        if value not in choices:
            raise ValueError(f"must be one of {', '.join(choices)}")
        return value

    return parse


def _bool(text: str) -> bool:
    value = text.strip().lower()
    if value in ("1", "true", "yes", "on"):
        return True
    if value in ("0", "false", "no", "off"):
        return False
    raise ValueError("must be 1 or 0 (true or false)")


def _layout(text: str) -> str:
    value = text.strip().lower()
    if value not in layout_names():
        raise ValueError(f"must be one of {', '.join(layout_names())}")
    return value


def _hex_byte(text: str) -> int:
    try:
        value = int(text, 0)
    except ValueError:
        raise ValueError("must be an endpoint address such as 0x01 or 0x82") from None
    if not 0 <= value <= 0xFF:
        raise ValueError("must be between 0x00 and 0xff")
    return value


def _stopbits(text: str) -> float:
    if text.strip() not in ("1", "1.5", "2"):
        raise ValueError("must be 1, 1.5 or 2")
    value = float(text)
    return int(value) if value.is_integer() else value


def _prefix(text: str) -> bytes:
    try:
        value = text.encode("latin-1")
    except UnicodeEncodeError:
        raise ValueError("must be bytes 0-255 (percent-encode them)") from None
    if len(value) > 16:
        raise ValueError("must be at most 16 bytes")
    return value


def _suffix(text: str) -> bytes:
    return parse_suffix(text)


_FRAMING = {
    "suffix": Param(_suffix, b"\r", "CR, LF, CRLF, TAB or NONE (frame by silence)"),
    "prefix": Param(_prefix, b"", "bytes the scanner sends before each code"),
    "idle_ms": Param(_int_range(5, 10_000), 50, "silence that ends a code when suffix=NONE"),
    "max_len": Param(_int_range(16, 65_536), 4096, "longer frames are dropped"),
}
_SERIAL = {
    "baudrate": Param(_int_range(50, 4_000_000), 9600),
    "bytesize": Param(_int_range(5, 8), 8),
    "parity": Param(_choice("N", "E", "O", "M", "S"), "N"),
    "stopbits": Param(_stopbits, 1),
}
_TIMEOUT = {"timeout": Param(_float_range(0.1, 120.0), 5.0, "seconds; never 0 (blocks forever)")}
_STATUS = {"status": Param(_bool, True, "ask the printer for DLE EOT status before and after each job")}
_KEYBOARD = {
    "layout": Param(_layout, "us", "the keyboard layout the scanner is programmed for"),
    "grab": Param(_bool, True, "take the device exclusively so scans never type elsewhere"),
}
_AIM_PARAM = {"aim": Param(_bool, False, "codes start with an AIM symbology identifier (]E0 ...)")}
_SYMBOLOGIES = Param(parse_symbologies, DEFAULT_SYMBOLOGIES,
                     "comma-separated: the only symbologies decoded (default ean13,code128,qr)")
_CAMERA = {
    "debounce_ms": Param(_int_range(0, 60_000), 1500, "the same code is reported once within this window"),
    "symbologies": _SYMBOLOGIES,
    "width": Param(_int_range(160, 4096), 1280),
    "height": Param(_int_range(120, 4096), 720),
    "fps": Param(_int_range(1, 120), 30),
}
_CLIP = {
    "debounce_ms": _CAMERA["debounce_ms"],
    "symbologies": _SYMBOLOGIES,
    "speed": Param(_float_range(0.0, 16.0), 1.0,
                   "1 plays at the clip's frame rate (frames skipped when decoding is slower); 0 decodes every frame"),
    "loop": Param(_bool, False, "start the clip again at its end"),
}
_USB = {
    "serial": Param(str, None, "the device's USB serial number, when several have the same VID:PID"),
    "interface": Param(_int_range(0, 31), 0),
    "out_ep": Param(_hex_byte, None, "bulk OUT endpoint (found from the descriptor when not given)"),
    "in_ep": Param(_hex_byte, None, "bulk IN endpoint (status answers)"),
    "timeout": Param(_float_range(0.1, 120.0), 5.0, "seconds; never 0 (blocks forever)"),
}

_D = "posd.drivers"
for _spec in (
    DriverSpec("scanner", "serial", f"{_D}.scanner_serial:SerialScanner", "path",
               {**_SERIAL, **_AIM_PARAM, **_FRAMING}, package="pyserial", modules=("serial",),
               description="serial scanner (by-id path)"),
    DriverSpec("scanner", "pty", f"{_D}.scanner_serial:PtyScanner", "path", {**_AIM_PARAM, **_FRAMING},
               description="pseudo-terminal at a symlink; write codes into it"),
    DriverSpec("scanner", "tcp", f"{_D}.scanner_serial:TcpScanner", "hostport",
               {**_AIM_PARAM, **_FRAMING, "timeout": Param(_float_range(0.1, 60.0), 2.0, "connect timeout")},
               description="client of a scanner bridge"),
    DriverSpec("scanner", "hid", f"{_D}.scanner_hid:HidScanner", "path",
               {**_KEYBOARD, **_AIM_PARAM, **_FRAMING}, package="evdev", modules=("evdev",),
               description="keyboard-wedge scanner (/dev/input/by-id/...-event-kbd)"),
    DriverSpec("scanner", "camera", f"{_D}.scanner_camera:CameraScanner", "path", _CAMERA,
               package="opencv-python-headless zxing-cpp", modules=("cv2", "zxingcpp", "numpy"),
               description="camera (/dev/v4l/by-id/...-video-index0)"),
    DriverSpec("scanner", "camera+file", f"{_D}.scanner_camera:ClipScanner", "path", _CLIP,
               package="opencv-python-headless zxing-cpp", modules=("cv2", "zxingcpp", "numpy"),
               description="a video clip played as a camera (tests, demos)"),
    DriverSpec("card_reader", "msr+hid", f"{_D}.card_msr:MsrHidReader", "path",
               {**_KEYBOARD, **_FRAMING}, package="evdev", modules=("evdev",),
               description="magstripe reader, keyboard wedge"),
    DriverSpec("card_reader", "msr+serial", f"{_D}.card_msr:MsrSerialReader", "path",
               {**_SERIAL, **_FRAMING}, package="pyserial", modules=("serial",),
               description="magstripe reader on a serial port"),
    DriverSpec("card_reader", "nfc+pcsc", f"{_D}.card_nfc:NfcReader", "name", {},
               package="pyscard", modules=("smartcard",),
               description="NFC reader through pcscd (card UID)"),
    DriverSpec("printer", "tcp", f"{_D}.printer_escpos:TcpPrinter", "hostport", {**_TIMEOUT, **_STATUS},
               package="python-escpos", modules=("escpos",), description="raw TCP (port 9100)"),
    DriverSpec("printer", "file", f"{_D}.printer_escpos:FilePrinter", "path", {**_TIMEOUT, **_STATUS},
               package="python-escpos", modules=("escpos",), description="printer device file"),
    DriverSpec("printer", "serial", f"{_D}.printer_escpos:SerialPrinter", "path",
               {**_SERIAL, **_TIMEOUT, **_STATUS}, package="pyserial", modules=("serial",),
               description="printer on a serial port"),
    DriverSpec("printer", "usb", f"{_D}.printer_escpos:UsbPrinter", "usbid", {**_USB, **_STATUS},
               package="pyusb", modules=("usb",), description="USB printer through libusb"),
    DriverSpec("printer", "preview", f"{_D}.printer_preview:PreviewPrinter", "path",
               package="python-escpos", modules=("escpos",), description="slip files in a directory"),
    DriverSpec("printer", "none", f"{_D}.printer_escpos:NullPrinter", "none",
               package="python-escpos", modules=("escpos",), description="no printer"),
):
    register(_spec)


# -- opening -----------------------------------------------------------------
def _driver_class(spec: DriverSpec) -> type:
    module_name, _, class_name = spec.target.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        _raise_if_missing_library(spec, exc)
        raise
    return getattr(module, class_name)


def _raise_if_missing_library(spec: DriverSpec, exc: ModuleNotFoundError) -> None:
    missing = (exc.name or "").split(".")[0]
    if missing and missing in spec.modules:
        raise DriverUnavailableError(
            f"the {spec.scheme}:// {spec.role} driver needs the Python package "
            f"{spec.package!r}, which is not installed (pip install {spec.package})"
        ) from exc


def _open(role: str, name: str, url_text: str, *args: Any, **kwargs: Any) -> Any:
    """The driver for ``url_text`` in ``role``, built with its parsed options."""
    url = parse_device_url(url_text)
    options = options_for(role, url)
    spec = spec_for(role, url.scheme)
    cls = _driver_class(spec)
    try:
        for module in spec.modules:  # the driver's library, checked before anything is opened
            __import__(module)
        return cls(name, url, *args, options=options, **kwargs)
    except ModuleNotFoundError as exc:  # drivers may import parts of their library lazily
        _raise_if_missing_library(spec, exc)
        raise


def open_scanner(
    name: str,
    url_text: str,
    on_data: DataCallback,
    on_status: StatusCallback | None = None,
    **kwargs: Any,
) -> Scanner:
    """Build the scanner for ``url_text`` (not started: call ``.start()``).

    Extra keyword arguments go to the ``Scanner`` base (backoff, timeouts).
    """
    return _open("scanner", name, url_text, on_data, on_status, **kwargs)


def open_card_reader(
    name: str,
    url_text: str,
    on_data: DataCallback,
    on_status: StatusCallback | None = None,
    on_rejected: RejectCallback | None = None,
    **kwargs: Any,
) -> Scanner:
    """Build the card reader for ``url_text`` (not started: call ``.start()``).

    Member numbers arrive through ``on_data``; a payment card only as a
    ``CardRejected`` through ``on_rejected``.
    """
    return _open("card_reader", name, url_text, on_data, on_status, on_rejected=on_rejected, **kwargs)


def open_printer(name: str, url_text: str, **settings: Any) -> Printer:
    """Build and open the printer for ``url_text``. Never blocks on the network.

    ``settings`` go to the ``Printer`` base: ``profile`` (python-escpos'
    capability profile, "default"), ``width_mm`` (80 or 58), ``code_pages``
    (the printer's own ESC t table, replacing the profile's), ``on_status``.
    """
    printer = _open("printer", name, url_text, **settings)
    printer.open()
    return printer


def validate_printer_settings(profile: str, width_mm: int) -> None:
    """Raise ValueError for an unknown capability profile or paper width."""
    spec = spec_for("printer", "none")
    module = importlib.import_module(_driver_class(spec).__module__)
    module.check_printer_settings(profile, width_mm)


def validate_code_pages(table: Any) -> dict[int, str]:
    """A printer's own ESC t table (``[printer] code_pages``) with canonical page names; ValueError
    naming the slot that is wrong (posd.drivers.codepages.check_code_page_table)."""
    spec = spec_for("printer", "none")
    _driver_class(spec)  # python-escpos present, or the error that says which package to install
    from .codepages import check_code_page_table

    return check_code_page_table(table)
