"""Request and answer shapes of the local API (they become /openapi.json)."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, StrictInt

ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$"  # also a safe slip file name


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
    member: str | None = Field(default=None, max_length=64, description="a member identifier, if identified")
    occurred_at: AwareDatetime
    currency: str = Field(pattern=r"^[A-Z]{3}$")
    lines: list[LineIn] = Field(default_factory=list, max_length=500)
    total: StrictInt = Field(ge=0, le=10**11, description="minor units; equals the lines' sum when lines are given")


class Problem(BaseModel):
    code: str = Field(description="stable, machine-readable")
    message: str = Field(description="for people")
    errors: list[dict[str, Any]] | None = None


class Balance(BaseModel):
    confirmed: int
    pending: int
    total: int


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


class MemberOut(BaseModel):
    member_id: str
    display_name: str
    locale: str | None
    status: str
    tier: dict[str, Any]
    progress: dict[str, Any] | None
    balances: dict[str, Balance]
    rewards_available: list[dict[str, Any]]
    offers: list[dict[str, Any]]
    as_of: str | None
    stale: bool


class ReprintOut(BaseModel):
    slip_id: str
    job_id: str
    state: str
