"""posd.toml: load, validate, and explain mistakes by key and line.

A lane PC is set up by store IT from a text file; a typo must stop the daemon
with one sentence naming the key (and the line, when we can find it), never a
traceback. Device URLs are checked against the driver registry here, so an
unknown scheme is reported at `posd config check` time, not at the first scan.
"""

from __future__ import annotations

import ipaddress
import json
import math
import os
import re
import ssl
import tempfile
import tomllib
import unicodedata
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel, ConfigDict, Field, ValidationError, ValidationInfo, field_validator, model_validator

from posd.drivers import registry
from posd.sync.protocol import base_url_problem


@dataclass(frozen=True)
class ConfigProblem:
    """One mistake in a config file: what is wrong, and where."""

    message: str
    key: str | None = None
    line: int | None = None
    # What the message says, for those who say it in the lane's language (doctor): a catalog key of
    # posd.core.messages_ops ("config.unknown_key") and its parameters; "" when only the message says it.
    code: str = ""
    params: tuple[tuple[str, str], ...] = ()

    def __str__(self) -> str:
        where = ""
        if self.key:
            where += f" at '{self.key}'"
        if self.line:
            where += f" (line {self.line})"
        return f"config error{where}: {self.message}"


class ConfigError(Exception):
    """A config file that cannot run, with a message for store IT.

    ``problems`` lists every mistake found (``posd config check`` prints them
    all); the message is the first, with a count of the others, on one line.
    """

    def __init__(self, message: str, *, key: str | None = None, line: int | None = None,
                 problems: list[ConfigProblem] | None = None):
        self.problems = problems or [ConfigProblem(message, key, line)]
        first = self.problems[0]
        self.key, self.line = first.key, first.line
        more = len(self.problems) - 1
        super().__init__(str(first) + (f" (and {more} more: `posd config check` lists them)" if more else ""))


class _Section(BaseModel):
    # strict: a TOML string is not a bool or a number (allow_remote = "yes" must not open a listener, nor
    # verify_tls = "no" turn TLS checking off); an integer is still a number where a float is asked for.
    # Arrays are tuples here, so tuple fields say strict=False (their items stay strict).
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)


class LaneConfig(_Section):
    store_id: str = Field(pattern=r"^[A-Za-z0-9_.-]{1,64}$")
    lane_id: str = Field(pattern=r"^[A-Za-z0-9_.-]{1,64}$")
    locale: Literal["pl", "fa", "en"] = "en"
    currency: str = "PLN"  # an ISO 4217 currency in circulation: _iso_currency
    timezone: str = "UTC"
    country: str | None = Field(default=None, pattern=r"^[A-Z]{2}$")  # phone numbers without +country

    @field_validator("lane_id")
    @classmethod
    def _not_a_claimed_identity(cls, v: str) -> str:
        if re.fullmatch(r".+\.[0-9]+", v):
            # central reads L01.2 as the next history of L01 (a replaced ledger.db) and counts a sale the
            # two share once: two tills configured KASA.2 and KASA.3 would refuse each other's sales
            raise ValueError(f"{v!r} ends in .N, which posd gives a lane whose ledger.db was replaced (L01.2 after "
                             "L01): name the till without it, such as KASA-2")
        return v

    @field_validator("currency")
    @classmethod
    def _iso_currency(cls, v: str) -> str:
        if not is_money_currency(v):
            raise ValueError(f"{v!r} is not an ISO 4217 currency code in use, such as PLN, EUR or IRR "
                             "(upper case)")
        return v

    @field_validator("country")
    @classmethod
    def _phone_country(cls, v: str | None) -> str | None:
        import phonenumbers

        if v is not None and phonenumbers.country_code_for_region(v) == 0:  # numbers typed without +country
            raise ValueError(f"{v!r} is not a country with a telephone numbering plan (ISO 3166 alpha-2, such as "
                             "PL, IR or GB)")
        return v

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, v: str) -> str:
        try:
            ZoneInfo(v)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise ValueError(f"unknown time zone {v!r}") from exc
        return v


class ApiConfig(_Section):
    allow_remote: bool = False  # binding beyond loopback must be asked for explicitly (before listen: it reads it)
    listen: str = "127.0.0.1:8765"
    token_file: str = "api.token"  # relative paths are under storage.dir
    allowed_origins: tuple[str, ...] = Field(default=(), strict=False)

    @field_validator("listen")
    @classmethod
    def _host_port(cls, v: str, info: ValidationInfo) -> str:
        host, port = split_listen(v)
        if not 0 < port < 65536:
            raise ValueError("port must be 1-65535")
        ipaddress.ip_address(host)  # raises ValueError with the address in it
        # (an allow_remote that is itself wrong is not in info.data: its own mistake is the one told)
        if not ipaddress.ip_address(host).is_loopback and info.data.get("allow_remote", True) is False:
            raise ValueError("listen must be a loopback address unless allow_remote = true")
        return v

    @field_validator("token_file")
    @classmethod
    def _a_file(cls, v: str) -> str:
        if not v.strip():  # "" would name storage.dir itself
            raise ValueError('must name a file, such as "api.token" (a relative path is under storage.dir)')
        return v

    @field_validator("allowed_origins")
    @classmethod
    def _origins(cls, v: tuple[str, ...]) -> tuple[str, ...]:
        for origin in v:
            if not re.fullmatch(r"https?://[^/\s]+", origin):
                raise ValueError(f"origin {origin!r} must be scheme://host[:port] with no path")
        return v

    @property
    def host(self) -> str:
        return split_listen(self.listen)[0]

    @property
    def port(self) -> int:
        return split_listen(self.listen)[1]


MAX_MIN_FREE_MB = 1024 * 1024  # 1 TiB in MB


class StorageConfig(_Section):
    dir: str = "/var/lib/posd"
    # Below this much free space on the storage file system, health warns and `posd doctor` fails:
    # ledger.db must always be able to take the next sale. At most 1 TiB: a larger figure is a typo (an
    # extra digit or two), and one no lane's disk meets would fail doctor for ever.
    min_free_mb: int = Field(default=200, ge=0)

    @field_validator("min_free_mb")
    @classmethod
    def _at_most_a_tebibyte(cls, v: int) -> int:
        if v > MAX_MIN_FREE_MB:
            raise ValueError(f"must be at most {MAX_MIN_FREE_MB} (1 TiB in MB), such as 200")
        return v

    @field_validator("dir")
    @classmethod
    def _a_folder(cls, v: str) -> str:
        if not v.strip():  # "" would be the config file's own folder (/etc/posd): the ledger beside the config
            raise ValueError('must name a folder, such as "/var/lib/posd" (a relative path is under the config\'s '
                             "folder)")
        return v


class StatusConfig(_Section):
    """An optional read-only listener for the store network: the status page and health, never the API."""

    listen: str | None = None

    @field_validator("listen")
    @classmethod
    def _host_port(cls, v: str | None) -> str | None:
        if v is not None:
            host, port = split_listen(v)
            if not 0 < port < 65536:
                raise ValueError("port must be 1-65535")
            ipaddress.ip_address(host)
        return v

    @property
    def host(self) -> str:
        return split_listen(self.listen or "")[0]

    @property
    def port(self) -> int:
        return split_listen(self.listen or "")[1]


class CentralConfig(_Section):
    url: str
    store_secret: str | None = None
    store_secret_file: str | None = None
    verify_tls: bool = True
    client_cert: str | None = None
    client_key: str | None = None
    # Replaces the member-token keys central publishes in the program: "kid:base64url" entries.
    member_token_public_key: tuple[str, ...] = Field(default=(), strict=False)
    member_token_clock_skew_s: float = Field(default=30.0, ge=0, le=600)
    push_interval_s: float = Field(default=1.0, gt=0, le=3600)
    pull_interval_s: float = Field(default=30.0, gt=0, le=86400)
    # how long a redemption or voucher use waits for central's authorisation before the offline path
    authorise_timeout_ms: int = Field(default=800, ge=50, le=10_000)

    @field_validator("url")
    @classmethod
    def _http_url(cls, v: str) -> str:
        # The sync client's own rule (posd.sync.protocol.base_url_problem): `config check` finds what
        # `posd run` would otherwise refuse after creating the ledger.
        problem = base_url_problem(v)
        if problem:
            raise ValueError(f"must be an http(s) URL such as https://loyalty.example.com: {problem}")
        return v.rstrip("/")

    @field_validator("verify_tls", "client_cert", "client_key")
    @classmethod
    def _https_only(cls, v: Any, info: ValidationInfo) -> Any:
        # Read by the TLS handshake alone: with a plain http:// central nothing would read them, and the
        # lane would seem to present a certificate (or skip checking one) that it never does.
        # (a url that is itself wrong is not in info.data: its own mistake is the one told)
        url = info.data.get("url")
        if url is not None and not url.startswith("https://") and v not in (None, True):
            raise ValueError("only applies to an https:// central, and central.url is plain http://: remove it, "
                             "or make central.url https://")
        return v

    @field_validator("store_secret")
    @classmethod
    def _secret_text(cls, v: str | None) -> str | None:
        if v is not None:
            _decode_secret(v)
        return v

    @field_validator("member_token_public_key", mode="before")
    @classmethod
    def _key_list(cls, v: Any) -> Any:
        return (v,) if isinstance(v, str) else v  # one key may be written as a plain string

    @field_validator("member_token_public_key")
    @classmethod
    def _keys(cls, v: tuple[str, ...]) -> tuple[str, ...]:
        from posd.core.member_tokens import parse_key_entry

        kids = set()
        for entry in v:
            spec = parse_key_entry(entry)
            if spec is None:
                raise ValueError(f"{entry!r} is not kid:key (kid 1-16 of A-Z a-z 0-9 . _ -, key a raw Ed25519 "
                                 "public key in base64url, 43 characters)")
            if spec.kid in kids:
                raise ValueError(f"key id {spec.kid!r} is listed twice")
            kids.add(spec.kid)
        return v

    def token_keys(self) -> tuple[Any, ...]:
        """The override keys, parsed (posd.core.member_tokens.KeySpec)."""
        from posd.core.member_tokens import parse_key_entry

        return tuple(spec for spec in map(parse_key_entry, self.member_token_public_key) if spec is not None)

    @model_validator(mode="after")
    def _one_secret(self) -> CentralConfig:
        # Neither is found with the files (referenced_file_problems): `config check` and `posd run` name it.
        if self.store_secret is not None and self.store_secret_file is not None:
            raise ValueError("set one of store_secret_file (a file, mode 0600) or store_secret (inline), not both")
        if self.client_key and not self.client_cert:
            raise ValueError("client_key needs client_cert")
        return self

    def secret_bytes(self, base: Path) -> bytes:
        if self.store_secret is not None:
            return _decode_secret(self.store_secret)
        return read_secret_file(resolve(base, self.store_secret_file or ""))

    def cert(self, base: Path) -> tuple[str, str] | str | None:
        """The mTLS client certificate (and key) as requests takes it, resolved against the config's folder."""
        if not self.client_cert:
            return None
        cert = str(resolve(base, self.client_cert))
        return (cert, str(resolve(base, self.client_key))) if self.client_key else cert


def is_money_currency(code: str) -> bool:
    """An ISO 4217 code, exactly as written there, of a currency in use: not the codes without minor
    units (gold XAU, SDR XDR, the test code XTS, "no currency" XXX). The table is the iso4217
    package's, which follows ISO's amendments."""
    import iso4217

    try:
        return iso4217.Currency(code).exponent is not None
    except ValueError:
        return False


def _decode_secret(text: str) -> bytes:
    from posd.sync.protocol import secret_from_text  # "hex:..." decodes as central decodes it

    return secret_from_text(text)


class OfflineConfig(_Section):
    """Burns central did not authorise (it did not answer in time), capped like a card terminal's floor limit."""

    # At most 10^12 points (the protocol's largest delta) and a million uses: beyond SQLite's integers
    # a cap would fail every offline burn it is compared with instead of allowing them.
    max_redeem_points_per_member: int = Field(default=1000, ge=0, le=10**12)
    max_redeem_points_per_lane: int = Field(default=5000, ge=0, le=10**12)
    max_voucher_uses_per_member: int = Field(default=3, ge=0, le=10**6)
    max_voucher_uses_per_lane: int = Field(default=20, ge=0, le=10**6)
    max_hours: float = Field(default=24.0, ge=0)


class DeviceConfig(_Section):
    role: ClassVar[str]  # the driver registry's role: its schemes are the valid ones
    url: str
    name: str | None = None

    @field_validator("url")
    @classmethod
    def _known_url(cls, v: str) -> str:
        registry.validate(cls.role, v)
        return v

    @field_validator("name")
    @classmethod
    def _some_name(cls, v: str | None) -> str | None:
        # an empty name ran under the default one, which another device may have by name
        if v is not None and not v.strip():
            raise ValueError("must not be empty: leave name out for the default name")
        if v is not None and any(unicodedata.category(ch) in ("Cc", "Cf", "Zl", "Zp") for ch in v):
            # in health, events, log lines and /metrics labels: a NUL or a line end there breaks each
            raise ValueError("must not hold a control or format character (a line end, NUL, tab, bidi mark)")
        return v


class ScannerConfig(DeviceConfig):
    role = "scanner"


class CardReaderConfig(DeviceConfig):
    role = "card_reader"


class PrinterConfig(DeviceConfig):
    role = "printer"
    url: str = "none"
    profile: str = "default"
    width_mm: Literal[58, 80] = 80
    # The printer's own ESC t slots when they are not its profile's (a clone: `posd print-test` shows
    # them): slot -> code page, replacing the profile's table for printing and previews.
    code_pages: dict[int, str] | None = Field(default=None, strict=False)  # TOML keys are text: "18" is slot 18

    @property
    def device_name(self) -> str:
        """The printer's name in health, events, metrics and doctor (`name`, or "printer")."""
        return self.name or PRINTER_NAME

    @property
    def enabled(self) -> bool:
        """A printer is configured: the URL's scheme is not none, however it is written (none,
        NONE, none://), as the driver registry reads it."""
        return registry.parse_device_url(self.url).scheme != "none"

    @field_validator("code_pages", mode="before")
    @classmethod
    def _code_pages(cls, v: Any) -> Any:
        return None if v is None else registry.validate_code_pages(v)

    @field_validator("profile")
    @classmethod
    def _profile(cls, v: str) -> str:
        # its own key and line, whatever else of the table is wrong; "did you mean" on a typo
        registry.validate_printer_settings(v, 80)
        return v


class Config(_Section):
    lane: LaneConfig
    api: ApiConfig = Field(default_factory=ApiConfig)
    storage: StorageConfig = Field(default_factory=StorageConfig)
    central: CentralConfig
    offline: OfflineConfig = Field(default_factory=OfflineConfig)
    scanner: tuple[ScannerConfig, ...] = Field(default=(), strict=False)
    card_reader: tuple[CardReaderConfig, ...] = Field(default=(), strict=False)
    printer: PrinterConfig = Field(default_factory=PrinterConfig)
    status: StatusConfig = Field(default_factory=StatusConfig)
    source: str = ""  # the file this came from, for messages

    @field_validator("status")
    @classmethod
    def _status_apart_from_api(cls, status: StatusConfig, info: ValidationInfo) -> StatusConfig:
        api = info.data.get("api")
        if api is not None and status.listen and status.port == api.port and (
                status.host == api.host or "0.0.0.0" in (status.host, api.host) or "::" in (status.host, api.host)):
            raise ValueError(f"listen {status.listen} shares the API's port ({api.listen}): give it a port of its own")
        return status

    @property
    def storage_dir(self) -> Path:
        return resolve(Path(self.source).parent if self.source else Path.cwd(), self.storage.dir)

    @property
    def base_dir(self) -> Path:
        return Path(self.source).parent if self.source else Path.cwd()

    def scanners(self) -> list[tuple[str, ScannerConfig]]:
        return [(s.name or f"scanner{i}", s) for i, s in enumerate(self.scanner)]

    def card_readers(self) -> list[tuple[str, CardReaderConfig]]:
        return [(c.name or f"card_reader{i}", c) for i, c in enumerate(self.card_reader)]

    def device_url(self, url: str) -> str:
        """The URL with a relative device path made absolute against the config's folder."""
        return absolutize_url(url, self.base_dir)


def split_listen(v: str) -> tuple[str, int]:
    host, sep, port = v.rpartition(":")
    if not sep or not (port.isascii() and port.isdigit()):  # int() also reads ١٩٣٠١ or ８７６５: not a port to type
        raise ValueError("must be host:port, e.g. 127.0.0.1:8765 (the port in the digits 0-9)")
    return host.strip("[]"), int(port)


PATH_SCHEMES = ("pty", "serial", "file", "preview", "camera+file", "msr+serial")


def absolutize_url(url: str, base: Path) -> str:
    """A relative device path made absolute against ``base``. Its folder is resolved, the device's
    own name is not: that name is often a symlink (a /dev/serial/by-id link, the link a pty://
    scanner makes, left behind by a daemon killed with SIGKILL), and what it pointed to when the
    config was read is not the device."""
    scheme, sep, rest = url.partition("://")
    if not sep or scheme not in PATH_SCHEMES or rest.startswith("/"):
        return url
    path, q, query = rest.partition("?")
    full = base / path
    full = full.resolve() if full.name in ("", "..") else full.parent.resolve() / full.name
    return f"{scheme}://{full}{q}{query}"


def resolve(base: Path, p: str) -> Path:
    path = Path(p)
    return path if path.is_absolute() else (base / path)


MAX_CONFIG_BYTES = 1024 * 1024  # a lane's config is a few kB


def load(path: str | Path, *, check_files: bool = False) -> Config:
    """The config in ``path``; with ``check_files`` the files it names are checked too
    (``check_files``), and every problem found is in the ConfigError."""
    path = Path(path)
    try:
        with path.open("rb") as f:  # a bounded read: /dev/zero or a log named by mistake ends here
            raw = f.read(MAX_CONFIG_BYTES + 1)
        if len(raw) > MAX_CONFIG_BYTES:
            raise ConfigError(f"{path} is larger than {MAX_CONFIG_BYTES // 1024 // 1024} MiB: not a posd config")
        text = raw.decode("utf-8").replace("\r\n", "\n").replace("\r", "\n")  # line ends as read_text reads them
    except PermissionError as exc:  # another user may: said as whom
        from posd.storage.inspect import running_user

        raise ConfigError(f"cannot read {path} as {running_user()}: permission denied; run as root or the posd "
                          "user") from exc
    except OSError as exc:
        raise ConfigError(f"cannot read {path}: {exc.strerror}") from exc
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path} is not UTF-8 text") from exc
    return parse(text, source=str(path.resolve()), check_files=check_files)


CLIP_SCHEME = "camera+file://"  # a scanner playing a video file (demos, tests): the file must exist
# Files a config names that must exist and be readable when posd starts: key -> what it is.
REFERENCED_FILES = {
    "central.store_secret_file": "the store secret",
    "central.client_cert": "the client certificate",
    "central.client_key": "the client key",
}


def referenced_files(config: Config) -> list[tuple[str, str, Path]]:
    """(key, what, path) of every file the config names that posd reads at start."""
    central = config.central
    out = []
    for key, what in REFERENCED_FILES.items():
        value = getattr(central, key.split(".", 1)[1])
        if value:
            out.append((key, what, resolve(config.base_dir, value)))
    return out


def read_secret_file(path: Path) -> bytes:
    """The store secret in ``path``; a ConfigError naming central.store_secret_file when it is unusable."""
    try:
        text = path.read_text(encoding="utf-8").strip()
        if text.startswith("\ufeff"):  # an editor's UTF-8 signature: signed with it, every request is 401
            raise ValueError("starts with a byte-order mark (U+FEFF, an editor's UTF-8 signature) that would "
                             "be signed as part of the secret: save the file without one")
        if "\n" in text or "\r" in text:  # the package's install script keeps the first line
            raise ValueError("holds more than one line: the store secret is the file's one line")
        return _decode_secret(text)
    except OSError as exc:
        raise ConfigError(f"cannot read {path}: {exc.strerror}", key="central.store_secret_file") from exc
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path} is not UTF-8 text", key="central.store_secret_file") from exc
    except ValueError as exc:
        raise ConfigError(f"{path}: {exc}", key="central.store_secret_file") from exc


def read_token(path: Path) -> str | None:
    """The API's bearer token in ``path``, or None when there is no such file yet (posd makes one at its
    first start). A file that is there but unusable is a ConfigError naming api.token_file: posd never
    changes an existing token file (docs/install.md), not even an empty one."""
    key = "api.token_file"
    try:
        data = path.read_bytes()
    except (FileNotFoundError, NotADirectoryError):  # a folder on the way that is not one: storage.dir's
        return None
    except IsADirectoryError as exc:
        raise ConfigError(f"the API token {path} is a directory, not a file", key=key) from exc
    except OSError as exc:
        raise ConfigError(f"cannot read the API token {path}: {exc.strerror}", key=key) from exc
    try:
        token = data.decode("utf-8").strip()
    except UnicodeDecodeError as exc:
        raise ConfigError(f"the API token {path} is not UTF-8 text", key=key) from exc
    if not token:
        raise ConfigError(f"the API token {path} is empty: write the POS's token in it, or remove it and posd "
                          "makes a new one (0600) at its next start", key=key)
    odd = next((c for c in token if not "!" <= c <= "~"), None)
    if odd is not None:  # an HTTP header carries these bytes as latin-1: a POS could never send the token
        raise ConfigError(f"the API token {path} holds {odd!r} (U+{ord(odd):04X}): a bearer token is one word of "
                          "visible ASCII (letters, digits, punctuation) that an HTTP header can carry", key=key)
    return token


def referenced_file_problems(data: dict[str, Any], base: Path, text: str = "",
                             refused: frozenset[tuple[str, str]] = frozenset()) -> list[ConfigProblem]:
    """Every named file that is missing, unreadable (by this user) or unusable, by key and line.

    Works on the TOML as read, so the files are checked even when other keys are wrong: a key is
    checked when its value is text and validation did not refuse it (``refused``: (table, key) pairs,
    and (scanner[i], key) for one device of a list: another scanner's mistake does not hide a clip).
    """
    problems = []

    def problem(key: str, message: str) -> None:
        problems.append(ConfigProblem(message, key, find_line(text, tuple(key.split("."))) if text else None))

    def value(table: str, key: str, default: str | None = None) -> str | None:
        section = data.get(table, {})
        if not isinstance(section, dict) or (table, key) in refused:
            return None
        found = section.get(key, default)
        return found if isinstance(found, str) and found else None

    central = data.get("central")
    if isinstance(central, dict) and "store_secret" not in central and "store_secret_file" not in central:
        problems.append(ConfigProblem("set store_secret_file (a file, mode 0600) or store_secret (inline)",
                                      "central", find_line(text, ("central",)) if text else None))
    for key, what in REFERENCED_FILES.items():
        named = value(*key.split("."))
        if named is None:
            continue
        path = resolve(base, named)
        if not path.exists():
            problem(key, f"{what} {path} does not exist")
        elif not path.is_file():
            problem(key, f"{what} {path} is not a file")
        elif not os.access(path, os.R_OK):
            problem(key, f"{what} {path} is not readable by this user (uid {os.getuid()})")
        elif key == "central.store_secret_file":
            try:
                read_secret_file(path)
            except ConfigError as exc:
                problem(key, exc.problems[0].message)
    if (cert_said := client_cert_problem(value("central", "client_cert"), value("central", "client_key"), base,
                                          {p.key for p in problems})) is not None:
        problem(*cert_said)
    scanners = data.get("scanner")
    for i, entry in enumerate(scanners if isinstance(scanners, list) else []):
        url = entry.get("url") if isinstance(entry, dict) else None
        if isinstance(url, str) and url.startswith(CLIP_SCHEME) and (f"scanner[{i}]", "url") not in refused:
            try:
                clip = Path(registry.parse_device_url(absolutize_url(url, base)).fs_path)
            except ValueError:  # a malformed URL: validation names it
                continue
            if not clip.is_file():
                why = "is a directory, not a video file" if clip.is_dir() else "does not exist"
                problems.append(ConfigProblem(f"the camera clip {clip} {why}", f"scanner[{i}].url",
                                              find_line(text, ("scanner", i, "url")) if text else None))
    storage_dir = value("storage", "dir", StorageConfig.model_fields["dir"].default)
    if storage_dir is None:
        return problems
    storage = resolve(base, storage_dir)
    token_file = value("api", "token_file", ApiConfig.model_fields["token_file"].default)
    token = resolve(storage, token_file) if token_file else None
    try:
        storage_said = _storage_problem(storage)
        token_said = _token_problem(token, storage, storage_said is not None) if token is not None else None
    except PermissionError as exc:  # a folder on the way this user may not enter (posd's own user may)
        problem("storage.dir", f"this user (uid {os.getuid()}) may not look into {storage} or a folder above it "
                               f"({exc.strerror}): check the config as root or as the user posd runs as")
        return problems
    if token_said:
        problem("api.token_file", token_said)
    if storage_said:
        problem("storage.dir", storage_said)
    return problems


def client_cert_problem(cert: str | None, key: str | None, base: Path,
                         named: set[str]) -> tuple[str, str] | None:
    """(key, message) when the client certificate and its key (in the certificate's file, or client_key)
    do not load as TLS loads them: a key that is a certificate, or another certificate's key, passed,
    and every contact with central then failed with an SSLError that named no file. None when they load,
    or when a file was already named (``named``: the keys with a problem)."""
    if cert is None or {"central.client_cert", "central.client_key"} & named:
        return None
    cert_path, key_path = resolve(base, cert), resolve(base, key) if key else None
    try:
        # never OpenSSL's prompt for an encrypted key's passphrase: none is given, and TLS to central has none
        ssl.create_default_context().load_cert_chain(cert_path, key_path, password=lambda: b"")
    except ssl.SSLError as exc:
        reason = exc.reason.lower().replace("_", " ") if exc.reason else "no PEM key that fits it"
        if key_path is None:
            return "central.client_cert", (f"the client certificate {cert_path} does not load with a key in the "
                                           f"same file ({reason}): name its key in central.client_key")
        return "central.client_key", (f"the client key {key_path} does not load with the client certificate "
                                      f"{cert_path} ({reason}): it must be that certificate's private key, PEM")
    except OSError:
        return None  # unreadable: the file checks say so
    return None


def _storage_problem(storage: Path) -> str | None:
    """Why posd, as this user, could not use (or make) its storage folder; None when it can."""
    if storage.exists() and not storage.is_dir():
        return f"{storage} is not a directory"
    if storage.is_symlink() and not storage.exists():  # a link to a folder that is there is that folder
        return f"{storage} is a link to {os.readlink(storage)}, which does not exist"
    if storage.exists() and not os.access(storage, os.W_OK | os.X_OK):
        return f"{storage} is not writable by this user (uid {os.getuid()})"
    if storage.exists() and (why := refuses_files(storage)):
        return f"{storage} refuses new files ({why})"
    from posd.storage.db import LOCK_FILE

    # posd run opens each to write (a folder in a database's place is its storage error, exit 3)
    for name in (*DATABASE_FILES, LOCK_FILE):
        kept = storage / name
        if storage.exists() and kept.is_file() and not os.access(kept, os.R_OK | os.W_OK):
            return f"{kept} is not writable by this user (uid {os.getuid()}): posd must run as its owner"
    if not storage.exists():  # posd makes it at its first start: only in a folder it may write, not under a file
        why = _cannot_make(storage)
        return f"{storage} cannot be made: {why}" if why else None
    return None


def _token_problem(token: Path, storage: Path, storage_bad: bool) -> str | None:
    """Why the API token cannot be read or, not there yet, made; None when it can. A token to be made
    inside a storage folder posd cannot use or make is said once, under storage.dir."""
    if token.exists() and not os.access(token, os.R_OK):
        return f"the API token {token} is not readable by this user (uid {os.getuid()})"
    try:
        read_token(token)
    except ConfigError as exc:
        return exc.problems[0].message
    if token.exists() or token.is_symlink() or (storage in token.parents and (storage_bad or not storage.exists())):
        return None
    why = _cannot_make(token)
    return f"the API token {token} cannot be made: {why}" if why else None


def _cannot_make(path: Path) -> str | None:
    """Why posd could not make ``path`` (not there yet) with its folders, or None: the nearest folder
    above it that is there must be a folder this user may write in."""
    above = next((a for a in path.parents if a.exists() or a.is_symlink()), None)
    if above is None:
        return None
    if above.is_symlink() and not above.exists():
        return f"{above} is a link to {os.readlink(above)}, which does not exist"
    if not above.is_dir():
        return f"{above} is not a directory"
    if not os.access(above, os.W_OK | os.X_OK):
        return f"{above} is not writable by this user (uid {os.getuid()})"
    if why := refuses_files(above):
        return f"{above} refuses new folders ({why})"
    return None


def refuses_files(folder: Path) -> str | None:
    """What the kernel says when something is made in ``folder``, else None. os.access lets root write
    anywhere, /proc and /sys included, where nothing can be made: a trial folder, removed at once."""
    try:
        os.rmdir(tempfile.mkdtemp(prefix=".posd-check-", dir=folder))
    except OSError as exc:
        return exc.strerror or str(exc)
    return None


def placed(exc: ConfigError, source: str | Path) -> ConfigError:
    """``exc`` with the line its key is written on in the config file ``source``, when it came without
    one: found once the config was read (a file it names changed since, a folder the kernel refuses)."""
    if exc.line is not None or not exc.key or len(exc.problems) != 1:
        return exc
    try:
        text = Path(source).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return exc
    loc = tuple(int(part) if part.isdigit() else part for part in re.split(r"[.\[\]]+", exc.key) if part)
    return ConfigError(exc.problems[0].message, key=exc.key, line=find_line(text, loc))


DEVICE_TABLES = ("scanner", "card_reader")
PRINTER_NAME = "printer"  # the printer's name in health, events and doctor when [printer] name is not set


def device_name_problems(data: dict[str, Any], text: str) -> list[ConfigProblem]:
    """Every device name used twice (written, or the default scanner0, card_reader0, ...): health,
    events and `posd scan --scanner` tell devices apart by name. Each repeat names the first use."""
    printer = data.get("printer")
    named = isinstance(printer, dict) and isinstance(printer.get("name"), str)
    first: dict[str, tuple[str, int | None]] = {
        printer["name"] if named else PRINTER_NAME:  # type: ignore[index]
            ("printer.name" if named else "printer", find_line(text, ("printer", "name") if named else ("printer",)))}
    problems = []
    for table in DEVICE_TABLES:
        entries = data.get(table)
        if not isinstance(entries, list):
            continue
        for i, entry in enumerate(entries):
            if not isinstance(entry, dict):
                continue
            name = entry.get("name", f"{table}{i}")
            if not isinstance(name, str):
                continue  # the type check says so
            written = "name" in entry
            key = f"{table}[{i}]" + (".name" if written else "")
            line = find_line(text, (table, i, "name") if written else (table, i))
            if name in first:
                other, other_line = first[name]
                where = f"{other} (line {other_line})" if other_line else other
                default = "" if written else f" (the default name of an unnamed {table})"
                problems.append(ConfigProblem(f"device name {name!r}{default} is already used by {where}: "
                                              "give each device its own name", key, line))
            else:
                first[name] = (key, line)
    return problems


# Schemes whose device is a file the device opens alone (a pty link posd makes, a serial port, an input
# device it grabs): two devices on one path fight over it, and a second pty link replaces the first.
EXCLUSIVE_SCHEMES = frozenset({"pty", "serial", "hid", "msr+serial", "msr+hid", "file"})


def device_path_problems(config: Config, text: str) -> list[ConfigProblem]:
    """Every device path two devices name (scanners, card readers, the printer). Each repeat names the
    first use."""
    devices = [(f"scanner[{i}].url", ("scanner", i, "url"), s.url) for i, s in enumerate(config.scanner)]
    devices += [(f"card_reader[{i}].url", ("card_reader", i, "url"), c.url) for i, c in enumerate(config.card_reader)]
    devices.append(("printer.url", ("printer", "url"), config.printer.url))
    first: dict[str, tuple[str, int | None]] = {}
    problems = []
    live = protected_files(config)  # a typo naming ledger.db or the secret: a printer would write over it
    for key, where, url in devices:
        try:
            parsed = registry.parse_device_url(config.device_url(url))
        except ValueError:
            continue  # its own check says so
        if parsed.scheme not in EXCLUSIVE_SCHEMES or not parsed.fs_path:
            continue
        path = os.path.normpath(parsed.fs_path)
        # One node by two names (/dev/serial/by-id/... and the /dev/ttyUSB0 it links to) is one device;
        # a pty link is posd's own to make, so its path is the name, whatever an old link points at.
        node = path if parsed.scheme == "pty" else os.path.realpath(path)
        line = find_line(text, where)
        # the file the path names (a pty's link itself, in its folder as resolved)
        named = Path(os.path.realpath(os.path.dirname(os.path.abspath(path)))) / os.path.basename(path) \
            if parsed.scheme == "pty" else Path(node)
        # a pty's link posd makes itself (replacing only a link): by name; any other device also as a file
        kept = live.get(named) if parsed.scheme == "pty" else protected_file(named, live)
        if kept is not None:
            problems.append(ConfigProblem(f"{path} is {kept}: name the device's own path", key, line))
            continue
        if node in first:
            other, other_line = first[node]
            shown = f"{other} (line {other_line})" if other_line else other
            same = "" if node == path else f" ({node})"
            problems.append(ConfigProblem(f"{path}{same} is already the device of {shown}: two devices cannot "
                                          "share one path", key, line))
        else:
            first[node] = (key, line)
    return problems


# Both databases of the storage folder with the files SQLite keeps beside them (the -wal holds the newest commits).
DATABASE_FILES = tuple(f"{db}{side}" for db in ("ledger.db", "cache.db")
                       for side in ("", "-wal", "-shm", "-journal"))


def live_storage_files(config: Config, *, token: bool = True) -> dict[Path, str]:
    """The files the daemon keeps in its storage folder, each by its resolved path: both databases with
    SQLite's files beside them (the -wal holds the newest commits), the lock, the print worker's note
    of the job in hand (its guard against a slip that kills posd), the boot counter, store IT's
    acknowledgement of the quarantine, the API token (unless ``token`` is false)."""
    from posd.lane.print_worker import IN_HAND_FILE
    from posd.storage.db import LOCK_FILE
    from posd.storage.ledger import BOOT_FILE
    from posd.storage.outbox import ACK_FILE

    folder = config.storage_dir.resolve()
    live = {folder / name: name for name in [*DATABASE_FILES, LOCK_FILE, IN_HAND_FILE, BOOT_FILE, ACK_FILE]}
    if token:
        path = resolve(config.storage_dir, config.api.token_file).resolve()
        live[path] = path.name
    return live


def protected_files(config: Config, *, token: bool = True) -> dict[Path, str]:
    """Every file posd keeps or reads that nothing else may write, by resolved path, with what it is:
    the live storage files, the config file itself and the files it names (the store secret, the
    client certificate and key). A device or the API token on one of them would write over it."""
    named = {path: f"{name}, a file of the lane's storage folder ({config.storage_dir})"
             for path, name in live_storage_files(config, token=token).items()}
    for key, what, path in referenced_files(config):
        named[path.resolve()] = f"{what} ({key})"
    if config.source:
        named[Path(config.source).resolve()] = "this config file"
    return named


def protected_file(path: Path, protected: dict[Path, str]) -> str | None:
    """What ``path`` is among ``protected`` (protected_files): by its name, or, when it is there, as the
    same file under another name (a hard link: another path, the same bytes written over)."""
    if path in protected:
        return protected[path]
    try:
        found = os.stat(path)
    except OSError:
        return None
    for kept, what in protected.items():
        try:
            if os.path.samestat(found, os.stat(kept)):
                return what
        except OSError:
            continue
    return None


def token_file_problems(config: Config, text: str) -> list[ConfigProblem]:
    """The API token named at a file posd keeps or reads for something else: the store secret would be
    handed to the POS as its token, the lock file's pid would be one, ledger.db would be refused as a
    token only once posd had written its databases."""
    token = resolve(config.storage_dir, config.api.token_file).resolve()
    what = protected_file(token, protected_files(config, token=False))
    if what is None:
        return []
    return [ConfigProblem(f"{token} is {what}: the API token needs a file of its own", "api.token_file",
                          find_line(text, ("api", "token_file")))]


def printer_path_problems(config: Config, text: str) -> list[ConfigProblem]:
    """A printer path of the wrong kind (config check, with the files): a preview:// printer keeps slips
    in a folder, so a file there (or where a folder above it should be) cannot work; a file:// printer
    writes to a file, a FIFO or a device, never a folder. Either left the printer red at start."""
    try:
        parsed = registry.parse_device_url(config.device_url(config.printer.url))
    except ValueError:
        return []  # its own check says so
    if parsed.scheme not in ("preview", "file") or not parsed.fs_path:
        return []
    path = Path(parsed.fs_path)
    line = find_line(text, ("printer", "url"))
    if parsed.scheme == "preview":
        target = next((p for p in (path, *path.parents) if p.exists()), None)
        if target is not None and not target.is_dir():
            return [ConfigProblem(f"{target} is a file, not a folder: a preview:// printer keeps its slips in "
                                  f"the folder {path}", "printer.url", line)]
    elif path.is_dir():
        return [ConfigProblem(f"{path} is a folder: a file:// printer writes to a file, a FIFO or a device "
                              "(preview:// keeps slips in a folder)", "printer.url", line)]
    return []


def _twice(text: str, line: int | None, error: str) -> str:
    """For a key or table set twice (tomllib: "Cannot overwrite a value", "Cannot declare ... twice"),
    which one: its name as the line writes it (never its value: it may be a secret)."""
    if line is None or not ("overwrite" in error or "twice" in error):
        return ""
    lines = text.splitlines()
    if not 0 < line <= len(lines):
        return ""
    written = lines[line - 1].split("=", 1)[0].strip() if "=" in lines[line - 1] else lines[line - 1].strip()
    return f"; {written} is set twice" if written else ""


def _unclosed_string(text: str) -> int | None:
    """The line where a string that never closes opens (tomllib reports it at the end of the
    document), for a TOML error store IT can find; None when there is none."""
    multi, opened = None, None
    for number, line in enumerate(text.splitlines(), 1):
        i = 0
        while i < len(line):
            if multi is not None:
                end = line.find(multi, i)
                if end < 0:
                    break
                multi, i = None, end + 3
                continue
            ch = line[i]
            if ch == "#":
                break
            if line.startswith(('"""', "'''"), i):
                multi, opened, i = line[i:i + 3], number, i + 3
                continue
            if ch in "\"'":
                j = i + 1
                while j < len(line) and line[j] != ch:
                    j += 2 if ch == '"' and line[j] == "\\" else 1
                if j >= len(line):
                    return number
                i = j + 1
                continue
            i += 1
    return opened if multi is not None else None


MAX_NESTING = 100  # arrays and inline tables in arrays and inline tables: no key of posd.toml needs 3


def _deepest_line(text: str) -> int | None:
    """The line where brackets and braces outside strings first nest more than MAX_NESTING deep."""
    depth, line, quote = 0, 1, ""
    for ch in text:
        if ch == "\n":
            line += 1
        elif quote:
            quote = "" if ch == quote else quote
        elif ch in "\"'":
            quote = ch
        elif ch in "[{":
            depth += 1
            if depth > MAX_NESTING:
                return line
        elif ch in "]}":
            depth -= 1
    return None


def parse(text: str, *, source: str = "", check_files: bool = False) -> Config:
    """The config in ``text``, or a ConfigError listing every mistake; with ``check_files`` the
    files it names are checked too, also when other keys are wrong."""
    text = text.removeprefix("\ufeff")  # a byte order mark (Notepad's "UTF-8 with BOM"): not the config's
    try:
        data = tomllib.loads(text)
    except RecursionError:  # tomllib reads nested arrays and tables by recursion
        line = _deepest_line(text)
        raise ConfigError(f"not valid for posd: arrays or inline tables nested more than {MAX_NESTING} deep", line=line) \
            from None
    except tomllib.TOMLDecodeError as exc:
        m = re.search(r"\(at line (\d+), column \d+\)", str(exc))
        line = int(m.group(1)) if m else _unclosed_string(text)  # tomllib: "(at end of document)"
        said = str(exc) if m or line is None else f"a string opened at line {line} is never closed"
        raise ConfigError(f"not valid TOML: {said}{_twice(text, line, str(exc))}", line=line) from None
    config, problems, refused = None, [], set()
    if "source" in data:  # not a key of posd.toml: the field holds the file's own path
        problems.append(ConfigProblem(UNKNOWN_KEY, "source", find_line(text, ("source",))))
        refused.add(("source", ""))
    data["source"] = source
    try:
        config = Config.model_validate(data)
    except ValidationError as exc:
        for err in exc.errors():
            problems.append(_problem(text, err))
            names = [x for x in err["loc"] if isinstance(x, str)]
            refused.add((names[0], names[1] if len(names) > 1 else "") if names else ("", ""))
            if len(err["loc"]) > 2 and isinstance(err["loc"][1], int):  # one device of a list: (scanner[1], url)
                refused.add((f"{err['loc'][0]}[{err['loc'][1]}]", str(err["loc"][2])))
    problems += device_name_problems(data, text)
    if config is not None:
        problems += device_path_problems(config, text) + token_file_problems(config, text)
    problems.sort(key=lambda p: p.line or 1 << 30)  # as store IT reads the file; the files follow
    if check_files:
        base = Path(source).parent if source else Path.cwd()
        problems += referenced_file_problems(data, base, text, frozenset(refused))
        if config is not None:
            problems += printer_path_problems(config, text)
    if problems or config is None:
        raise ConfigError(problems[0].message, problems=problems)
    return config


# What a TOML value of the wrong type should have been (strict types: "yes" is not true, "1.5" not 1.5).
TYPE_MESSAGES = {
    "bool_type": "must be true or false, without quotes",
    "int_type": "must be a whole number, without quotes",
    "float_type": "must be a number, without quotes",
    "string_type": "must be text in quotes",
    "tuple_type": "must be a list in brackets, such as [\"...\"]",
    "model_type": "must be a table of keys",
    "model_attributes_type": "must be a table of keys",
    "dict_type": "must be a table of keys",
}


UNKNOWN_KEY = "unknown key (check the spelling; see config/posd.example.toml)"
# What nan is refused with where a number is wanted (any other key: its usual wrong-type message).
NUMBER_ERRORS = frozenset({"int_type", "int_from_float", "float_type", "finite_number", "greater_than",
                           "greater_than_equal", "less_than", "less_than_equal"})


def _problem(text: str, err: Any) -> ConfigProblem:
    msg = err["msg"].removeprefix("Value error, ")
    given = err.get("input")
    code, params = "", ()
    if err["type"] == "extra_forbidden":
        msg, code = UNKNOWN_KEY, "config.unknown_key"
    elif err["type"] == "missing":
        msg, code = "required key is missing", "config.missing"
    elif isinstance(given, float) and math.isnan(given) and err["type"] in NUMBER_ERRORS:  # not "should be <= 3600"
        msg = f"must be a {'whole ' if err['type'] == 'int_type' else ''}number (not nan)"
    elif err["type"] == "tuple_type" and isinstance(given, dict) and len(err["loc"]) == 1 \
            and err["loc"][0] in DEVICE_TABLES:
        table = err["loc"][0]
        msg = f"write [[{table}]] (double brackets) above each {table}'s keys, not [{table}]: a lane may have several"
    elif err["type"] in TYPE_MESSAGES:
        kind = type(err["input"]).__name__
        given = {"str": "text", "int": "a number", "float": "a number", "bool": "true/false", "list": "a list",
                 "dict": "a table"}.get(kind, kind)
        msg = f"{TYPE_MESSAGES[err['type']]} (got {given})"
        code, params = f"config.{err['type']}", (("got", kind),)
    elif err["type"] == "literal_error":
        expected = str((err.get("ctx") or {}).get("expected", ""))
        code, params = "config.choice", (("expected", expected.replace(" or ", ", ")),)
        if isinstance(err["input"], str) and err["input"].isascii() and err["input"].isdigit():
            msg += ", a number without quotes"
            code = "config.choice_number"
    return ConfigProblem(msg, _dotted(err["loc"]), find_line(text, err["loc"]), code, params)


def _dotted(loc: tuple[Any, ...]) -> str:
    parts: list[str] = []
    for item in loc:
        if isinstance(item, int):
            parts[-1] = f"{parts[-1]}[{item}]" if parts else f"[{item}]"
        else:
            parts.append(str(item))
    return ".".join(parts)


def find_line(text: str, loc: tuple[Any, ...]) -> int | None:
    """Best-effort line of a key: the line that writes it, else that of the nearest table or key
    around it (a required key that is missing: its table's header; a key inside an inline table: the
    line of that table).

    tomllib keeps no positions, so we scan the text: [table] and [[array]] headers, keys bare, "quoted"
    or dotted (printer.width_mm = 72, code_pages.18 = "CP852"); multi-line arrays and strings are
    skipped over. ``loc`` is pydantic's: names, and the index of an [[array]] entry after its name.
    """
    lines = _key_lines(text)
    path = tuple(loc)
    while path:
        if path in lines:
            return lines[path]
        path = path[:-1]
    return None


def _key_lines(text: str) -> dict[tuple[Any, ...], int]:
    """The first line writing each key and table (and each table a dotted key implies), by path."""
    found: dict[tuple[Any, ...], int] = {}
    current: tuple[Any, ...] = ()
    arrays: dict[tuple[str, ...], int] = {}  # [[array]] path as written -> entries seen so far
    depth, string = 0, None  # inside a value that spans lines: open brackets, an open ''' or """ string
    for n, line in enumerate(text.splitlines(), start=1):
        if depth > 0 or string:
            depth, string = _scan_value(line, depth, string)
            continue
        stripped = line.strip()
        if stripped.startswith("["):
            double = stripped.startswith("[[")
            parsed = _key_path(stripped[2 if double else 1:])
            close = "]]" if double else "]"
            if parsed is None or not parsed[1].startswith(close):
                continue
            after = parsed[1][len(close):].strip()
            if after and not after.startswith("#"):
                continue
            written = tuple(parsed[0])
            if double:
                arrays[written] = arrays.get(written, 0) + 1
            current = ()
            for k in range(1, len(written) + 1):  # an [[array]]'s name is followed by its entry's index
                current += (written[k - 1],) + ((arrays[written[:k]] - 1,) if written[:k] in arrays else ())
            _record(found, current, n)
            continue
        parsed = _key_path(stripped)
        if parsed is None or not parsed[1].startswith("="):
            continue
        _record(found, current + tuple(parsed[0]), n)
        depth, string = _scan_value(parsed[1][1:], 0, None)
    return found


def _record(found: dict[tuple[Any, ...], int], path: tuple[Any, ...], line: int) -> None:
    for k in range(1, len(path) + 1):
        found.setdefault(path[:k], line)


_BARE_KEY = re.compile(r"[A-Za-z0-9_-]+")
_BASIC_KEY = re.compile(r'"((?:[^"\\]|\\.)*)"')
_LITERAL_KEY = re.compile(r"'([^']*)'")


def _key_path(text: str) -> tuple[list[str], str] | None:
    """The dotted key at the start of ``text`` (bare, "basic" or 'literal' parts) and the rest after it."""
    parts: list[str] = []
    rest = text.lstrip()
    while True:
        m = _BASIC_KEY.match(rest) or _LITERAL_KEY.match(rest) or _BARE_KEY.match(rest)
        if m is None:
            return None
        part = m.group(1) if m.lastindex else m.group(0)
        if rest.startswith('"'):
            try:
                part = json.loads(f'"{part}"')  # the escapes TOML shares with JSON
            except ValueError:
                pass
        parts.append(part)
        rest = rest[m.end():].lstrip()
        if not rest.startswith("."):
            return parts, rest
        rest = rest[1:].lstrip()


def _scan_value(text: str, depth: int, string: str | None) -> tuple[int, str | None]:
    """After ``text`` (part of a value): how many brackets are open, and the multi-line string's
    quotes when one is; strings and comments are skipped."""
    i = 0
    while i < len(text):
        if string:
            end = _string_end(text, i, string)
            if end < 0:
                return depth, string
            i, string = end, None
            continue
        c = text[i]
        if c == "#":
            break
        if text.startswith('"""', i) or text.startswith("'''", i):
            string, i = text[i:i + 3], i + 3
        elif c in "\"'":
            end = _string_end(text, i + 1, c)
            i = end if end >= 0 else len(text)
        else:
            depth += (c in "[{") - (c in "]}")
            i += 1
    return depth, string


def _string_end(text: str, i: int, quotes: str) -> int:
    """Where the string closed by ``quotes`` ends in ``text`` from ``i`` (after the quotes), or -1."""
    while i < len(text):
        if quotes[0] == '"' and text[i] == "\\":
            i += 2
        elif text.startswith(quotes, i):
            return i + len(quotes)
        else:
            i += 1
    return -1
