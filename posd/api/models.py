"""Request and answer shapes of the local API (they become /openapi.json)."""

from __future__ import annotations

import re
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Annotated, Any, Literal, Union

from annotated_types import Ge, Gt, Le
from fastapi import Path
from pydantic import (AfterValidator, AwareDatetime, BaseModel, BeforeValidator, ConfigDict, Field, StrictInt, ValidationInfo,
                      WithJsonSchema, field_validator, model_validator)

from posd.api.errors import ErrorCode
from posd.core.identify import CARD_NUMBER_MIN, CARD_TEXT_MIN, find_card_data, is_card_data
from posd.core.program import MAX_REQUEST_POINTS
from posd.core.quantity import parse_quantity
from posd.lane.errors import FUTURE_TOLERANCE, PAST_TOLERANCE, LaneError

ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$"  # also a safe slip file name
# What a POS numbering its sales must know: an id is refused like any text holding a card number.
ID_NOTE = ("; 13-19 digits in it that read as a card number (a network's prefix and the Luhn check) refuse the "
           "request as 422 payment_card: at most 12 digits in a row")
MEMBER_MAX = 404  # a member identifier, up to a phone QR token (posd.core.member_tokens)


# Control characters (C0, DEL, C1) and unpaired surrogates: no text a till sends carries them, and
# central refuses an event holding one (docs/sync-protocol.md), so they are refused at the door.
CONTROL_CHARACTERS = re.compile("[\x00-\x1f\x7f-\x9f\ud800-\udfff]")
# The same refusal for a path segment (a member identifier, a voucher code): any text but those.
PATH_TEXT_PATTERN = r"^[^\x00-\x1f\x7f-\x9f]+$"

# Path segments, validated like the bodies' fields: a malformed one is 422 invalid_request.
def _path_text(value: str) -> str:
    found = CONTROL_CHARACTERS.search(value)
    if found:
        raise ValueError(_refusal(found.group()))
    return value


def _refusal(char: str) -> str:
    """What is wrong with the text, by the first character refused in it: a POS sending an unpaired
    surrogate (a broken emoji) looks for its text encoding, not for a stray control character."""
    if "\ud800" <= char <= "\udfff":
        return "unpaired surrogates (U+D800-U+DFFF: half of a character) are not allowed"
    return "control characters (U+0000-U+001F, U+007F-U+009F) are not allowed"


def _path_text_param(max_length: int, description: str) -> Any:
    return Path(max_length=max_length, description=description, json_schema_extra={"pattern": PATH_TEXT_PATTERN})


MemberPath = Annotated[str, AfterValidator(_path_text),
                       _path_text_param(MEMBER_MAX, "card code, phone number, member id or member token")]
CodePath = Annotated[str, AfterValidator(_path_text), _path_text_param(64, "the voucher's code")]
IdPath = Annotated[str, Path(pattern=ID_PATTERN, description="the POS's id of the sale")]
# A slip is named by its sale's or redemption's id, a redemption's slip and a copy with a `~` suffix.
SlipPath = Annotated[str, Path(pattern=r"^[A-Za-z0-9][A-Za-z0-9._~-]{0,95}$",
                               description="the slip's id (a sale's id; a redemption's id + `~r`)")]

class _In(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    @model_validator(mode="before")
    @classmethod
    def _no_control_characters(cls, data: Any) -> Any:
        """Checked on the text as sent, before str_strip_whitespace: a trailing newline or tab was
        stripped first, and "T-1\n" was taken as the sale "T-1", two ids of the POS made one."""
        if not isinstance(data, dict):
            return data
        for name, value in data.items():
            kind = type(value)
            if kind is int or kind is dict or value is None:  # numbers, a line's object: no text of their own
                continue
            if isinstance(value, str):
                if found := _refused_character(value):
                    raise ValueError(f"{name}: {_refusal(found)}")
            elif isinstance(value, list):
                for text in value:
                    if isinstance(text, str) and (found := _refused_character(text)):
                        raise ValueError(f"{name}: {_refusal(found)}")
        return data


def _refused_character(text: str) -> str | None:
    """The first of CONTROL_CHARACTERS in ``text``; printable ASCII (what a till sends) is answered
    without the search."""
    if text.isascii() and text.isprintable():
        return None
    found = CONTROL_CHARACTERS.search(text)
    return found.group() if found else None


# Values that never hold card data: find_card_data answers False for them without looking.
_NEVER_CARD = frozenset({type(None), bool, Decimal, datetime, date, float})


def _card_data_in(model: BaseModel) -> bool:
    """find_card_data(model.model_dump()) without building the dump. A request model's keys are its
    field names, never card data; its values are text, numbers, instants, lists and models. Text and
    numbers, nearly all of a body, are checked here as find_card_data checks them, without a call each."""
    for value in model.__dict__.values():
        kind = type(value)
        if kind is str:
            if len(value) >= CARD_TEXT_MIN and is_card_data(value):
                return True
        elif kind is int:
            if value >= CARD_NUMBER_MIN and is_card_data(str(value)):
                return True
        elif kind in _NEVER_CARD:
            continue
        elif isinstance(value, BaseModel):
            if _card_data_in(value):
                return True
        elif isinstance(value, list):
            for item in value:
                if _card_data_in(item) if isinstance(item, BaseModel) else find_card_data(item):
                    return True
        elif find_card_data(value):
            return True
    return False


class _Request(_In):
    """A request body. Once it is valid, payment card data in any of its fields (a card number as a
    line's sku, in a category, an id...) refuses it whole: 422 payment_card, before anything reads it
    further. A body invalid by its schema is invalid_request, whatever it carries; neither answer
    repeats what was sent."""

    @model_validator(mode="after")
    def _no_card_data(self) -> _Request:
        if _card_data_in(self):
            # not a ValueError: pydantic lets it through, and the API answers its code
            raise LaneError("payment_card", "the request carries a payment card number; it was dropped, not stored")
        return self


# One quantity parser for sales, returns, quotes and baskets (posd.core.quantity): a JSON number or a
# string of ASCII digits, more than 0, at most 100000, at most 3 decimals. Its JSON Schema says exactly
# that in standard keywords, so a client generated from the OpenAPI sends only what is taken.
_QUANTITY_TEXT = r"^(100000(\.0{1,3})?|(?=[^1-9]*[1-9])(0[0-9]{5}|[0-9]{1,5})(\.[0-9]{1,3})?)$"
_QUANTITY_HELP = ("a JSON number (2, 0.25) or a string of ASCII digits (\"0.250\"): more than 0, at most 100000, "
                  "at most 3 decimals; no spaces, signs, exponents or other digits")
# parse_quantity enforces every limit (pydantic's own Decimal constraints would only check them again).
Quantity = Annotated[Decimal, BeforeValidator(parse_quantity), WithJsonSchema({
        "anyOf": [{"type": "number", "exclusiveMinimum": 0, "maximum": 100_000, "multipleOf": 0.001},
                  {"type": "string", "pattern": _QUANTITY_TEXT}],
        "description": _QUANTITY_HELP})]


def _whole_number(value: Any) -> Any:
    """JSON has one number type: 5000 and 5000.0 are the same integer (JSON Schema's "integer").
    A string or a boolean is still not one, and 5000.5 is still refused (StrictInt)."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


# A whole number in minor units or points: no strings, no booleans, but 5000.0 is 5000. The limits sit
# inside, before the float is read, so the OpenAPI shows them as JSON Schema's own minimum/maximum.
Price = Annotated[StrictInt, Ge(0), Le(10**9), BeforeValidator(_whole_number)]  # a line's price or discount
Total = Annotated[StrictInt, Ge(0), Le(10**11), BeforeValidator(_whole_number)]  # a basket's total
Amount = Annotated[StrictInt, Gt(0), Le(10**11), BeforeValidator(_whole_number)]  # an amount returned
Points = Annotated[StrictInt, Gt(0), Le(MAX_REQUEST_POINTS), BeforeValidator(_whole_number)]
CODES_MAX = 20  # vouchers and coupons on one basket


class LineIn(_In):
    sku: str = Field(min_length=1, max_length=64)
    category: str | None = Field(default=None, max_length=64)
    quantity: Quantity
    unit_price: Price = Field(description="minor units")
    discount: Price = Field(default=0, description="minor units, whole line")


def _utc_instant(value: datetime) -> datetime:
    """An instant that exists in UTC too: 9999-12-31T23:59-14:00 has a UTC time past year 9999."""
    try:
        value.astimezone(UTC)
    except OverflowError:
        raise ValueError("the time in UTC is outside years 1 to 9999") from None
    return value


_DATE_TIME_TEXT = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}[Tt ]")


def _date_time_text(value: Any) -> Any:
    """A date-time as the schema says: text, date first. pydantic would also read a number, or digits
    in a string, as seconds or milliseconds since 1970: a guess, and no UTC offset given."""
    if isinstance(value, datetime) or (isinstance(value, str) and _DATE_TIME_TEXT.match(value)):
        return value
    raise ValueError("a date and time as text with its UTC offset, such as 2026-12-04T09:15:00+01:00")


Instant = Annotated[AwareDatetime, BeforeValidator(_date_time_text), AfterValidator(_utc_instant)]


Code = Annotated[str, Field(min_length=1, max_length=64)]  # a voucher or coupon code, as /v1/vouchers/{code} takes it


# Bidi embeddings, overrides and isolates: a name carrying one reorders what follows it on a slip or a
# screen ("Anna\u202e" and the points line reads backwards). Marks (U+200E, U+200F) are fine.
BIDI_CONTROLS = re.compile("[\u202a-\u202e\u2066-\u2069]")


def _no_bidi_override(value: str | None) -> str | None:
    if value is not None and BIDI_CONTROLS.search(value):
        raise ValueError("bidi embedding, override or isolate characters (U+202A-U+202E, U+2066-U+2069) "
                         "are not allowed in a name")
    return value


_DATE_TEXT = re.compile(r"^[0-9]{4}-[0-9]{2}-[0-9]{2}$")


def _date_text(value: Any) -> Any:
    """A calendar date as the schema says: YYYY-MM-DD. pydantic would also read a number, or digits in
    a string, as seconds since 1970 (0: born 1970-01-01, a birthday bonus every New Year), and a
    date-time at midnight as its date."""
    if value is None or (isinstance(value, date) and not isinstance(value, datetime)) or \
            (isinstance(value, str) and _DATE_TEXT.match(value)):
        return value
    raise ValueError("a date as text, YYYY-MM-DD, such as 1990-05-17")


def _born(value: date | None) -> date | None:
    """A birth date in the past, within a human life (a typo of 2090 or 0001 gives no birthday bonus)."""
    if value is not None and not date(1900, 1, 1) <= value <= date.today():
        raise ValueError("a birth date between 1900-01-01 and today")
    return value


class TransactionIn(_Request):
    transaction_id: str = Field(pattern=ID_PATTERN, description="the POS's id; the idempotency key" + ID_NOTE)
    member: str | None = Field(default=None, max_length=MEMBER_MAX, description="a member identifier, if identified: "
                               "card code, phone number, member id, or a member token (used by this sale); "
                               "null or left out for a sale without a member (an empty one is unknown_member)")
    occurred_at: Instant = Field(description="with its UTC offset; a time without one is invalid_request. At most "
                                 f"{FUTURE_TOLERANCE // timedelta(minutes=1)} minutes ahead of the lane's clock "
                                 f"(occurred_in_future) and {PAST_TOLERANCE.days} days behind it (occurred_too_old)")
    currency: str = Field(pattern=r"^[A-Z]{3}$")
    lines: list[LineIn] = Field(default_factory=list, max_length=500)
    total: Total = Field(description="minor units; equals the lines' sum when lines are given")


class QuoteIn(TransactionIn):
    codes: list[Code] = Field(default_factory=list, max_length=CODES_MAX,
                             description="vouchers and coupons scanned for this basket, in the order to apply them")


class BasketIn(_In):
    """The basket a voucher or coupon would apply to: as in a sale."""

    currency: str = Field(pattern=r"^[A-Z]{3}$")
    lines: list[LineIn] = Field(default_factory=list, max_length=500)
    total: Total = Field(description="minor units; equals the lines' sum when lines are given")


class Problem(BaseModel):
    code: ErrorCode = Field(description="stable, machine-readable")
    message: str = Field(description="for people")
    errors: list[dict[str, Any]] | None = None


class Balance(BaseModel):
    confirmed: int = Field(description="confirmed by central")
    pending: int = Field(description="this lane's entries central has not applied yet (net)")
    total: int = Field(description="confirmed + pending - expired")
    available: int = Field(description="total less points still maturing (pending days): what can be redeemed")
    maturing: int = 0
    expired: int = 0


class Accrual(BaseModel):
    points: dict[str, int]
    trace: list[dict[str, Any]]
    program_version: str


class SlipState(BaseModel):
    slip_id: str | None
    state: str = Field(description="queued | none")


class TransactionOut(BaseModel):
    transaction_id: str
    member_id: str | None
    accrual: Accrual
    balance: dict[str, Balance]
    slip: SlipState
    seq: int | None = Field(description="the lane's outbox seq of the accrual event")
    offline: bool
    recorded_at: str


class TierOut(BaseModel):
    id: str | None
    name: str | None
    multiplier: str = Field(description="exact decimal, e.g. \"1.5\"")


class NextTier(BaseModel):
    id: str
    name: str


class Progress(BaseModel):
    next_tier: NextTier
    qualifying: int = Field(description="the member's points toward the tier: with a qualifying tier currency, "
                                        "the same figure as balances[tier_currency].total (central's plus this "
                                        "lane's unsynced); with a spendable one, central's figure, which "
                                        "spending does not lower")
    threshold: int = Field(description="the next tier's threshold")
    points_needed: int = Field(description="threshold - qualifying, at least 0")


class RewardAvailable(BaseModel):
    reward_id: str
    title: str
    currency: str
    points: int
    kind: str = Field(description="discount | free_item | fixed_value")


class MemberOut(BaseModel):
    member_id: str
    display_name: str
    locale: str | None
    status: str
    tier: TierOut
    progress: Progress | None = Field(description="to the next tier; null in the top tier")
    balances: dict[str, Balance]
    rewards_available: list[RewardAvailable]
    offers: list[dict[str, Any]] = Field(description="personal offers as central publishes them")
    as_of: str | None
    stale: bool
    provisional: bool = Field(default=False, description="enrolled at this lane; central has not named the member "
                                                         "yet (member_id is the provisional id)")


class EnrolmentIn(_Request):
    card: str | None = Field(default=None, min_length=1, max_length=64,
                             description="the code of the pre-printed member card handed over")
    phone: str | None = Field(default=None, min_length=3, max_length=32,
                              description="a phone number; without +country it is read in the lane's country")
    display_name: Annotated[str | None, AfterValidator(_no_bidi_override)] = Field(default=None, min_length=1,
                                                                                  max_length=64)
    locale: Literal["pl", "fa", "en"] | None = None
    birth_date: Annotated[date | None, BeforeValidator(_date_text), AfterValidator(_born)] = None

    @model_validator(mode="after")
    def _an_identifier(self) -> EnrolmentIn:
        if not self.card and not self.phone:
            raise ValueError("give a card or a phone number (or both)")
        return self


class EnrolmentOut(BaseModel):
    member_id: str = Field(description="provisional (P-...): use it, or the card, for this member's sales")
    provisional: bool
    identifiers: list[str] = Field(description="the card code and the phone number in E.164, as stored")
    seq: int = Field(description="the lane's outbox seq of the member_enrolled event")
    member: MemberOut
    recorded_at: str


class ReprintOut(BaseModel):
    slip_id: str
    job_id: str
    state: str


class SlipJob(BaseModel):
    job_id: str
    kind: str = Field(description="`sale`, `return`, `redemption`... for the first print; `reprint` for a copy")
    state: str = Field(description="`queued`, `printing`, `printed`, `failed` or `expired`")
    attempts: int
    created_at: str
    printed_at: str | None
    last_error: str | None = Field(description="why the last attempt did not print (the printer's reason)")


class SlipStatusOut(BaseModel):
    slip_id: str
    jobs: list[SlipJob] = Field(description="the slip's print jobs, first queued first: its first print, then "
                                            "each reprint")


class ReturnLineIn(_In):
    sku: str = Field(min_length=1, max_length=64)
    quantity: Quantity


class ReturnIn(_Request):
    return_id: str = Field(pattern=ID_PATTERN, description="the POS's id for this return; the idempotency key"
                           + ID_NOTE)
    lines: list[ReturnLineIn] | None = Field(default=None, min_length=1, max_length=500,
                                             description="what came back; or give amount")
    amount: Amount | None = Field(default=None, description="minor units; or give lines")

    @model_validator(mode="after")
    def _one_of(self) -> ReturnIn:
        if (self.lines is None) == (self.amount is None):
            raise ValueError("give either lines or amount")
        return self


class ReturnOut(BaseModel):
    transaction_id: str
    return_id: str
    reversed: dict[str, int] = Field(description="points taken back per currency (positive numbers)")
    balance: dict[str, Balance]
    seq: int | None
    recorded_at: str


class RedemptionIn(_Request):
    redemption_id: str = Field(pattern=ID_PATTERN, description="the POS's id; the idempotency key" + ID_NOTE)
    member: str = Field(max_length=MEMBER_MAX, description="card code, phone number, member id or member token")
    reward_id: str | None = Field(default=None, max_length=128)  # as long as a program may make one
    points: Points | None = Field(default=None, description="without reward_id: this many of the main currency as "
                                                            "a money-off voucher at the program's money_value "
                                                            "(docs/program.md); never with reward_id (the reward "
                                                            "sets its price): invalid_request")
    transaction_id: str | None = Field(default=None, pattern=ID_PATTERN)

    @field_validator("points")
    @classmethod
    def _not_with_a_reward(cls, points: int | None, info: ValidationInfo) -> int | None:
        # reward_id is validated first: a redemption names a reward or points, and a reward's price
        # is the reward's, so points beside it would be silently ignored
        if points is not None and info.data.get("reward_id"):
            raise ValueError("give reward_id or points, not both: the reward sets its own price")
        return points


class Target(BaseModel):
    skus: list[str]
    categories: list[str]


class Benefit(BaseModel):
    """What a reward, voucher or coupon takes off a basket (docs/program.md, basket effects)."""

    kind: Literal["amount_off", "percent_off", "free_item"]
    value_minor: int | None = Field(description="amount_off, minor units")
    money: str | None = Field(description="the money currency of value_minor; null: the basket's")
    percent: int | None
    sku: str | None = Field(description="free_item")
    applies_to: Target = Field(description="the lines it applies to (by SKU or category); both empty: the basket")
    category: str | None = Field(description="its stacking category")


class LineOff(BaseModel):
    index: int = Field(description="position in the basket's lines")
    sku: str
    amount_off_minor: int


class FreeItem(BaseModel):
    sku: str
    quantity: str


class Effect(BaseModel):
    """What one benefit takes off this basket: the total and per line (they add up), or why nothing."""

    applicable: bool
    amount_off_minor: int
    lines: list[LineOff]
    free_item: FreeItem | None
    reason: str | None = Field(description="not applicable, or not applied: no_matching_lines, item_not_in_basket, "
                                           "nothing_left, other_currency, max_per_basket, exclusive_category")


class NotUsable(BaseModel):
    id: str
    reason: str = Field(description="an error code, as validate would answer it: unknown_voucher, voucher_unavailable "
                                    "(a lane voucher's code central could not be asked about), voucher_used, "
                                    "voucher_expired, member_required, member_ineligible, ...; duplicate_code for a code given "
                                    "again (it applies once, at its first place)")


class AppliedEffect(Effect):
    applied: bool = Field(description="applied after the codes already on the basket, under the program's stacking")
    not_usable: list[NotUsable] = Field(default_factory=list, description="codes of `applied` that cannot be used "
                                        "(unknown, used, expired, ...): they take nothing off and are left out of "
                                        "the stack, as a quote leaves them")


class Voucher(BaseModel):
    code: str
    title: str
    symbology: str
    expires_at: str | None
    valid_until: str | None = Field(default=None, description="last day of validity, store-local date")
    reward_id: str | None
    kind: str | None
    value_minor: int | None
    percent: int | None
    sku: str | None
    benefit: Benefit | None = None


Authorised = Literal["online", "offline"]


class RedemptionOut(BaseModel):
    redemption_id: str
    member_id: str
    points: dict[str, int]
    voucher: Voucher
    balance: dict[str, Balance]
    slip: SlipState
    seq: int
    offline: bool = Field(description="true when central did not authorise it (authorised: offline)")
    authorised: Authorised | None = Field(default=None, description="online: central checked and reserved it; "
                                                                    "offline: the lane decided within its offline caps")
    recorded_at: str


class VoucherValidateIn(_Request):
    code: str = Field(min_length=1, max_length=64)
    member: str | None = Field(default=None, max_length=MEMBER_MAX)
    basket: BasketIn | None = Field(default=None, description="answer its effect on this basket")
    applied: list[Code] = Field(default_factory=list, max_length=CODES_MAX,
                               description="codes already applied to the basket, in order (stacking); this code "
                                           "itself, when listed, is left out: its effect is answered after the others")


class VoucherUseIn(_Request):
    transaction_id: str = Field(pattern=ID_PATTERN)
    member: str | None = Field(default=None, max_length=MEMBER_MAX)
    basket: BasketIn | None = Field(default=None, description="answer its effect on this basket")
    applied: list[Code] = Field(default_factory=list, max_length=CODES_MAX,
                               description="codes already applied to the basket, in order (stacking); this code "
                                           "itself, when listed, is left out: its effect is answered after the others")


class VoucherOut(BaseModel):
    code: str
    valid: bool | None = None
    used: bool | None = None
    transaction_id: str | None = None
    used_at: str | None = None
    seq: int | None = Field(default=None, description="use: the lane's outbox seq of the voucher_use event")
    source: str | None = Field(description="redemption (issued here), coupon (the program), feed (issued at "
                                           "another lane, from central's member feed), central (asked just now)")
    member_id: str | None = Field(description="whose it is: the voucher's holder, or for a coupon anyone may "
                                              "use, the member named in the request (null when none was)")
    reward_id: str | None = None
    description: str | None
    value_minor: int | None
    percent: int | None
    sku: str | None
    expires_at: str | None
    benefit: Benefit | None = None
    issued_by: str | None = Field(default=None, description="store/lane that issued a voucher from elsewhere")
    authorised: Authorised | None = Field(default=None, description="use: online when central authorised it, "
                                                                    "offline when the lane did within its caps; "
                                                                    "validate: whether central was asked")
    effect: AppliedEffect | None = None


class QuoteReward(BaseModel):
    reward_id: str
    title: str
    currency: str
    points: int
    kind: str
    affordable: bool = Field(description="the member's available balance covers it now")
    limit_reached: bool = Field(default=False, description="the member had it as often as its daily limit allows "
                                                           "today, on this lane: redeemed now it is "
                                                           "reward_limit_reached (central counts every lane's)")
    benefit: Benefit
    effect: Effect = Field(description="its voucher's effect on this basket, alone")


class QuoteVoucher(BaseModel):
    code: str
    description: str
    source: str
    expires_at: str | None
    benefit: Benefit
    effect: Effect = Field(description="its effect on this basket, alone")


class Stacked(BaseModel):
    id: str
    applied: bool
    reason: str | None
    effect: Effect


class Discounts(BaseModel):
    amount_off_minor: int
    applied: list[Stacked]
    not_applied: list[Stacked]
    not_usable: list[NotUsable]


class QuoteOut(BaseModel):
    transaction_id: str
    member_id: str | None
    accrual: Accrual = Field(description="what the sale of this basket earns: a sale right after earns exactly this")
    balance: dict[str, Balance]
    rewards: list[QuoteReward] = Field(description="catalog rewards the member's tier may redeem, with their effect")
    vouchers: list[QuoteVoucher] = Field(description="vouchers and coupons the member holds, with their effect")
    discounts: Discounts | None = Field(description="the codes given, applied in order under the program's stacking")
    accrual_with_discounts: Accrual | None = Field(
        description="what the sale earns if the POS takes the discounts off its lines (each line's discount grows "
                    "by its amount_off_minor)")


# -- health ---------------------------------------------------------------------------

class DeviceError(BaseModel):
    reason: str
    at: str = Field(description="UTC")


class DeviceOut(BaseModel):
    name: str
    kind: str
    url: str = Field(description="credentials redacted")
    state: Literal["closed", "idle", "busy", "error"]
    reason: str | None
    since: str | None = Field(default=None, description="when the device entered this state, UTC")
    last_error: DeviceError | None = Field(default=None, description="the device's latest error, even if it recovered")
    paper: Literal["ok", "near_end", "out"] | None = Field(
        default=None, description="a printer's paper as its last status (DLE EOT) said; null when unknown")


class WorkerStatus(BaseModel):
    """A sync worker (relay or puller) as health and sync.status show it."""

    state: str
    running: bool
    last_success_at: str | None
    last_error: str | None
    consecutive_failures: int
    central_answered: bool = Field(default=False, description="the failures are central's answers (an HTTP "
                                   "5xx or 429, an answer the protocol does not allow, a push taken in part or "
                                   "asked for again, a refusal of the credentials or of the lane's "
                                   "identity), not silence")
    next_attempt_in_s: float | None
    clock_skew_s: float | None = Field(description="central's Date minus the lane's clock")


class PullStatus(WorkerStatus):
    members_applied: int
    program_updates: int


class RelayStatus(WorkerStatus):
    sent_events: int
    quarantined_events: int
    token_replays_flagged: int = Field(
        default=0, description="token_use events central flagged since start: a member token this lane accepted "
                               "offline had been used at another lane (information: central has them, nothing "
                               "to repair here)")
    birthday_repeats_flagged: int = Field(
        default=0, description="accruals central flagged since start: a birthday bonus this lane gave offline had "
                               "been given at another lane first that year (information: the points stand)")
    sync_lane_id: str | None = Field(description="the lane id this ledger syncs under")


class QuarantinedEvent(BaseModel):
    seq: int
    type: str
    code: str | None = Field(description="central's reason (rejected code)")
    refused_at: str | None
    created_at: str
    member_id: str | None
    ref: str | None = Field(description="what the till knows it by: the redemption, return or sale id, the voucher code")


class SyncHealth(RelayStatus):
    pending: int
    oldest_pending_age_s: float | None
    quarantined: int
    quarantined_acknowledged: int = Field(
        default=0, description="of those, acknowledged with `posd ledger quarantine --acknowledge`: no longer a "
                               "warning")
    quarantined_recent: list[QuarantinedEvent] = Field(
        default_factory=list, description="the newest quarantined events (up to 10); `posd ledger quarantine` "
                                          "lists them all")
    last_acked_seq: int
    online: bool
    last_sync_at: str | None = Field(default=None, description="the last successful push or pull, UTC")
    pull: PullStatus


class CacheHealth(BaseModel):
    members: int
    program_version: str | None
    members_synced_at: str | None
    age_s: float | None
    stale: bool
    rebuilt: bool = Field(description="cache.db was corrupt and is being rebuilt from central")


class Issue(BaseModel):
    """One finding behind the status, with a stable code the status page translates."""

    code: Literal["device_error", "paper_near_end", "program_missing", "currency_not_earned", "ledger_unwritable",
                  "print_worker_stopped",
                  "central_unreachable", "central_error", "central_auth_failed", "identity_conflict",
                  "program_refused", "quarantined",
                  "sync_backlog",
                  "cache_stale", "disk_low"]
    severity: Literal["error", "warning"] = Field(
        description="error: sales cannot be recorded or slips cannot print; warning: the lane works, look soon")
    subject: str | None = Field(description="the device it is about")
    reason: str | None = Field(description="the device's reason (paper_out, offline, ...)")
    detail: str | None = Field(description="technical detail, English")
    values: dict[str, Any] = Field(description="figures the message uses (count, age_s, free_mb, ...)")


class StorageHealth(BaseModel):
    free_mb: int | None = Field(description="free space on the storage file system")
    min_free_mb: int = Field(description="storage.min_free_mb: below it, a disk_low warning")
    ledger_bytes: int | None = Field(description="ledger.db with its -wal and -shm files (recent commits live "
                                                 "in the -wal until a checkpoint), as /metrics and doctor count it")
    ledger_mb: float | None = Field(description="ledger_bytes in MiB, to 3 decimals")


class HealthOut(BaseModel):
    status: Literal["ok", "degraded", "error"] = Field(
        description="error: sales cannot be recorded or slips cannot print; degraded: central unreachable or "
                    "answering errors, a "
                    "device in error or another warning; ok otherwise")
    problems: list[str] = Field(description="the issues in English")
    issues: list[Issue] = []
    version: str
    store_id: str
    lane_id: str
    locale: str | None = None
    timezone: str | None = None
    started_at: str | None = None
    uptime_s: float
    last_sale_at: str | None = Field(default=None, description="when the latest sale was recorded, UTC")
    devices: list[DeviceOut]
    sync: SyncHealth
    cache: CacheHealth
    storage: StorageHealth | None = None


# -- the event stream (GET /v1/events): `event:` is the type, `data:` one of these as JSON ---------

class _Event(BaseModel):
    at: str = Field(description="when posd published it, UTC")


class ScanEvent(_Event):
    type: Literal["scan"]
    device: str
    symbology: str | None
    kind: Literal["code", "token", "phone", "voucher", "invalid"] = Field(
        description="token: a member token (phone QR, wallet pass), not repeated here; phone: a phone number "
                    "(typed, or a QR's tel: link), not repeated here either; member.identified or member.unknown "
                    "follows. voucher: a voucher's or the program's coupon code no member holds (a voucher slip "
                    "scanned at the till), as POST /v1/vouchers/{code}/use takes it: no member event follows")
    data: str | None = Field(default=None, description="the code read (a voucher's or coupon's as issued); absent "
                                                       "when invalid, a token or a phone")


IdentifiedBy = Literal["card", "qr_token", "wallet_totp", "msr", "nfc", "phone", "typed"]


class MemberIdentifiedEvent(_Event):
    type: Literal["member.identified"]
    device: str
    identifier: str = Field(description="the code read; for a member token the member's id (the token is used up)")
    identified_by: IdentifiedBy = Field(description="card (a barcode), qr_token (the phone's signed QR), wallet_totp "
                                                    "(a wallet pass), msr, nfc, phone (a phone number "
                                                    "read at a scanner: a tel: link or +E.164), typed")
    token_id: str | None = Field(default=None, description="the accepted token's id (qr_token, wallet_totp)")
    member: MemberOut


class MemberTokenRejectedEvent(_Event):
    type: Literal["member.token_rejected"]
    device: str
    scheme: Literal["qr_token", "wallet_totp"]
    reason: Literal["malformed", "unknown_key", "bad_signature", "expired", "not_yet_valid", "bad_code", "replayed",
                    "not_recorded"] = Field(description="not_recorded: the lane's disk refused the write "
                                                        "(code storage_full or storage_failed); the token is "
                                                        "not used up")
    code: ErrorCode = Field(description="the error code the API answers the same token with")


class MemberTokenFlaggedEvent(_Event):
    type: Literal["member.token_flagged"]
    member_id: str
    token_id: str = Field(description="the token (or wallet code's replay id) central says another lane used first")
    identified_by: Literal["qr_token", "wallet_totp"]
    seq: int = Field(description="the token_use event's seq on this lane")
    code: Literal["token_replayed"] = Field(description="central's rejection code")


class MemberBirthdayFlaggedEvent(_Event):
    type: Literal["member.birthday_flagged"]
    member_id: str
    transaction_id: str = Field(description="the sale whose accrual gave the bonus")
    year: int = Field(description="the store-local year of the bonus, given at another lane first")
    seq: int = Field(description="the accrual event's seq on this lane")
    code: Literal["birthday_repeated"] = Field(description="central's flag on the accepted accrual")


class MemberUnknownEvent(_Event):
    type: Literal["member.unknown"]
    device: str
    identifier: str


class MemberUnavailableEvent(_Event):
    type: Literal["member.unavailable"]
    device: str
    identifier: str = Field(description="the code read (never a token's text: a token names its member id)")
    code: Literal["member_unavailable"] = Field(description="the error code the API answers the same code with")


class CardRejectedEvent(_Event):
    type: Literal["card.rejected"]
    device: str
    reason: Literal["payment_card"]


class DeviceStatusEvent(_Event):
    type: Literal["device.status"]
    device: str
    kind: str
    state: Literal["closed", "idle", "busy", "error"]
    reason: str | None


class PrintStatusEvent(_Event):
    type: Literal["print.status"]
    job_id: str
    slip_id: str
    kind: str = Field(description="slip | redemption | reprint | drawer")
    client_job_id: str | None = Field(description="the POS's Idempotency-Key, when it gave one")
    state: Literal["held", "printed", "expired", "failed"]
    reason: str | None = Field(description="held: paper_out, cover_open, offline, io_error; expired: ttl; "
                                            "failed: internal, crashed")


class SyncStatusEvent(_Event, RelayStatus):
    type: Literal["sync.status"]
    online: bool


class StreamResetEvent(_Event):
    type: Literal["stream.reset"]
    reason: str


StreamEvent = Annotated[
    Union[ScanEvent, MemberIdentifiedEvent, MemberUnknownEvent, MemberUnavailableEvent, MemberTokenRejectedEvent, MemberTokenFlaggedEvent,
          MemberBirthdayFlaggedEvent,
          CardRejectedEvent,
          DeviceStatusEvent,
          PrintStatusEvent, SyncStatusEvent, StreamResetEvent],
    Field(discriminator="type"),
]
