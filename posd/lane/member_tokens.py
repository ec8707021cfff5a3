"""The lane's side of member tokens: which keys are in force, and checking a token against them.

The rules are pure (posd.core.member_tokens); here they get their keys (the
program's ``member_tokens.keys``, or the config's override), an Ed25519
verify function per key from ``cryptography``, and the lane's clock.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from posd.core.member_tokens import Accepted, KeySpec, PublishedKey, Rejected, Verifier, WalletScheme, verify_qr_token
from posd.lane.context import LaneContext

DEFAULT_SKEW_S = 30.0


def ed25519_verifier(public_key: bytes) -> Verifier:
    key = Ed25519PublicKey.from_public_bytes(public_key)

    def verify(signature: bytes, message: bytes) -> bool:
        try:
            key.verify(signature, message)
        except InvalidSignature:
            return False
        return True

    return verify


def published(specs: tuple[KeySpec, ...]) -> dict[str, PublishedKey]:
    return {k.kid: PublishedKey(k.kid, ed25519_verifier(k.public_key),
                                k.not_before.timestamp() if k.not_before else None,
                                k.not_after.timestamp() if k.not_after else None) for k in specs}


class MemberTokens:
    """Checks member tokens with the keys in force; ``override`` (the config's keys) replaces the program's."""

    def __init__(self, ctx: LaneContext, *, override: tuple[KeySpec, ...] = (), skew_s: float = DEFAULT_SKEW_S):
        self.ctx, self.skew_s = ctx, skew_s
        self._override = published(override) if override else None
        self._keys: tuple[object, dict[str, PublishedKey]] | None = None  # (the program, its keys)
        self._lock = threading.Lock()

    def keys(self) -> Mapping[str, PublishedKey]:
        if self._override is not None:
            return self._override
        program = self.ctx.program()
        if program is None:
            return {}
        with self._lock:  # a new program object (a new ETag: keys rotate without a new version) -> new keys
            if self._keys is None or self._keys[0] is not program:
                self._keys = (program, published(program.member_tokens.keys))
            return self._keys[1]

    def verify_qr(self, value: str) -> Accepted | Rejected:
        return verify_qr_token(value, self.keys(), self.ctx.clock().timestamp(), self.skew_s)

    def wallet(self) -> WalletScheme | None:
        program = self.ctx.program()
        return program.member_tokens.wallet if program else None

    def verify_wallet(self, scheme: WalletScheme, member_id: str, code: str) -> Accepted | Rejected:
        secret = self.ctx.cache.wallet_secret(member_id)
        if secret is None:
            return Rejected("wallet_totp", "unknown_key")  # no wallet pass for this member here
        return scheme.verify(member_id, secret, code, self.ctx.clock().timestamp())
