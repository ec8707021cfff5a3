"""Slip layout: what a reward slip says, as a SlipDocument. Pure.

The slip data is stored with the print job (ledger.db) so a slip can be
printed after a restart, reprinted, or previewed, and always says the same.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from posd.core.messages import RTL_LOCALES, message
from posd.core.slip_doc import Columns, Feed, Rule, SlipDocument, Text


@dataclass(frozen=True)
class SlipData:
    slip_id: str
    store_id: str
    lane_id: str
    transaction_id: str
    occurred_at: str  # ISO-8601, store-local rendering is the layout's job
    member_name: str
    tier_name: str | None
    earned: dict[str, int]
    balance: dict[str, int]  # total (confirmed + pending) per currency
    pending: dict[str, int] = field(default_factory=dict)
    next_tier: dict[str, Any] | None = None  # {"name": ..., "points_needed": ...}
    reprint: bool = False

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> SlipData:
        return cls(**data)


def _points(locale: str, currency: str, n: int) -> str:
    return f"{n} {message(locale, f'currency.{currency}') if currency == 'points' else currency}"


def build_slip(data: SlipData, locale: str) -> SlipDocument:
    m = lambda key, **kw: message(locale, key, **kw)  # noqa: E731
    blocks: list = [Text(m("slip.title"), align="center", bold=True, double=True)]
    if data.reprint:
        blocks.append(Text(m("slip.reprint"), align="center", bold=True))
    blocks += [Rule(), Columns(m("slip.member"), data.member_name)]
    if data.tier_name:
        blocks.append(Columns(m("slip.tier"), data.tier_name))
    blocks.append(Rule())
    for cur, pts in sorted(data.earned.items()):
        blocks.append(Columns(m("slip.earned"), _points(locale, cur, pts), bold=True))
    for cur, pts in sorted(data.balance.items()):
        blocks.append(Columns(m("slip.balance"), _points(locale, cur, pts)))
        if data.pending.get(cur):
            blocks.append(Columns(f"  {m('slip.pending')}", _points(locale, cur, data.pending[cur])))
    if data.next_tier:
        blocks.append(Text(m("slip.next_tier", points=data.next_tier["points_needed"],
                             tier=data.next_tier["name"]), align="center"))
    blocks += [
        Rule(),
        Columns(m("slip.transaction"), data.transaction_id),
        Text(m("slip.lane", store=data.store_id, lane=data.lane_id), align="center"),
        Text(data.occurred_at, align="center"),
        Feed(1),
        Text(m("slip.thanks"), align="center", bold=True),
    ]
    return SlipDocument(
        slip_id=data.slip_id,
        locale=locale,
        direction="rtl" if locale in RTL_LOCALES else "ltr",
        blocks=tuple(blocks),
    )
