"""Members as central keeps them: the stored shape, its checks, tiers, the wire shape.

Pure functions over plain dicts; the store decides how a member is kept.
"""

from __future__ import annotations

import re
from datetime import date
from typing import Any

MEMBER_STATUSES = ("active", "blocked", "deleted")


_CONTROL = re.compile(r"[\x00-\x1f\x7f\ud800-\udfff]")  # never in an id, a name or a code: NUL breaks PostgreSQL
MAX_BALANCE = 10**12  # as the protocol's MAX_POINTS: far above any real balance, within int64


def _text(value: Any, *, empty: bool = False) -> bool:
    return isinstance(value, str) and (empty or bool(value)) and not _CONTROL.search(value)


# The identifiers lanes look members up by (posd.core.identify reads every typed or scanned form
# into one of these): a phone in E.164, a card's code.
_PHONE = re.compile(r"^\+[1-9][0-9]{6,14}$")  # E.164: 7 digits (Niue: +683 and 4) to 15
_CARD_CODE = re.compile(r"^[A-Za-z0-9._:/+-]{4,64}$")


def _whole(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and abs(value) <= MAX_BALANCE


def lookup_form(identifier: str) -> bool:
    """Is ``identifier`` in a form lanes look members up by (they read and type them canonical)? One
    stored as "+48 620 111 222" or in fullwidth digits is found by no lane, and enrolled again."""
    return bool(_PHONE.match(identifier) or (_CARD_CODE.match(identifier) and identifier[0] != "+"))


def _checked_fields(member: dict[str, Any]) -> None:
    """ValueError naming the first field of ``member`` that is not of its kind (a seed's or an
    upsert's: stored as given, a string's characters became identifiers, a bool a balance)."""
    who = f"member {member['member_id']!r}"
    balances, identifiers = member.get("balances", {}), member.get("identifiers", [])
    if not isinstance(balances, dict) or not all(_text(c) and _whole(v) for c, v in balances.items()):
        raise ValueError(f"{who}: balances must be {{currency: integer}}, each integer from -{MAX_BALANCE:,} to "
                         f"{MAX_BALANCE:,}")
    if not isinstance(identifiers, list) or not all(_text(i) for i in identifiers):
        raise ValueError(f"{who}: identifiers must be a list of card codes and phone numbers (strings)")
    for identifier in identifiers:
        if not lookup_form(identifier):
            raise ValueError(f"{who}: identifier {identifier!r} is in no form a lane looks members up by: a phone "
                             "number in E.164 (+48620111222) or a card's code of 4-64 ASCII letters, digits and "
                             ". _ : / + -, not starting with + (that is a phone number)")
    for key in ("display_name", "locale", "tier"):
        if member.get(key) is not None and not _text(member[key], empty=key == "display_name"):
            raise ValueError(f"{who}: {key} must be a string without control characters")
    birth = member.get("birth_date")
    if birth is not None and not (isinstance(birth, str) and re.fullmatch(r"\d{4}-\d{2}-\d{2}", birth)
                                  and _is_date(birth)):
        raise ValueError(f"{who}: birth_date must be a date, YYYY-MM-DD, or null")
    offers = member.get("offers", [])
    if not isinstance(offers, list) or not all(isinstance(o, dict) for o in offers):
        raise ValueError(f"{who}: offers must be a list of objects")


def _is_date(text: str) -> bool:
    try:
        date.fromisoformat(text)
    except ValueError:
        return False
    return True


def given_member_row(member: Any, program: dict[str, Any]) -> dict[str, Any]:
    """A member the platform gives (a seed's, an upsert's) as stored, every field checked first."""
    if not isinstance(member, dict) or not _text(member.get("member_id")) or len(member["member_id"]) > 128:
        raise ValueError("every member needs a 'member_id' string (1-128 characters, no control characters)")
    _checked_fields(member)
    return member_row(member, program)


def member_row(member: Any, program: dict[str, Any]) -> dict[str, Any]:
    """A member as stored, defaults filled in, or ValueError naming the bad field."""
    if not isinstance(member, dict) or not isinstance(member.get("member_id"), str) or not member["member_id"]:
        raise ValueError("every member needs a 'member_id' string")
    qualifying = member.get("qualifying", 0)
    balances = member.get("balances", {})
    if not isinstance(qualifying, int) or isinstance(qualifying, bool) or not isinstance(balances, dict):
        raise ValueError(f"member {member['member_id']!r}: bad 'qualifying' or 'balances'")
    if any(not isinstance(v, int) for v in balances.values()):
        raise ValueError(f"member {member['member_id']!r}: balances must be integers")
    balances = dict(balances)
    tier_points = tier_currency(program)
    if tier_points is not None and currency_kind(program, tier_points) == "qualifying":
        # Tier points are never spent: their balance is the member's standing toward the
        # tier, one figure. Either field gives it; both must agree.
        if "qualifying" in member and tier_points in balances and balances[tier_points] != qualifying:
            raise ValueError(f"member {member['member_id']!r}: 'qualifying' ({qualifying}) and "
                             f"balances.{tier_points} ({balances[tier_points]}) must be the same figure")
        if tier_points in balances:
            qualifying = balances[tier_points]
        elif qualifying:
            balances[tier_points] = qualifying
    status = member.get("status", "active")
    secret = member.get("totp_secret")
    if secret is not None and (not isinstance(secret, str) or not re.fullmatch(r"(?:[0-9a-f]{2}){10,64}", secret)):
        raise ValueError(f"member {member['member_id']!r}: totp_secret must be 10-64 bytes in lowercase hex")
    if status not in MEMBER_STATUSES:
        raise ValueError(f"member {member['member_id']!r}: status must be one of {MEMBER_STATUSES}")
    return {
        "member_id": member["member_id"],
        "display_name": str(member.get("display_name", "")),
        "locale": member.get("locale"),
        "tier": member.get("tier") or upgraded_tier(None, qualifying, program),
        "qualifying": qualifying,
        "identifiers": [str(i) for i in member.get("identifiers", [])],
        "balances": balances,
        "status": status,
        "birth_date": member.get("birth_date"),
        "offers": list(member.get("offers", [])),
        "totp_secret": secret,
    }


def enrolment_profile(event: dict[str, Any]) -> dict[str, Any]:
    """The few profile fields a till may send with member_enrolled."""
    profile = {}
    for key in ("display_name", "locale", "identifiers", "birth_date"):
        if event.get(key) is not None:
            profile[key] = event[key]
    if not isinstance(profile.get("identifiers", []), list):
        profile.pop("identifiers")
    return profile


def tier_currency(program: dict[str, Any]) -> str | None:
    """The currency whose points decide the tier: the program's ``tier_currency``, else its
    first ``qualifying`` currency, else its first ``redeemable`` one (docs/program.md)."""
    if isinstance(program.get("tier_currency"), str):
        return program["tier_currency"]
    currencies = [c for c in program.get("currencies") or [] if isinstance(c, dict)]
    for kind in ("qualifying", "redeemable"):
        code = next((c.get("code") for c in currencies if c.get("kind") == kind), None)
        if isinstance(code, str):
            return code
    return None


def currency_kind(program: dict[str, Any], code: str) -> str | None:
    return next((c.get("kind") for c in program.get("currencies") or []
                 if isinstance(c, dict) and c.get("code") == code), None)


def upgraded_tier(current: str | None, qualifying: int, program: dict[str, Any]) -> str | None:
    """The highest tier reached by ``qualifying``; never lower than ``current``
    (downgrades are a periodic platform job, not a side effect of a return)."""
    tiers = [t for t in program.get("tiers", []) if isinstance(t, dict) and isinstance(t.get("threshold"), int)]
    thresholds = {t.get("id"): t["threshold"] for t in tiers}
    best = current
    for tier in sorted(tiers, key=lambda t: t["threshold"]):
        if tier["threshold"] <= qualifying and tier["threshold"] > thresholds.get(best, -1):
            best = tier.get("id")
    return best


def member_wire(member: dict[str, Any], applied_seq: dict[str, int],
                aliases: list[str] | None = None, vouchers: list[dict[str, Any]] | None = None, *,
                birthday_award_year: int | None = None,
                maturing: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    """A stored member (JSON fields decoded) as the change feed and admin routes send it.

    ``aliases``: the provisional ids lanes enrolled this member under (docs/sync-protocol.md,
    enrolment); ``totp_secret``: the wallet pass's secret, when the member has one; ``vouchers``:
    the member's open vouchers (registered, unexpired, neither used nor held); ``birthday_award_year``:
    the last (store-local) year a lane gave the member the birthday bonus; ``maturing``: its lots
    still pending (lots.maturing_lots), in the balance and not spendable yet. All are left out when
    empty, so a million members without them cost nothing on the wire."""
    if member["status"] == "deleted":  # erased: lanes learn only that, and forget the member
        member = {**member, "display_name": "", "locale": None, "identifiers": [], "birth_date": None,
                  "offers": [], "totp_secret": None}
        vouchers = None
    wire = {
        "member_id": member["member_id"],
        "display_name": member["display_name"],
        "locale": member["locale"],
        "tier": member["tier"],
        "qualifying": member["qualifying"],
        "identifiers": member["identifiers"],
        "balances": member["balances"],
        "applied_seq": applied_seq,
        "status": member["status"],
        "birth_date": member["birth_date"],
        "offers": member["offers"],
    }
    if aliases:
        wire["aliases"] = aliases
    if member.get("totp_secret"):
        wire["totp_secret"] = member["totp_secret"]
    if vouchers:
        wire["vouchers"] = list(vouchers)
    if birthday_award_year is not None and member["status"] != "deleted":
        wire["birthday_award_year"] = birthday_award_year
    if maturing and member["status"] != "deleted":
        wire["maturing"] = maturing
    return wire
