"""Member tokens: the signed phone QR and the wallet pass's TOTP, as the lane checks them and central issues them."""

from __future__ import annotations

import base64
import json
import re
import struct
from contextlib import closing
from datetime import UTC, datetime
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.hashes import SHA1
from cryptography.hazmat.primitives.twofactor.totp import TOTP
from hypothesis import given, settings
from hypothesis import strategies as st

from posd.core.identify import identify_code
from posd.core.member_tokens import (
    Accepted,
    KeySpec,
    Rejected,
    WalletScheme,
    check_totp,
    decode_qr_token,
    looks_like_qr_token,
    parse_key_entry,
    parse_member_tokens,
    totp_code,
)
from posd.core.program import ProgramError
from posd.lane.member_tokens import published
from posd.sync.central.tokens import issue_qr_token, new_signing_key, public_key_text
from tests.support.ledger_sql import reader

ROOT = Path(__file__).parent.parent
NOW = 1_796_000_000  # 2026-11-30
SKEW = 30


def key(seed: int) -> bytes:
    return bytes([seed]) * 32


def spec(kid: str, private: bytes, **window) -> KeySpec:
    return KeySpec(kid, base64.urlsafe_b64decode(public_key_text(private) + "="), **window)


K1, K2, STRANGER = key(1), key(2), key(3)
KEYS = published((spec("k1", K1), spec("k2", K2)))


def verify(token: str, keys=KEYS, now: float = NOW, skew: float = SKEW):
    from posd.core.member_tokens import verify_qr_token

    return verify_qr_token(token, keys, now, skew)


def token(private: bytes = K1, kid: str = "k1", member: str = "M0001", issued: int = NOW - 10,
          validity: int = 60, token_id: bytes = b"\x01" * 8) -> str:
    return issue_qr_token(private, kid, member, issued, validity, token_id)


# --- the QR token matrix ---------------------------------------------------------------------------


def test_a_valid_token_names_its_member_and_its_id():
    verdict = verify(token())
    assert isinstance(verdict, Accepted)
    assert (verdict.scheme, verdict.member, verdict.token_id, verdict.kid) == ("qr_token", "M0001", "01" * 8, "k1")
    assert verdict.valid_until == NOW - 10 + 60 + SKEW


def test_expired_tokens_are_refused_and_the_skew_is_allowed_at_both_ends():
    assert verify(token(issued=NOW - 60 - SKEW)) == Rejected("qr_token", "expired")
    assert isinstance(verify(token(issued=NOW - 60 - SKEW + 1)), Accepted)
    assert verify(token(issued=NOW + SKEW + 1)) == Rejected("qr_token", "not_yet_valid")
    assert isinstance(verify(token(issued=NOW + SKEW)), Accepted)
    assert verify(token(issued=NOW + 5), skew=0) == Rejected("qr_token", "not_yet_valid")


def test_tampered_tokens_are_refused():
    good = token()
    raw = bytearray(base64.urlsafe_b64decode(good[4:] + "=="))
    for where in (len(raw) - 66, len(raw) - 1, 8, 12):  # member id, signature, validity, token_id
        bad = bytearray(raw)
        bad[where] ^= 0x01
        forged = "MT1." + base64.urlsafe_b64encode(bytes(bad)).rstrip(b"=").decode()
        assert verify(forged) == Rejected("qr_token", "bad_signature"), where
    other_member = token(member="M0002")
    spliced = "MT1." + base64.urlsafe_b64encode(
        base64.urlsafe_b64decode(other_member[4:] + "==")[:-64] + raw[-64:]).rstrip(b"=").decode()
    assert verify(spliced) == Rejected("qr_token", "bad_signature")


@pytest.mark.parametrize("validity", [0, 3601, 65535])
def test_a_token_valid_for_longer_than_the_layout_allows_is_malformed(validity):
    """Signed by a published key, but valid for hours: the layout says 1-3600 s, and a lane
    took an 18-hour token (issued 60,000 s earlier) as a member's."""
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    from posd.core.member_tokens import SIGNING_CONTEXT

    payload = bytes([1, 2]) + b"k1" + struct.pack(">IH8s", NOW - 60_000, validity, b"\x01" * 8) + b"\x05M0001"
    signature = Ed25519PrivateKey.from_private_bytes(K1).sign(SIGNING_CONTEXT + payload)
    text = "MT1." + base64.urlsafe_b64encode(payload + signature).rstrip(b"=").decode()
    assert verify(text, now=NOW - 60_000 + 10) == Rejected("qr_token", "malformed")
    assert verify(text) == Rejected("qr_token", "malformed")
    good = payload[:4] + struct.pack(">IH", NOW - 100, 3600) + payload[10:]
    text = "MT1." + base64.urlsafe_b64encode(good + Ed25519PrivateKey.from_private_bytes(K1).sign(
        SIGNING_CONTEXT + good)).rstrip(b"=").decode()
    assert isinstance(verify(text), Accepted)


def test_a_wrong_key_id_and_an_unknown_key_are_refused():
    assert verify(token(K2, kid="k1")) == Rejected("qr_token", "bad_signature")  # names k1, signed by k2
    assert verify(token(STRANGER, kid="k1")) == Rejected("qr_token", "bad_signature")
    assert verify(token(STRANGER, kid="k9")) == Rejected("qr_token", "unknown_key")
    assert verify(token(), keys={}) == Rejected("qr_token", "unknown_key")


def test_malformed_tokens_are_refused_without_raising():
    good = token()
    for bad in (good[:-10], good + "A", good.replace("MT1.", "MT2."), "MT1." + "A" * 120, good[:50] + "=" + good[51:]):
        assert verify(bad) == Rejected("qr_token", "malformed"), bad
    for cut in (good[:60], good[:103], "MT1.", "MT1.A"):  # a token read in part: still a token, malformed
        assert identify_code(cut).kind == "qr_token" and verify(cut) == Rejected("qr_token", "malformed"), cut
    assert decode_qr_token("2900000000018") is None


def test_key_rotation_keeps_both_keys_valid_until_the_old_one_is_retired():
    old, new = token(K1, "k1"), token(K2, "k2", token_id=b"\x02" * 8)
    assert isinstance(verify(old), Accepted) and isinstance(verify(new), Accepted)
    retired = published((spec("k2", K2),))
    assert verify(old, retired) == Rejected("qr_token", "unknown_key")
    assert isinstance(verify(new, retired), Accepted)
    # a key may also be limited to the tokens issued in its window
    cut = datetime.fromtimestamp(NOW - 20, UTC)
    windowed = published((spec("k1", K1, not_after=cut), spec("k2", K2, not_before=cut)))
    assert verify(old, windowed) == Rejected("qr_token", "unknown_key")  # issued after k1's end
    assert isinstance(verify(new, windowed), Accepted)


def test_the_token_fits_a_small_qr_and_is_told_apart_from_other_codes():
    text = token(member="M" + "9" * 20)
    assert looks_like_qr_token(text) and len(text) < 160
    assert not looks_like_qr_token("2900000000018")
    assert decode_qr_token(text).member_id == "M" + "9" * 20


published_keys = st.sampled_from([("k1", K1), ("k2", K2)])


@settings(max_examples=300, deadline=None)
@given(st.one_of(
    st.text(max_size=300),
    st.binary(min_size=0, max_size=200).map(lambda b: "MT1." + base64.urlsafe_b64encode(b).rstrip(b"=").decode()),
    st.tuples(published_keys, st.integers(0, 150), st.integers(0, 7)).map(
        lambda t: _flip(token(t[0][1], t[0][0]), t[1], t[2])),
    st.tuples(st.binary(min_size=32, max_size=32), st.sampled_from(["k1", "k2", "kx"]),
              st.text(min_size=1, max_size=20).filter(lambda m: len(m.encode()) <= 64)).map(
        lambda t: token(t[0], t[1], t[2]) if t[0] not in (K1, K2) else "x"),
))
def test_no_token_that_a_published_key_did_not_sign_is_ever_accepted(text):
    verdict = verify(text)
    if isinstance(verdict, Accepted):  # only an unaltered token of a published key gets here
        raw = base64.urlsafe_b64decode(text[4:] + "==")
        assert any(raw[-64:] == base64.urlsafe_b64decode(token(k, kid, verdict.member,
                                                                decode_qr_token(text).issued_at,
                                                                decode_qr_token(text).validity_s,
                                                                bytes.fromhex(verdict.token_id))[4:] + "==")[-64:]
                   for kid, k in (("k1", K1), ("k2", K2)))


def _flip(text: str, index: int, bit: int) -> str:
    raw = bytearray(base64.urlsafe_b64decode(text[4:] + "=="))
    raw[index % len(raw)] ^= 1 << bit
    return "MT1." + base64.urlsafe_b64encode(bytes(raw)).rstrip(b"=").decode()


@settings(max_examples=60, deadline=None)
@given(st.binary(min_size=32, max_size=32), st.text(min_size=1, max_size=30).filter(lambda m: len(m.encode()) <= 64),
       st.integers(NOW - 80, NOW + 40), st.integers(1, 3600))
def test_every_token_central_signs_with_a_published_key_verifies_while_valid(private, member, issued, validity):
    keys = published((spec("kp", private),))
    verdict = verify(token(private, "kp", member, issued, validity), keys)
    if issued - SKEW > NOW:
        assert verdict == Rejected("qr_token", "not_yet_valid")
    elif NOW >= issued + validity + SKEW:
        assert verdict == Rejected("qr_token", "expired")
    else:
        assert isinstance(verdict, Accepted) and verdict.member == member


# --- wallet passes: TOTP -------------------------------------------------------------------------


@pytest.mark.parametrize("t, code", [(59, "94287082"), (1111111109, "07081804"), (1111111111, "14050471"),
                                     (1234567890, "89005924"), (2000000000, "69279037")])
def test_totp_matches_rfc_6238s_sha1_vectors(t, code):
    assert totp_code(b"12345678901234567890", t // 30, 8) == code


@given(st.binary(min_size=16, max_size=64), st.integers(0, 2**33), st.sampled_from([6, 7, 8]))
def test_totp_matches_cryptographys_totp(secret, t, digits):
    assert totp_code(secret, t // 30, digits).encode() == TOTP(secret, digits, SHA1(), 30).generate(t)


def test_wallet_codes_inside_the_window_are_accepted_and_outside_refused():
    secret = bytes(range(20))
    wallet = WalletScheme(period_s=30, digits=6, value_pattern="{member}:{totp}", window=1)
    step = NOW // 30
    assert wallet.match(f"M0001:{totp_code(secret, step, 6)}") == ("M0001", totp_code(secret, step, 6))
    for delta in (-1, 0, 1):
        verdict = wallet.verify("M0001", secret, totp_code(secret, step + delta, 6), NOW)
        assert isinstance(verdict, Accepted) and verdict.scheme == "wallet_totp"
    assert wallet.verify("M0001", secret, totp_code(secret, step - 3, 6), NOW) == Rejected("wallet_totp", "expired")
    assert wallet.verify("M0001", secret, totp_code(secret, step + 3, 6), NOW) == \
        Rejected("wallet_totp", "not_yet_valid")
    assert wallet.verify("M0001", bytes(20), totp_code(secret, step, 6), NOW).reason in ("bad_code", "expired",
                                                                                       "not_yet_valid")
    assert check_totp(secret, "12345", NOW, 30, 6, 1) == "bad_code"
    same_step = [wallet.verify("M0001", secret, totp_code(secret, step, 6), NOW + d).token_id for d in (0, 1)]
    assert same_step[0] == same_step[1]  # one code, one replay id
    assert wallet.match("2900000000018") is None and wallet.match("M0001:12345") is None


def test_the_program_section_is_checked_by_path():
    settings_ = parse_member_tokens({"keys": [{"kid": "k1", "public_key": public_key_text(K1)}],
                                     "wallet": {"period_s": 30, "digits": 8, "value_pattern": "LOY-{member}-{totp}"}})
    assert settings_.keys[0].kid == "k1" and settings_.wallet.match("LOY-M7-12345678") == ("M7", "12345678")
    for bad, where in [({"keys": [{"kid": "k1"}]}, "member_tokens.keys[0].public_key"),
                       ({"keys": [{"kid": "k 1", "public_key": public_key_text(K1)}]}, "member_tokens.keys[0].kid"),
                       ({"keys": [{"kid": "k1", "public_key": "abc"}]}, "member_tokens.keys[0].public_key"),
                       ({"wallet": {"value_pattern": "{totp}"}}, "member_tokens.wallet.value_pattern"),
                       ({"wallet": {"algorithm": "TOTP_SHA256"}}, "member_tokens.wallet.algorithm"),
                       ({"keyz": []}, "member_tokens.keyz")]:
        with pytest.raises(ProgramError, match=re.escape(where)):
            parse_member_tokens(bad)
    assert parse_key_entry(f"k1:{public_key_text(K1)}").kid == "k1"
    assert parse_key_entry("k1") is None and parse_key_entry("k1:short") is None


# --- the format document: test vectors generated by the code --------------------------------------


def vectors() -> str:
    """The document's test vectors, generated by central's issuer and checked by the lane's verifier."""
    private = bytes.fromhex("9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60")  # RFC 8032 #1
    lines = [f"private key (seed, hex)  {private.hex()}", f"public key (base64url)   {public_key_text(private)}",
             "kid                      demo-1", "member_id                M0001",
             f"issued_at                {NOW} (2026-11-30T00:53:20Z)", "validity_s               60",
             "token_id (hex)           0001020304050607"]
    text = issue_qr_token(private, "demo-1", "M0001", NOW, 60, bytes(range(8)))
    raw = base64.urlsafe_b64decode(text[4:] + "==")
    lines += [f"payload (hex)            {raw[:-64].hex()}", f"signature (hex)          {raw[-64:].hex()}",
              f"token                    {text}"]
    assert isinstance(verify(text, published((spec("demo-1", private),)), now=NOW), Accepted)
    return "\n".join(lines)


def test_the_format_document_carries_the_vectors_the_code_generates():
    doc = (ROOT / "docs" / "member-tokens.md").read_text()
    block = re.search(r"<!-- vectors -->\n```\n(.*?)\n```", doc, re.S)
    assert block, "docs/member-tokens.md has no test vector block"
    assert block.group(1) == vectors()


def test_keys_central_makes_are_distinct():
    assert new_signing_key() != new_signing_key()


def test_the_config_override_is_checked_and_named_by_key_and_line():
    from posd.config import ConfigError, parse

    base = '[lane]\nstore_id = "S001"\nlane_id = "L01"\n\n[central]\nurl = "http://127.0.0.1:1"\n'
    good = parse(base + f'member_token_public_key = "k1:{public_key_text(K1)}"\n')
    assert [k.kid for k in good.central.token_keys()] == ["k1"]
    assert parse(base).central.token_keys() == ()
    for bad in ('member_token_public_key = ["k1:short"]\n',
                f'member_token_public_key = ["k1:{public_key_text(K1)}", "k1:{public_key_text(K2)}"]\n',
                'member_token_clock_skew_s = -1\n'):
        with pytest.raises(ConfigError) as err:
            parse(base + bad)
        assert "central.member_token_" in str(err.value) and "line 7" in str(err.value), str(err.value)
    with pytest.raises(ConfigError, match="lane.country"):
        parse(base.replace('lane_id = "L01"\n', 'lane_id = "L01"\ncountry = "Poland"\n'))


# --- wallet codes at a lane: RFC 6238 section 5.2 ---------------------------------------------------

WALLET_SECRET = b"12345678901234567890"
WALLET_PROGRAM = {
    "version": "w-1", "currencies": [{"code": "points", "kind": "redeemable"}],
    "rules": [{"id": "base", "type": "base_rate", "currency": "points",
               "rates": {"PLN": {"spend_minor": 100, "points": 1}}}],
    "tiers": [{"id": "basic", "threshold": 0, "multiplier": "1"}],
    "member_tokens": {"wallet": {"period_s": 30, "digits": 6, "value_pattern": "{member}:{totp}", "window": 1}},
}


class WalletLane:
    """A lane on real ledger.db and cache.db files with a clock the test sets; ``reopen`` restarts it."""

    def __init__(self, folder: Path, now: float):
        from posd.storage.cache import seal_key_from

        self.folder, self.now = folder, now
        self.seal = seal_key_from(b"store secret")
        self.open()
        self.cache.store_program(WALLET_PROGRAM, "e1")
        self.cache.apply_member_changes(
            [{"member_id": m, "display_name": m, "identifiers": [], "balances": {}, "totp_secret": WALLET_SECRET.hex()}
             for m in ("M1", "M2")], "1")

    def open(self) -> None:
        from posd.lane import Lane
        from posd.lane.events import EventBus
        from posd.storage.cache import Cache
        from posd.storage.ledger import LaneIdentity, Ledger

        self.ledger = Ledger(self.folder / "ledger.db", LaneIdentity("S001", "L01"))
        self.cache = Cache(self.folder / "cache.db", "L01", seal_key=self.seal)
        self.lane = Lane(store_id="S001", lane_id="L01", locale="en", ledger=self.ledger, cache=self.cache,
                         bus=EventBus(self.ledger.boot), printer_enabled=False,
                         clock=lambda: datetime.fromtimestamp(self.now, UTC))

    def close(self) -> None:
        self.cache.close()
        self.ledger.close()

    def reopen(self) -> None:
        self.close()
        self.open()

    def show(self, member: str, step: int) -> str:
        """What the lane makes of the member's wallet code of ``step``: accepted, or the refusal's code."""
        from posd.lane.errors import LaneError

        try:
            self.lane.members.identify(f"{member}:{totp_code(WALLET_SECRET, step, 6)}")
        except LaneError as exc:
            return exc.code
        return "accepted"


def test_a_wallet_code_not_later_than_the_last_accepted_step_is_a_replay(tmp_path):
    """RFC 6238 section 5.2: once a code of step s was accepted for a member, a code of step s or
    earlier is refused, even inside the window, also after a restart; other members are their own."""
    step = NOW // 30
    lane = WalletLane(tmp_path, NOW)
    try:
        assert lane.show("M1", step + 1) == "accepted"  # the pass's clock runs a step ahead of the lane's
        assert lane.show("M1", step) == "member_token_replayed"  # an older code, seen after a newer one
        assert lane.show("M1", step - 1) == "member_token_replayed"
        assert lane.show("M1", step + 1) == "member_token_replayed"  # the same code again
        assert lane.show("M2", step) == "accepted"  # another member's pass has its own last step
        lane.reopen()
        assert lane.show("M1", step) == "member_token_replayed"  # kept in ledger.db, not in memory
        lane.now = NOW + 30
        assert lane.show("M1", step + 2) == "accepted"  # a later step is a fresh code
        assert lane.show("M1", step + 1) == "member_token_replayed"
        with closing(reader(lane.ledger)) as conn:
            rows = conn.execute("SELECT body FROM outbox WHERE type = 'token_use' ORDER BY seq").fetchall()
        uses = [json.loads(r[0]) for r in rows]
    finally:
        lane.close()
    assert [(u["member_id"], u["identified_by"]) for u in uses] == [
        ("M1", "wallet_totp"), ("M2", "wallet_totp"), ("M1", "wallet_totp")]  # refusals send nothing


def test_new_tokens_are_signed_by_a_key_lanes_have_had_time_to_pull():
    from posd.sync.central.tokens import PUBLISH_LEAD_S, signing_key

    def key(kid, age, retired=False):
        return {"kid": kid, "created_at": NOW - age, "retired_at": NOW if retired else None}

    assert signing_key([key("a", 10 * PUBLISH_LEAD_S), key("b", PUBLISH_LEAD_S), key("c", 5)], NOW)["kid"] == "b"
    assert signing_key([key("a", 10 * PUBLISH_LEAD_S), key("b", 2, retired=True), key("c", 1)], NOW)["kid"] == "a"
    assert signing_key([key("a", 30), key("b", 5)], NOW)["kid"] == "a"  # a new central: none settled yet
    assert signing_key([key("a", 30, retired=True), key("b", 5)], NOW)["kid"] == "b"  # the old one retired at once
    assert signing_key([key("a", 30, retired=True)], NOW) is None
