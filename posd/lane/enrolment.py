"""Enrolment at the till: a new member from a pre-printed card or a phone number, offline-first.

The member gets a provisional id (``P-`` and 16 hex digits) at once and can
earn on the same sale; a ``member_enrolled`` event (``provisional: true``)
takes them to central, which answers with a member of its own and lists the
provisional id among that member's aliases in the member feed. ledger.db keeps
the enrolment (cache.db is rebuildable), so the card works here whatever
happens, and the entries recorded under the provisional id stay the member's
once central named them (posd.storage.entries: aliases).
"""

from __future__ import annotations

import re
import secrets
from dataclasses import dataclass, replace

import phonenumbers

from posd.core.identify import gtin_ok, gtin_twin, identify_code
from posd.lane.context import LaneContext, Recorded, request_hash
from posd.lane.errors import LaneError, raises
from posd.lane.members import Members, is_tel_link, phone_e164
from posd.storage.cache import CachedMember
from posd.storage.db import iso
from posd.storage.tx import LedgerTx

PROVISIONAL_PREFIX = "P-"
_DIGITS = re.compile(r"\d+")
# How an extension is written after a number: tel:...;ext=12, "ext. 12", "extension 12", "x12", "#12" (a few
# digits at the end: #31# before a number hides the caller, it is no extension). Only the refusal's words.
_EXTENSION = re.compile(r";ext=|\bext(?:n|ension)?\.?:?\s*\d|\d\s*[x#]\s*\d{1,6}\s*$", re.IGNORECASE)


@dataclass(frozen=True)
class EnrolmentInput:
    card: str | None
    phone: str | None
    display_name: str | None
    locale: str | None
    birth_date: str | None  # YYYY-MM-DD
    request_hash: str


class Enrolments:
    def __init__(self, ctx: LaneContext, members: Members, country: str | None = None):
        """``country``: ISO 3166 code phone numbers without +country are read in (config lane.country)."""
        self.ctx, self.members, self.country = ctx, members, country

    @raises("payment_card", "invalid_card", "invalid_phone", "identifier_in_use", "storage_failed", "storage_full")
    async def enrol(self, req: EnrolmentInput) -> Recorded:
        identifiers = self.normalised_identifiers(req)
        # compared by meaning, as sales are: the phone as E.164, however the POS wrote it this time
        meaning = request_hash({"identifiers": identifiers, "display_name": req.display_name, "locale": req.locale,
                                "birth_date": req.birth_date})
        hashes = (meaning, req.request_hash)
        earlier = self._earlier(self.ctx.ledger.view(), hashes, identifiers)
        if earlier:
            return earlier
        req = replace(req, request_hash=meaning)
        return await self.ctx.acommit(lambda unit: self._write(unit, req, identifiers, hashes))

    @raises("payment_card", "invalid_card", "invalid_phone")
    def normalised_identifiers(self, req: EnrolmentInput) -> list[str]:
        """The card code and the phone number in E.164, checked; a payment card is dropped here."""
        found = []
        if req.card:
            found.append(self._card(req.card))
        if req.phone:
            found.append(self._phone(req.phone))
        return found

    @staticmethod
    @raises("payment_card", "invalid_card")
    def _card(card: str) -> str:
        found = identify_code(card)
        if found.kind == "payment_card":
            raise LaneError("payment_card", "that is a payment card number; it was not stored")
        code = found.code or ""
        if found.kind != "member_code" or code.startswith("+"):
            raise LaneError("invalid_card", "a member card's code is 4-64 letters, digits or . _ : / + -")
        if is_tel_link(card):  # the scanner and every lookup read a tel: link as its phone number
            raise LaneError("invalid_card", "that is a phone number (a tel: link): enrol it as the phone")
        if code.isdigit() and len(code) in (8, 12, 13, 14) and not gtin_ok(code):
            raise LaneError("invalid_card", "the card number's check digit is wrong: scan it, or type it again")
        return code

    @raises("payment_card", "invalid_phone")
    def _phone(self, phone: str) -> str:
        """The phone number as E.164, read exactly as a scanned or typed lookup reads it (phone_e164), so
        that the number a member enrols with is the number that finds them."""
        written = phone.strip()
        if not written.startswith(("+", "00")) and identify_code(written).kind == "payment_card":
            raise LaneError("payment_card", "that is a payment card number; it was not stored")
        # A number stored is never a guess: 600123456789 (a Polish number with a digit too many) reads as a
        # valid Malaysian +60 123456789 to a lookup, which finds whoever has it; enrolled, it is refused.
        e164 = phone_e164(written, self.country, other_countries=False)
        if e164 is None and _EXTENSION.search(written):
            raise LaneError("invalid_phone", "a phone number with an extension reaches a desk, not a member's "
                                             "phone: give the number without its extension")
        if e164 is None:
            raise LaneError("invalid_phone", "not a phone number that exists in its country's numbering plan; "
                                             "give it with its country code, such as +48 600 123 456")
        return e164

    @raises("identifier_in_use")
    def _earlier(self, view, hashes: tuple[str, str], identifiers: list[str]) -> Recorded | None:
        """The first answer when the POS repeats an enrolment (``hashes``: the request's by meaning, and of
        its body as sent, which enrolments recorded before the first were stored under); a card or phone
        that is a member's already."""
        for identifier in identifiers:
            enrolled = view.enrolment(identifier)
            if enrolled is not None and enrolled["request_hash"] in hashes:
                return Recorded(enrolled["response"], replayed=True)
        for identifier in identifiers:
            for reading in self._readings(identifier):
                if view.enrolment(reading) is not None or self.ctx.cache.find_member(reading) is not None:
                    raise LaneError("identifier_in_use", "that card or phone number already belongs to a member")
        return None

    def _readings(self, identifier: str) -> list[str]:
        """The identifier, and what a lookup of it, or of the way a cashier types it, also finds
        (posd.lane.members.Members._resolve): a card code that reads as a phone number finds that
        phone's member when no card has the code, and a phone number typed as its national digits
        (600123456) finds a card with those digits before the phone, and a UPC-A card's number finds
        the card enrolled as its EAN-13 (or the reverse). Either held by another member, the new one
        would take their sales."""
        if not identifier.startswith("+"):
            phone, twin = phone_e164(identifier, self.country), gtin_twin(identifier)
            return [identifier, *(r for r in (twin, phone) if r is not None)]
        try:
            number = phonenumbers.parse(identifier)
        except phonenumbers.NumberParseException:
            return [identifier]
        national = "".join(ch for ch in phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.NATIONAL)
                           if ch.isdigit())
        typed = (national, str(number.national_number), identifier[1:], "00" + identifier[1:])
        # only the ways of typing it that a lookup at this lane reads as this very number
        return [identifier, *dict.fromkeys(t for t in typed if phone_e164(t, self.country) == identifier)]

    @raises("identifier_in_use")
    def _write(self, unit: LedgerTx, req: EnrolmentInput, identifiers: list[str], hashes: tuple[str, str]) -> Recorded:
        earlier = self._earlier(unit, hashes, identifiers)  # a concurrent request may have enrolled them
        if earlier:
            return earlier
        ctx = self.ctx
        now = ctx.clock()
        program = ctx.program()
        member_id = PROVISIONAL_PREFIX + secrets.token_hex(8)
        event = {"transaction_id": None, "member_id": member_id, "occurred_at": iso(now), "provisional": True,
                 "identifiers": identifiers, "points": {}, "program_version": program.version if program else "",
                 "offline": ctx.is_offline()}
        event.update({k: v for k, v in (("display_name", req.display_name), ("locale", req.locale),
                                        ("birth_date", req.birth_date)) if v is not None})
        seq = unit.append_event("member_enrolled", event)
        member = CachedMember(
            member_id=member_id, display_name=req.display_name or "", locale=req.locale,
            tier=program.tiers[0].tier_id if program and program.tiers else None, qualifying=0, balances={},
            applied_seq=0, status="active", birth_date=req.birth_date, updated_at=iso(now), provisional=True)
        response = {"member_id": member_id, "provisional": True, "identifiers": identifiers, "seq": seq,
                    "member": self.members.member_view(member, unit), "recorded_at": iso(now)}
        unit.store_enrolment(member_id=member_id, request_hash=req.request_hash, identifiers=identifiers,
                             display_name=req.display_name, locale=req.locale, birth_date=req.birth_date, seq=seq,
                             response=response, recorded_at=iso(now))
        return Recorded(response, replayed=False)
