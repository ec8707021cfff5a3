"""Voucher and coupon codes are read as people type them: a lane voucher's Crockford base32 code in
any case, with O for 0 and I or L for 1, hyphens and spaces ignored; a program coupon in any case.
At the lane and at central."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from posd.core.identify import VOUCHER_ALPHABET, voucher_code
from posd.sync.protocol.burn import canonical_code
from tests.support.central_fixture import demo_seed, make_client
from tests.support.lane import ANNA

TYPED = {"0": "Oo0", "1": "IiLl1"}
# A digit as a Persian, Arabic-Indic or fullwidth keyboard types it.
SCRIPTS = (0x6F0, 0x660, 0xFF10)


@pytest.fixture
def central_seed():
    return demo_seed()


@st.composite
def typed_codes(draw) -> tuple[str, str]:
    """(a voucher code as issued, as a person might type it)."""
    body = draw(st.text(VOUCHER_ALPHABET, min_size=12, max_size=12))
    typed = ""
    for i, ch in enumerate("V" + body):
        choices = TYPED.get(ch, ch + ch.lower())
        if ch.isdigit():
            choices = [*choices, *(chr(base + int(ch)) for base in SCRIPTS)]
        else:  # a keyboard in fullwidth mode
            choices = [*choices, chr(0xFF21 + ord(ch) - ord("A"))]
        typed += draw(st.sampled_from(choices))
        if i and i % 4 == 0 and draw(st.booleans()):
            # an RTL keyboard's marks too, and the dashes a code pasted from a document or an app has
            typed += draw(st.sampled_from(["-", " ", "\u200e", "\u200b", "\u2011", "\u2010", "\u2013", "\u2212"]))
    return "V" + body, typed


@given(typed_codes())
def test_the_lane_and_central_read_a_typed_voucher_code_as_issued(case):
    issued, typed = case
    assert voucher_code(typed) == issued
    assert canonical_code(typed, ["WELCOME10"]) == issued


@given(st.one_of(st.text(), typed_codes().map(lambda case: case[1]),
                 typed_codes().flatmap(lambda case: st.sampled_from(
                     [case[1].replace(" ", ws) for ws in ("\t", "\u00a0", "\u2009", "\n", "\u3000")]))))
def test_central_reads_any_text_as_the_lanes_voucher_code_does(text):
    """The two copies of the rule (the core and the protocol may not import each other) agree on any text:
    a code the lane reads as its voucher is the same voucher at central, and nothing else is one there."""
    lane = voucher_code(text)
    central = canonical_code(text)
    if lane is not None:
        assert central == lane
    else:
        assert central == text  # not a lane voucher: central keeps it as it is


def test_coupons_keep_their_spelling_and_other_codes_are_left_alone():
    assert canonical_code("welcome10", ["WELCOME10", "STAFF20"]) == "WELCOME10"
    assert canonical_code("\u200ewelcome\u06f1\u06f0", ["WELCOME10"]) == "WELCOME10"  # typed on a Persian keyboard
    assert canonical_code("\uff37\uff25\uff2c\uff23\uff2f\uff2d\uff25\uff11\uff10", ["WELCOME10"]) == "WELCOME10"  # fullwidth
    assert canonical_code("VOLVO-LOVE-IOU", ["WELCOME10"]) == "VOLVO-LOVE-IOU"  # a U: no voucher of ours
    assert voucher_code("WELCOME10") is None and voucher_code("V123") is None


def test_a_voucher_validates_and_is_used_however_it_is_typed(tmp_path, central, start_lane):
    lane = start_lane(tmp_path / "lane")
    redeemed = lane.post("/v1/redemptions", {"redemption_id": "RDM-case", "member": ANNA, "reward_id": "free-coffee"})
    assert redeemed.status_code == 200, redeemed.text
    code = redeemed.json()["voucher"]["code"]
    typed = code.lower().replace("0", "o").replace("1", "l")
    persian = "\u200e" + code.translate({ord(d): chr(0x6F0 + int(d)) for d in "0123456789"})
    for variant in (typed, f"{typed[:5]}-{typed[5:9]}-{typed[9:]}", persian, code):
        ok = lane.post("/v1/vouchers/validate", {"code": variant, "member": ANNA})
        assert ok.status_code == 200 and ok.json()["code"] == code, (variant, ok.text)
    used = lane.post(f"/v1/vouchers/{typed}/use", {"transaction_id": "T-case-1", "member": ANNA})
    assert used.status_code == 200 and used.json()["code"] == code, used.text
    again = lane.post(f"/v1/vouchers/{typed.upper()}/use", {"transaction_id": "T-case-1", "member": ANNA})
    assert again.status_code == 200 and again.json() == used.json()  # the same use, retried
    twice = lane.post(f"/v1/vouchers/{code}/use", {"transaction_id": "T-case-2", "member": ANNA})
    assert (twice.status_code, twice.json()["code"]) == (409, "voucher_used")
    for typed_coupon in ("welcome10", "WELCOME\u06f1\u06f0", "welcome\uff11\uff10", "\uff37\uff25\uff2c\uff23\uff2f\uff2d\uff25\uff11\uff10"):
        coupon = lane.post("/v1/vouchers/validate", {"code": typed_coupon, "member": ANNA})
        assert coupon.status_code == 200 and coupon.json()["code"] == "WELCOME10", (typed_coupon, coupon.text)
    lane.wait_drained()
    with make_client(central, lane_id="L09", secret=central.store.store_secret("S001")) as client:  # central reads a typed code as the lane does
        known = client.voucher(typed, None)
        assert known is not None and known["code"] == code and known["used"] is True
        assert client.voucher("welcome10", None)["code"] == "WELCOME10"
        held = client.authorise({"authorisation_id": "voucher_use:case", "kind": "voucher_use", "member_id": "M0001",
                                 "occurred_at": "2026-11-24T09:15:00Z", "voucher_code": typed,
                                 "voucher_once_per": "code"})
        assert (held["status"], held.get("code")) == ("declined", "voucher_used"), held


def test_the_lane_and_central_ignore_the_same_dashes():
    """Two copies (the core and the protocol may not import each other): one dash more in either and a
    code pasted with it is a voucher at one and unknown at the other."""
    from posd.core import identify
    from posd.sync.protocol import burn

    assert identify._DASHES == burn._DASHES
