"""Member tokens: the phone's signed rotating QR and the wallet pass's TOTP barcode. Pure.

Bytes and keys in, a verdict out, ``now`` passed in (docs/member-tokens.md is
the format an app team implements). The core imports the standard library
only, so a signature is checked by a function the caller hands in per key id
(the lane builds them with ``cryptography``'s Ed25519 from the public keys
central publishes); everything else a token must satisfy is decided here.

QR token, text ``MT1.`` + base64url (no padding) of::

    version 0x01 | kid length | kid | issued_at u32 | validity_s u16 | token_id 8 bytes
    | member_id length | member_id (UTF-8) | Ed25519 signature (64 bytes)

The signature covers ``SIGNING_CONTEXT`` + everything before it. Wallet
passes (Google Wallet's rotating barcode) carry RFC 6238 TOTP_SHA1 codes in
a value pattern such as ``{member}:{totp}``; the shared secret is the
member's, from central's member feed.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import re
import struct
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from posd.core.rules_json import ProgramError, array, choice, instant, integer, obj, text

__all__ = [
    "QR_PREFIX", "SIGNING_CONTEXT", "Accepted", "PublishedKey", "QrToken", "Rejected", "TokenSettings",
    "KeySpec", "WalletScheme", "check_totp", "decode_qr_token", "looks_like_qr_token", "parse_key_entry",
    "parse_member_tokens",
    "public_key_bytes", "totp_code", "totp_token_id", "verify_qr_token",
]

QR_PREFIX = "MT1."
VERSION = 1
SIGNING_CONTEXT = b"posd-member-token\x00"
SIGNATURE_LEN = 64
MAX_MEMBER_ID = 64
MAX_VALIDITY_S = 3600  # the layout's limit: a token valid for hours is no short-lived token
KID_RE = re.compile(r"^[A-Za-z0-9._-]{1,16}$")
_QR_TEXT = re.compile(r"^MT1\.[A-Za-z0-9_-]{100,400}$")
_HEAD = struct.Struct(">IH8s")  # issued_at, validity_s, token_id

# Why a token is refused: the lane's events and error messages carry these.
REASONS = ("malformed", "unknown_key", "bad_signature", "expired", "not_yet_valid", "bad_code", "replayed")

Verifier = Callable[[bytes, bytes], bool]  # (signature, signed bytes) -> authentic?


@dataclass(frozen=True)
class QrToken:
    kid: str
    issued_at: int  # unix seconds, central's clock
    validity_s: int
    token_id: bytes  # 8 random bytes: what replays are recognised by
    member_id: str
    signed: bytes  # SIGNING_CONTEXT + payload: what the signature covers
    signature: bytes


@dataclass(frozen=True)
class PublishedKey:
    """A public key central publishes, as a verify function; tokens issued outside
    [not_before, not_after] are refused even when the signature holds (rotation)."""

    kid: str
    verify: Verifier
    not_before: float | None = None
    not_after: float | None = None


@dataclass(frozen=True)
class Accepted:
    scheme: str  # qr_token | wallet_totp
    member: str  # the member id (QR) or the member part of the wallet value
    token_id: str  # hex: a replay is the same token_id again
    kid: str | None
    valid_until: float  # unix seconds: after this no replay check is needed
    # wallet codes: unix time their time step began. RFC 6238 §5.2: a code whose step is not later
    # than the last one accepted for the member is a replay, even within the window.
    step_start: int | None = None


@dataclass(frozen=True)
class Rejected:
    scheme: str
    reason: str  # one of REASONS


def looks_like_qr_token(value: str) -> bool:
    """Text a phone shows as its QR token, well-formed or not: every text with the prefix is one, so a
    token cut short (a QR read in part) is refused as malformed, never looked up as a card code,
    echoed on the stream and in member.unknown with the member id its first bytes carry."""
    return value.startswith(QR_PREFIX)


def decode_qr_token(value: str) -> QrToken | None:
    """The token's fields, or None when it is not a well-formed v1 token (nothing verified yet)."""
    if not _QR_TEXT.match(value):
        return None
    body = value[len(QR_PREFIX):]
    try:
        raw = base64.urlsafe_b64decode(body + "=" * (-len(body) % 4))
    except (binascii.Error, ValueError):
        return None
    if base64.urlsafe_b64encode(raw).rstrip(b"=").decode() != body:
        return None  # one token, one spelling: no padding, no stray bits
    if len(raw) < 2 + 1 + _HEAD.size + 1 + 1 + SIGNATURE_LEN or raw[0] != VERSION:
        return None
    payload, signature = raw[:-SIGNATURE_LEN], raw[-SIGNATURE_LEN:]
    kid_len = payload[1]
    at = 2 + kid_len
    if at + _HEAD.size + 1 > len(payload):
        return None
    kid = payload[2:at].decode("ascii", "replace")
    issued_at, validity, token_id = _HEAD.unpack_from(payload, at)
    at += _HEAD.size
    member_len = payload[at]
    member = payload[at + 1:]
    if len(member) != member_len or not 1 <= member_len <= MAX_MEMBER_ID or not KID_RE.match(kid) \
            or not 1 <= validity <= MAX_VALIDITY_S:
        return None
    try:
        member_id = member.decode("utf-8")
    except UnicodeDecodeError:
        return None
    return QrToken(kid, issued_at, validity, token_id, member_id, SIGNING_CONTEXT + payload, signature)


def verify_qr_token(value: str, keys: Mapping[str, PublishedKey], now: float, skew_s: float) -> Accepted | Rejected:
    """Is this a token a published key signed, valid at ``now`` (give or take ``skew_s``)?

    In this order: well-formed, known key id, authentic signature, issued within the
    key's window, not issued in the future, not expired. Replays are the caller's: it
    keeps what it accepted (``Accepted.token_id`` until ``valid_until``)."""
    token = decode_qr_token(value)
    if token is None:
        return Rejected("qr_token", "malformed")
    key = keys.get(token.kid)
    if key is None:
        return Rejected("qr_token", "unknown_key")
    if not key.verify(token.signature, token.signed):
        return Rejected("qr_token", "bad_signature")
    if (key.not_before is not None and token.issued_at < key.not_before) or \
            (key.not_after is not None and token.issued_at > key.not_after):
        return Rejected("qr_token", "unknown_key")
    if token.issued_at - skew_s > now:
        return Rejected("qr_token", "not_yet_valid")
    valid_until = token.issued_at + token.validity_s + skew_s
    if now >= valid_until:
        return Rejected("qr_token", "expired")
    return Accepted("qr_token", token.member_id, token.token_id.hex(), token.kid, valid_until)


# -- wallet passes: RFC 6238 TOTP ---------------------------------------------------------------------

def totp_code(secret: bytes, counter: int, digits: int) -> str:
    """RFC 4226 HOTP over HMAC-SHA1 of the time step (RFC 6238 TOTP_SHA1, as Google Wallet rotates).
    Written out because the core takes the standard library only; tests check it against
    the RFC's vectors and against cryptography's TOTP."""
    mac = hmac.new(secret, struct.pack(">Q", counter), hashlib.sha1).digest()
    offset = mac[-1] & 0x0F
    value = struct.unpack(">I", mac[offset:offset + 4])[0] & 0x7FFFFFFF
    return str(value % 10 ** digits).zfill(digits)


LOOK_FURTHER = 10  # steps beyond the window still told apart: "expired" reads better than "bad code"


def check_totp(secret: bytes, code: str, now: float, period_s: int, digits: int, window: int) -> int | str:
    """The time step ``code`` belongs to when it is within ``window`` steps of now;
    otherwise the reason: expired (an older step's code), not_yet_valid, bad_code."""
    if len(code) != digits or not code.isdigit():
        return "bad_code"
    step = int(now // period_s)
    for delta in range(window + 1):
        for counter in {step - delta, step + delta}:
            if counter >= 0 and hmac.compare_digest(totp_code(secret, counter, digits), code):
                return counter
    for delta in range(window + 1, window + 1 + LOOK_FURTHER):
        if step - delta >= 0 and hmac.compare_digest(totp_code(secret, step - delta, digits), code):
            return "expired"
        if hmac.compare_digest(totp_code(secret, step + delta, digits), code):
            return "not_yet_valid"
    return "bad_code"


def totp_token_id(member_id: str, counter: int) -> str:
    """A wallet code's replay id: one per member and time step (no secret in it)."""
    return hashlib.sha256(f"totp\x00{member_id}\x00{counter}".encode()).hexdigest()[:16]


@dataclass(frozen=True)
class WalletScheme:
    """How the lane reads a wallet pass's rotating barcode."""

    period_s: int = 30
    digits: int = 6
    value_pattern: str = "{member}:{totp}"
    window: int = 1  # steps either side accepted (clock drift, the time a scan takes)

    def match(self, value: str) -> tuple[str, str] | None:
        """(member, code) when ``value`` has the pattern's shape."""
        found = _pattern_re(self.value_pattern, self.digits).match(value)
        return (found["member"], found["totp"]) if found else None

    def verify(self, member_id: str, secret: bytes, code: str, now: float) -> Accepted | Rejected:
        step = check_totp(secret, code, now, self.period_s, self.digits, self.window)
        if isinstance(step, str):
            return Rejected("wallet_totp", step)
        return Accepted("wallet_totp", member_id, totp_token_id(member_id, step), None,
                        (step + self.window + 1) * self.period_s, step * self.period_s)


_PATTERNS: dict[tuple[str, int], re.Pattern[str]] = {}


def _pattern_re(pattern: str, digits: int) -> re.Pattern[str]:
    key = (pattern, digits)
    if key not in _PATTERNS:
        parts = re.split(r"(\{member\}|\{totp\})", pattern)
        regex = "".join({"{member}": r"(?P<member>[A-Za-z0-9._+-]{1,64}?)", "{totp}": rf"(?P<totp>[0-9]{{{digits}}})"}
                        .get(p, re.escape(p)) for p in parts)
        _PATTERNS[key] = re.compile(f"^{regex}$")
    return _PATTERNS[key]


# -- the program's member_tokens section (docs/member-tokens.md) --------------------------------------

@dataclass(frozen=True)
class KeySpec:
    kid: str
    public_key: bytes  # raw Ed25519, 32 bytes
    not_before: datetime | None = None
    not_after: datetime | None = None


@dataclass(frozen=True)
class TokenSettings:
    keys: tuple[KeySpec, ...] = ()
    wallet: WalletScheme | None = None


def public_key_bytes(value: str) -> bytes | None:
    """A raw Ed25519 public key written as base64url (43 characters, no padding)."""
    if not re.fullmatch(r"[A-Za-z0-9_-]{43}", value):
        return None
    return base64.urlsafe_b64decode(value + "=")


def parse_member_tokens(raw: Any, path: str = "member_tokens") -> TokenSettings:
    obj(raw, path, optional=("keys", "wallet"))
    keys = []
    for i, item in enumerate(array(raw.get("keys", []), f"{path}.keys")):
        where = f"{path}.keys[{i}]"
        obj(item, where, required=("kid", "public_key"), optional=("not_before", "not_after"))
        kid = text(item["kid"], f"{where}.kid")
        if not KID_RE.match(kid):
            raise ProgramError(f"{where}.kid: 1-16 of A-Z a-z 0-9 . _ -")
        key = public_key_bytes(text(item["public_key"], f"{where}.public_key"))
        if key is None:
            raise ProgramError(f"{where}.public_key: a raw Ed25519 public key in base64url (43 characters)")
        keys.append(KeySpec(kid, key, instant(item["not_before"], f"{where}.not_before") if "not_before" in item
                            else None,
                            instant(item["not_after"], f"{where}.not_after") if "not_after" in item else None))
    if len({k.kid for k in keys}) != len(keys):
        raise ProgramError(f"{path}.keys: duplicate kid")
    wallet = None
    if "wallet" in raw:
        where = f"{path}.wallet"
        w = obj(raw["wallet"], where, optional=("algorithm", "period_s", "digits", "value_pattern", "window"))
        choice(w.get("algorithm", "TOTP_SHA1"), f"{where}.algorithm", ("TOTP_SHA1",))
        digits = integer(w.get("digits", 6), f"{where}.digits", minimum=6)
        if digits > 10:
            raise ProgramError(f"{where}.digits: at most 10")
        pattern = text(w.get("value_pattern", "{member}:{totp}"), f"{where}.value_pattern")
        if pattern.count("{member}") != 1 or pattern.count("{totp}") != 1:
            raise ProgramError(f"{where}.value_pattern: needs {{member}} and {{totp}} once each, "
                               "such as \"{member}:{totp}\"")
        window = integer(w.get("window", 1), f"{where}.window")
        if window > 5:
            raise ProgramError(f"{where}.window: at most 5 steps")
        wallet = WalletScheme(integer(w.get("period_s", 30), f"{where}.period_s", minimum=5), digits, pattern,
                              window)
    return TokenSettings(tuple(keys), wallet)


def parse_key_entry(entry: str) -> KeySpec | None:
    """A key written as ``kid:public_key`` (the config's override); None when it is not one."""
    kid, sep, key = entry.strip().partition(":")
    raw = public_key_bytes(key) if sep else None
    return KeySpec(kid, raw) if raw is not None and KID_RE.match(kid) else None
