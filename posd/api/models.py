"""Request and answer shapes of the local API (they become /openapi.json)."""

from __future__ import annotations

from datetime import date
from decimal import Decimal
from typing import Annotated, Any, Literal, Union

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, StrictInt, model_validator

from posd.api.errors import ErrorCode

ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$"  # also a safe slip file name
MEMBER_MAX = 404  # a member identifier, up to a phone QR token (posd.core.member_tokens)


class _In(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)


class LineIn(_In):
    sku: str = Field(min_length=1, max_length=64)
    category: str | None = Field(default=None, max_length=64)
    quantity: Decimal = Field(gt=0, le=100_000, max_digits=12, decimal_places=3)
    unit_price: StrictInt = Field(ge=0, le=10**9, description="minor units")
    discount: StrictInt = Field(default=0, ge=0, le=10**9, description="minor units, whole line")


class TransactionIn(_In):
    transaction_id: str = Field(pattern=ID_PATTERN, description="the POS's id; the idempotency key")
    member: str | None = Field(default=None, max_length=MEMBER_MAX, description="a member identifier, if identified: "
                               "card code, phone number, member id, or a member token (used by this sale)")
    occurred_at: AwareDatetime
    currency: str = Field(pattern=r"^[A-Z]{3}$")
    lines: list[LineIn] = Field(default_factory=list, max_length=500)
    total: StrictInt = Field(ge=0, le=10**11, description="minor units; equals the lines' sum when lines are given")


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
    qualifying: int
    threshold: int
    points_needed: int


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


class EnrolmentIn(_In):
    card: str | None = Field(default=None, min_length=1, max_length=64,
                             description="the code of the pre-printed member card handed over")
    phone: str | None = Field(default=None, min_length=3, max_length=32,
                              description="a phone number; without +country it is read in the lane's country")
    display_name: str | None = Field(default=None, min_length=1, max_length=64)
    locale: Literal["pl", "fa", "en"] | None = None
    birth_date: date | None = None

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


class ReturnLineIn(_In):
    sku: str = Field(min_length=1, max_length=64)
    quantity: Decimal = Field(gt=0, le=100_000, max_digits=12, decimal_places=3)


class ReturnIn(_In):
    return_id: str = Field(pattern=ID_PATTERN, description="the POS's id for this return; the idempotency key")
    lines: list[ReturnLineIn] | None = Field(default=None, min_length=1, max_length=500,
                                             description="what came back; or give amount")
    amount: StrictInt | None = Field(default=None, gt=0, le=10**11, description="minor units; or give lines")

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


class RedemptionIn(_In):
    redemption_id: str = Field(pattern=ID_PATTERN, description="the POS's id; the idempotency key")
    member: str = Field(max_length=MEMBER_MAX, description="card code, phone number, member id or member token")
    reward_id: str | None = Field(default=None, max_length=64)
    points: StrictInt | None = Field(default=None, gt=0, le=10**9)
    transaction_id: str | None = Field(default=None, pattern=ID_PATTERN)


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


class RedemptionOut(BaseModel):
    redemption_id: str
    member_id: str
    points: dict[str, int]
    voucher: Voucher
    balance: dict[str, Balance]
    slip: SlipState
    seq: int
    offline: bool
    recorded_at: str


class VoucherValidateIn(_In):
    code: str = Field(min_length=1, max_length=64)
    member: str | None = Field(default=None, max_length=MEMBER_MAX)


class VoucherUseIn(_In):
    transaction_id: str = Field(pattern=ID_PATTERN)
    member: str | None = Field(default=None, max_length=MEMBER_MAX)


class VoucherOut(BaseModel):
    code: str
    valid: bool | None = None
    used: bool | None = None
    transaction_id: str | None = None
    used_at: str | None = None
    seq: int | None = Field(default=None, description="use: the lane's outbox seq of the voucher_use event")
    source: str | None
    member_id: str | None
    reward_id: str | None = None
    description: str | None
    value_minor: int | None
    percent: int | None
    sku: str | None
    expires_at: str | None


# -- health ---------------------------------------------------------------------------

class DeviceOut(BaseModel):
    name: str
    kind: str
    url: str = Field(description="credentials redacted")
    state: Literal["closed", "idle", "busy", "error"]
    reason: str | None


class WorkerStatus(BaseModel):
    """A sync worker (relay or puller) as health and sync.status show it."""

    state: str
    running: bool
    last_success_at: str | None
    last_error: str | None
    consecutive_failures: int
    next_attempt_in_s: float | None
    clock_skew_s: float | None = Field(description="central's Date minus the lane's clock")


class PullStatus(WorkerStatus):
    members_applied: int
    program_updates: int


class RelayStatus(WorkerStatus):
    sent_events: int
    quarantined_events: int
    sync_lane_id: str | None = Field(description="the lane id this ledger syncs under")


class SyncHealth(RelayStatus):
    pending: int
    oldest_pending_age_s: float | None
    quarantined: int
    last_acked_seq: int
    online: bool
    pull: PullStatus


class CacheHealth(BaseModel):
    members: int
    program_version: str | None
    members_synced_at: str | None
    age_s: float | None
    stale: bool
    rebuilt: bool = Field(description="cache.db was corrupt and is being rebuilt from central")


class HealthOut(BaseModel):
    status: Literal["ok", "degraded", "error"]
    problems: list[str]
    version: str
    store_id: str
    lane_id: str
    uptime_s: float
    devices: list[DeviceOut]
    sync: SyncHealth
    cache: CacheHealth


# -- the event stream (GET /v1/events): `event:` is the type, `data:` one of these as JSON ---------

class _Event(BaseModel):
    at: str = Field(description="when posd published it, UTC")


class ScanEvent(_Event):
    type: Literal["scan"]
    device: str
    symbology: str | None
    kind: Literal["code", "token", "invalid"] = Field(description="token: a member token (phone QR, wallet pass), "
                                                               "not repeated here; member.identified follows")
    data: str | None = Field(default=None, description="the code read; absent when invalid or a token")


IdentifiedBy = Literal["card", "qr_token", "wallet_totp", "msr", "nfc", "typed"]


class MemberIdentifiedEvent(_Event):
    type: Literal["member.identified"]
    device: str
    identifier: str = Field(description="the code read; for a member token the member's id (the token is used up)")
    identified_by: IdentifiedBy = Field(description="card (a barcode), qr_token (the phone's signed QR), wallet_totp "
                                                    "(a wallet pass), msr, nfc, typed")
    token_id: str | None = Field(default=None, description="the accepted token's id (qr_token, wallet_totp)")
    member: MemberOut


class MemberTokenRejectedEvent(_Event):
    type: Literal["member.token_rejected"]
    device: str
    scheme: Literal["qr_token", "wallet_totp"]
    reason: Literal["malformed", "unknown_key", "bad_signature", "expired", "not_yet_valid", "bad_code", "replayed"]
    code: ErrorCode = Field(description="the error code the API answers the same token with")


class MemberUnknownEvent(_Event):
    type: Literal["member.unknown"]
    device: str
    identifier: str


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
                                            "failed: internal")


class SyncStatusEvent(_Event, RelayStatus):
    type: Literal["sync.status"]
    online: bool


class StreamResetEvent(_Event):
    type: Literal["stream.reset"]
    reason: str


StreamEvent = Annotated[
    Union[ScanEvent, MemberIdentifiedEvent, MemberUnknownEvent, MemberTokenRejectedEvent, CardRejectedEvent,
          DeviceStatusEvent,
          PrintStatusEvent, SyncStatusEvent, StreamResetEvent],
    Field(discriminator="type"),
]
