"""Member tokens as central issues them: Ed25519 signing keys, QR tokens, wallet-pass secrets.

The lane verifies (posd.core.member_tokens); this is the other side, written
from docs/member-tokens.md alone (the reference central imports nothing of the
lane), so the test vectors in that document tie the two together. Central
publishes the public half of every key that is not retired in the program's
``member_tokens.keys``; an app fetches a fresh token for its member every
time it shows the QR.
"""

from __future__ import annotations

import base64
import copy
import secrets
import struct
from datetime import datetime, timezone
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

QR_PREFIX = "MT1."
SIGNING_CONTEXT = b"posd-member-token\x00"
DEFAULT_VALIDITY_S = 60
MAX_VALIDITY_S = 3600
# A new key signs tokens once lanes have had time to pull it with the program (every 60 s by
# default): signed at once, a member's app showed a token every till refused as unknown_key.
PUBLISH_LEAD_S = 120
WALLET_DEFAULTS = {"algorithm": "TOTP_SHA1", "period_s": 30, "digits": 6, "value_pattern": "{member}:{totp}"}


def b64url(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def new_signing_key() -> bytes:
    """A fresh Ed25519 private key, as its 32 raw bytes."""
    return Ed25519PrivateKey.generate().private_bytes_raw()


def new_kid() -> str:
    return "k" + secrets.token_hex(4)


def public_key_text(private_key: bytes) -> str:
    """The raw public key in base64url: what the program publishes."""
    public = Ed25519PrivateKey.from_private_bytes(private_key).public_key()
    return b64url(public.public_bytes(Encoding.Raw, PublicFormat.Raw))


def issue_qr_token(private_key: bytes, kid: str, member_id: str, issued_at: int,
                   validity_s: int = DEFAULT_VALIDITY_S, token_id: bytes | None = None) -> str:
    """A signed member token (docs/member-tokens.md): ``MT1.`` + base64url(payload + signature)."""
    kid_bytes, member = kid.encode("ascii"), member_id.encode("utf-8")
    if not 1 <= len(kid_bytes) <= 16 or not 1 <= len(member) <= 64 or not 1 <= validity_s <= MAX_VALIDITY_S:
        raise ValueError("kid 1-16 bytes, member_id 1-64 bytes, validity 1-3600 s")
    token_id = secrets.token_bytes(8) if token_id is None else token_id
    payload = (bytes([1, len(kid_bytes)]) + kid_bytes + struct.pack(">IH8s", issued_at, validity_s, token_id)
               + bytes([len(member)]) + member)
    signature = Ed25519PrivateKey.from_private_bytes(private_key).sign(SIGNING_CONTEXT + payload)
    return QR_PREFIX + b64url(payload + signature)


def signing_key(keys: list[dict[str, Any]], now: float) -> dict[str, Any] | None:
    """The key new tokens are signed with: the newest unretired key published PUBLISH_LEAD_S ago or
    more; when none is that old (a new central), the oldest unretired one, the likeliest pulled."""
    live = [k for k in keys if k["retired_at"] is None]  # oldest first
    settled = [k for k in live if k["created_at"] <= now - PUBLISH_LEAD_S]
    return settled[-1] if settled else (live[0] if live else None)


def new_wallet_secret() -> bytes:
    """A wallet pass's TOTP secret: 20 random bytes (RFC 4226 recommends 160 bits)."""
    return secrets.token_bytes(20)


def published_program(program: dict[str, Any] | None, keys: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The program as lanes get it: its ``member_tokens.keys`` are the program's own (a platform's member
    app signing with keys of its own, with their not_before/not_after), then central's keys that are
    not retired and not listed there already."""
    if program is None:
        return None
    out = copy.deepcopy(program)
    section = out.setdefault("member_tokens", {})
    own = [k for k in section.get("keys") or [] if isinstance(k, dict)]
    listed = {k.get("kid") for k in own}
    section["keys"] = own + [{"kid": k["kid"], "public_key": k["public_key"]} for k in keys
                             if k["retired_at"] is None and k["kid"] not in listed]
    return out


def wallet_pass(member_id: str, secret: bytes, program: dict[str, Any] | None) -> dict[str, Any]:
    """The rotating barcode of a Google Wallet loyalty pass for the member, as its API takes it."""
    wallet = {**WALLET_DEFAULTS, **((program or {}).get("member_tokens", {}).get("wallet") or {})}
    pattern = wallet["value_pattern"].replace("{member}", member_id).replace("{totp}", "{totp_value_0}")
    return {
        "member_id": member_id,
        "rotatingBarcode": {
            "type": "QR_CODE",
            "valuePattern": pattern,
            "totpDetails": {"algorithm": wallet["algorithm"], "periodMillis": int(wallet["period_s"]) * 1000,
                            "parameters": [{"key": secret.hex(), "valueLength": int(wallet["digits"])}]},
        },
    }


def iso_seconds(ts: float) -> str:
    return datetime.fromtimestamp(ts, timezone.utc).isoformat().replace("+00:00", "Z")
