"""The one registry of device drivers: (role, scheme) -> driver.

Config validation calls ``validate(role, url)``: it parses the URL, checks
the scheme and every parameter without importing any driver or optional
library. ``open_scanner`` / ``open_printer`` import the driver module on
first use; if its library is missing, the error names the package to
install (unlike pyserial, an ImportError never becomes "unknown scheme").

Adding a driver is one ``register(DriverSpec(...))`` call; hid, camera,
card readers and more printer transports follow the same pattern.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from typing import Any, Callable, Literal, Mapping

from .base import DataCallback, Printer, Scanner, StatusCallback
from .framing import parse_suffix
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
    "validate_printer_settings",
]

ROLES = ("scanner", "printer")
Target = Literal["path", "hostport", "none"]


class DriverUnavailableError(RuntimeError):
    """The driver's optional library is not installed; the message says which."""


@dataclass(frozen=True)
class Param:
    """One URL parameter: its parser (raises ValueError) and default."""

    parse: Callable[[str], Any]
    default: Any
    help: str = ""


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
    unknown = sorted(set(url.params) - set(spec.params))
    if unknown:
        known = ", ".join(sorted(spec.params)) or "none"
        raise DeviceURLError(
            f"unknown parameter {unknown[0]!r} for {spec.scheme}:// {role}; known parameters: {known}"
        )
    options: dict[str, Any] = {}
    for name, param in spec.params.items():
        if name not in url.params:
            options[name] = param.default
            continue
        try:
            options[name] = param.parse(url.params[name])
        except ValueError as exc:
            raise DeviceURLError(f"bad parameter {name}={url.params[name]!r}: {exc}") from None
    return options


def _check_target(spec: DriverSpec, url: DeviceURL) -> None:
    where = f"{spec.scheme}:// {spec.role} URL"
    if spec.kind == "path":
        if not url.fs_path or url.fs_path == "/":
            raise DeviceURLError(f"{where} needs a path, e.g. {spec.scheme}:///dev/ttyUSB0")
    elif spec.kind == "hostport":
        if url.path not in ("", "/"):
            raise DeviceURLError(f"{where} takes host:port only, not a path ({url.path!r})")
        try:
            port = _port_of(url)
        except ValueError as exc:
            raise DeviceURLError(f"{where}: {exc}") from None
        if not url.host or port is None:
            raise DeviceURLError(f"{where} needs host:port, e.g. {spec.scheme}://127.0.0.1:9100")


def _port_of(url: DeviceURL) -> int | None:
    hostport = url.netloc.rpartition("@")[2]
    if hostport.endswith("]") or ":" not in hostport:
        return None
    text = hostport.rpartition(":")[2]
    return _int_range(1, 65535, "port")(text)


# -- parameter parsers -------------------------------------------------------
def _int_range(lo: int, hi: int, what: str = "value") -> Callable[[str], int]:
    def parse(text: str) -> int:
        try:
            value = int(text.strip(), 10)
        except ValueError:
            raise ValueError(f"{what} must be an integer") from None
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

_D = "posd.drivers"
for _spec in (
    DriverSpec("scanner", "serial", f"{_D}.scanner_serial:SerialScanner", "path",
               {**_SERIAL, **_FRAMING}, package="pyserial", modules=("serial",),
               description="serial scanner (by-id path)"),
    DriverSpec("scanner", "pty", f"{_D}.scanner_serial:PtyScanner", "path", _FRAMING,
               description="pseudo-terminal at a symlink; write codes into it"),
    DriverSpec("scanner", "tcp", f"{_D}.scanner_serial:TcpScanner", "hostport",
               {**_FRAMING, "timeout": Param(_float_range(0.1, 60.0), 2.0, "connect timeout")},
               description="client of a scanner bridge"),
    DriverSpec("printer", "tcp", f"{_D}.printer_escpos:TcpPrinter", "hostport", _TIMEOUT,
               package="python-escpos", modules=("escpos",), description="raw TCP (port 9100)"),
    DriverSpec("printer", "file", f"{_D}.printer_escpos:FilePrinter", "path",
               package="python-escpos", modules=("escpos",), description="printer device file"),
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


def _construct(spec: DriverSpec, *args: Any, **kwargs: Any) -> Any:
    cls = _driver_class(spec)
    try:
        return cls(*args, **kwargs)
    except ModuleNotFoundError as exc:  # drivers may import their library lazily
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
    url = parse_device_url(url_text)
    options = options_for("scanner", url)
    spec = spec_for("scanner", url.scheme)
    return _construct(spec, name, url, on_data, on_status, options=options, **kwargs)


def open_printer(
    name: str,
    url_text: str,
    *,
    profile: str = "default",
    width_mm: int = 80,
    on_status: StatusCallback | None = None,
) -> Printer:
    """Build and open the printer for ``url_text``. Never blocks on the network."""
    url = parse_device_url(url_text)
    options = options_for("printer", url)
    spec = spec_for("printer", url.scheme)
    printer = _construct(
        spec, name, url, profile=profile, width_mm=width_mm, on_status=on_status, options=options
    )
    printer.open()
    return printer


def validate_printer_settings(profile: str, width_mm: int) -> None:
    """Raise ValueError for an unknown capability profile or paper width."""
    spec = spec_for("printer", "none")
    module = importlib.import_module(_driver_class(spec).__module__)
    module.check_printer_settings(profile, width_mm)
