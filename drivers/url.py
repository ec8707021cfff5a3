"""Device URLs: one string names a device, its transport and its options.

Modelled on pyserial's ``serial_for_url``::

    serial:///dev/serial/by-id/usb-X?baudrate=9600&suffix=CR
    pty:///run/posd/scanner0?suffix=CR
    tcp://127.0.0.1:7001
    file:///dev/usb/lp0
    preview:///var/lib/posd/slips      (absolute)
    preview://var/slips                (relative: netloc + path)
    none

Parsing is pure and knows nothing about drivers; which schemes and options
exist for a role is the registry's business (``posd.drivers.registry``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from urllib.parse import quote, unquote, urlsplit

__all__ = ["DeviceURL", "DeviceURLError", "parse_device_url"]

_SCHEME_RE = re.compile(r"^[a-z][a-z0-9+.-]*$")
_PARAM_RE = re.compile(r"^[a-z][a-z0-9_]*$")
_PORT_RE = re.compile(r"[0-9]{1,5}")
# Parameter names whose values must never reach a log line.
_SECRET_PARAM_RE = re.compile(r"pass|secret|token|key|pin", re.IGNORECASE)
_MAX_URL_LEN = 2048


class DeviceURLError(ValueError):
    """A device URL that cannot be used; the message says why."""


@dataclass(frozen=True)
class DeviceURL:
    scheme: str
    netloc: str
    path: str
    params: dict[str, str] = field(default_factory=dict)
    raw: str = ""

    @property
    def fs_path(self) -> str:
        """The filesystem path a path-style URL names.

        ``serial:///dev/ttyUSB0`` -> ``/dev/ttyUSB0``; ``preview://var/slips``
        -> ``var/slips`` (a netloc makes the path relative, as users write it).
        """
        return self.netloc + self.path if self.netloc else self.path

    @property
    def host(self) -> str | None:
        return urlsplit(f"//{self.netloc}").hostname

    @property
    def port_text(self) -> str | None:
        """What follows the host's ":" as written (``127.0.0.1:9100`` -> ``"9100"``,
        ``[::1]:9100`` -> ``"9100"``); None when there is no ":" after the host."""
        hostport = self.netloc.rpartition("@")[2]
        if hostport.startswith("["):  # an IPv6 address: its own colons are inside the brackets
            rest = hostport.partition("]")[2]
            return rest[1:] if rest.startswith(":") else None
        host, sep, text = hostport.partition(":")
        return text if sep else None

    @property
    def port(self) -> int | None:
        """The port, when it is written as 1-65535 in the digits 0-9 and nothing else: the one port
        the registry's check accepted (``127.0.0.1:9220:9220`` or ``host: 9100`` has none)."""
        text = self.port_text
        if text is None or not _PORT_RE.fullmatch(text) or not 1 <= int(text) <= 65535:
            return None
        return int(text)

    @property
    def address(self) -> str:
        """Where the device is, without its settings (``tcp://10.0.0.5:9100`` for
        ``tcp://10.0.0.5:9100?timeout=8``), its password, a trailing ``/`` or the case of a host
        name or a USB id: what names the same device however the URL is spelled."""
        netloc = self.netloc.rpartition("@")[2].lower()
        path = self.path.rstrip("/") if self.path != "/" else ""
        return f"{self.scheme.lower()}://{netloc}{path}"

    def redacted(self) -> str:
        """The URL with any password and secret-looking parameters masked."""
        if self.scheme == "none":
            return "none"
        netloc = self.netloc
        if "@" in netloc:
            userinfo, _, hostport = netloc.rpartition("@")
            user = userinfo.split(":", 1)[0]
            netloc = f"{user}:***@{hostport}" if ":" in userinfo else netloc
        text = f"{self.scheme}://{netloc}{quote(self.path, safe='/:@-._~+')}"
        if self.params:
            pairs = (
                f"{k}={'***' if _SECRET_PARAM_RE.search(k) else quote(v, safe='')}"
                for k, v in self.params.items()
            )
            text += "?" + "&".join(pairs)
        return text

    def __str__(self) -> str:
        return self.redacted()


def parse_device_url(text: str) -> DeviceURL:
    """Parse a device URL, raising ``DeviceURLError`` with a clear message."""
    if not isinstance(text, str):
        raise DeviceURLError(f"device URL must be a string, got {type(text).__name__}")
    raw = text.strip()
    if not raw:
        raise DeviceURLError("device URL is empty (use 'none' for no device)")
    if len(raw) > _MAX_URL_LEN:
        raise DeviceURLError(f"device URL is longer than {_MAX_URL_LEN} characters")
    if any(ord(c) < 0x20 or ord(c) == 0x7F for c in raw):
        # urlsplit silently drops tabs and newlines; refuse instead.
        raise DeviceURLError("device URL contains control characters")
    if raw.lower() in ("none", "none://"):
        return DeviceURL("none", "", "", {}, raw)
    if "://" not in raw:
        raise DeviceURLError(
            f"device URL {raw!r} has no scheme: expected scheme://..., e.g. "
            "serial:///dev/ttyUSB0 or tcp://127.0.0.1:9100, or 'none'"
        )
    scheme = raw.split("://", 1)[0].lower()
    if not _SCHEME_RE.match(scheme):
        raise DeviceURLError(f"device URL scheme {scheme!r} is not a valid scheme name")
    parts = urlsplit(raw)
    if parts.fragment or raw.endswith("#"):
        raise DeviceURLError("device URL must not contain '#'")
    return DeviceURL(
        scheme=scheme,
        netloc=unquote(parts.netloc),
        path=unquote(parts.path),
        params=_parse_params(parts.query),
        raw=raw,
    )


def _parse_params(query: str) -> dict[str, str]:
    # Split by hand rather than parse_qsl: '+' stays a plus (a prefix may be
    # one), only %XX escapes are decoded.
    params: dict[str, str] = {}
    for piece in query.split("&"):
        if not piece:
            continue
        if "=" not in piece:
            raise DeviceURLError(f"device URL parameter {piece!r} has no value (use name=value)")
        name, _, value = piece.partition("=")
        name = unquote(name)
        if not _PARAM_RE.match(name):
            raise DeviceURLError(f"device URL parameter name {name!r} is not valid")
        if name in params:
            raise DeviceURLError(f"device URL parameter {name!r} is given more than once")
        params[name] = unquote(value)
    return params
