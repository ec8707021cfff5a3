"""Slip layout: what a reward slip says, as a SlipDocument. Pure.

The slip data is stored with the print job (ledger.db) so a slip can be
printed after a restart, reprinted, or previewed, and always says the same.
The document is paper-agnostic: the ESC/POS renderer wraps it to 58 or 80 mm
and chooses text or raster per block.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from fractions import Fraction
from typing import Any, Mapping

from posd.core.messages import (
    CATALOGS,
    PERSIAN_DIGIT_LOCALES,
    RTL_LOCALES,
    format_amount,
    format_datetime,
    format_number,
    has_message,
    localize_digits,
    message,
)
from posd.core.slip_doc import Barcode, Block, Columns, Feed, Progress, QRCode, Rule, SlipDocument, Text

# Trace rules that explain arithmetic, not something the member earned.
_HIDDEN_RULES = frozenset({"rounding"})
# Tier-qualifying points show as the progress to the next tier, not as a balance.
_HIDDEN_CURRENCIES = frozenset({"qualifying"})


@dataclass(frozen=True)
class SlipData:
    """Everything a slip says, stored as JSON with the print job.

    Text that central provides in several languages (tier names, reward,
    voucher and offer titles) may be a plain string or a ``{locale: str}``
    mapping; the layout picks the slip's language, then en, then any.

    - ``kind``: ``"sale"`` (points earned), ``"redemption"`` (points used for a
      reward; ``earned`` holds the negative delta) or ``"return"`` (points
      reversed; ``earned`` negative).
    - ``store_name``: printed as the header; the program title when empty.
    - ``earned``/``balance``: per currency; ``balance`` is the total (confirmed
      + pending), ``pending`` the part central has not confirmed yet (shown
      only when non-zero). Currencies earned 0 are left out, and so is
      ``qualifying`` (tier points: shown as the progress to the next tier).
    - ``next_tier``: ``{"name": Localized, "points_needed": int}`` and,
      optionally, ``"threshold": int`` (its qualifying points) to draw a
      progress bar; ``None`` in the top tier (``tier_name`` set) or without tiers.
    - ``breakdown``: the accrual's rule trace, one dict per rule:
      ``{"type": "base_rate" | "tier_multiplier" | "promotion" | ... (or
      "rule" when it names the kind), "currency"?: str, "status"?: "applied",
      "points": int | "exact decimal or fraction", "multiplier"?: str,
      "label"?: Localized}``. A ``label`` overrides the catalog's
      ``slip.rule.<type>``; entries not applied, of a currency not earned on
      this slip, with no label and no catalog entry, and ``rounding``, are
      not printed.
    - ``rewards_available``: ``[{"title": Localized, "points": int,
      "currency"?: "points"}]``, what the balance can buy now.
    - ``vouchers``: ``[{"code": str, "title": Localized, "symbology":
      "CODE128" | "QR", "valid_until"?: "YYYY-MM-DD"}]``; each prints as a
      scannable code that decodes to ``code``.
    - ``offers``: ``[{"title": Localized, "text"?: Localized}]`` personal offers.
    - ``member_qr``: data for a member QR (app link, enrolment), or None.
    - ``locale``: the member's language; when the catalogs have it the slip
      is printed in it instead of the lane's.
    - ``calendar``: ``"jalali"`` or ``"gregorian"`` for the date; empty means
      Jalali for Persian slips, Gregorian otherwise.
    """

    slip_id: str
    store_id: str
    lane_id: str
    transaction_id: str
    occurred_at: str  # store-local "YYYY-MM-DD HH:MM"; the layout formats it per locale
    member_name: str
    tier_name: Any  # Localized | None
    earned: dict[str, int]
    balance: dict[str, int]  # total (confirmed + pending) per currency
    pending: dict[str, int] = field(default_factory=dict)
    next_tier: dict[str, Any] | None = None
    reprint: bool = False
    kind: str = "sale"
    store_name: str = ""
    breakdown: list[dict[str, Any]] = field(default_factory=list)
    rewards_available: list[dict[str, Any]] = field(default_factory=list)
    vouchers: list[dict[str, Any]] = field(default_factory=list)
    offers: list[dict[str, Any]] = field(default_factory=list)
    member_qr: str | None = None
    locale: str | None = None
    calendar: str = ""

    def to_json(self) -> dict[str, Any]:
        # shallow on purpose: asdict() deep-copies every trace entry, and this runs in each sale's write
        return {f.name: getattr(self, f.name) for f in fields(self)}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> SlipData:
        # Unknown keys are ignored: a job stored by a newer posd still prints.
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})


def localized(value: Any, locale: str) -> str:
    """A plain string as is; a ``{locale: text}`` mapping in ``locale``, en, or any."""
    if value is None:
        return ""
    if isinstance(value, Mapping):
        for key in (locale, "en"):
            if value.get(key):
                return str(value[key])
        return next((str(v) for v in value.values() if v), "")
    return str(value)


def slip_locale(data: SlipData, lane_locale: str) -> str:
    return data.locale if data.locale in CATALOGS else lane_locale


def build_slip(data: SlipData, locale: str) -> SlipDocument:
    """The slip as a document, in the member's language when known, else ``locale``."""
    loc = slip_locale(data, locale)
    b = _Builder(loc, data.calendar)
    b.header(data)
    b.member(data)
    b.points(data)
    b.rewards(data)
    b.vouchers(data)
    b.offers(data)
    b.footer(data)
    return SlipDocument(
        slip_id=data.slip_id,
        locale=loc,
        direction="rtl" if loc in RTL_LOCALES else "ltr",
        blocks=tuple(b.blocks),
    )


class _Builder:
    def __init__(self, locale: str, calendar: str = "") -> None:
        self.locale = locale
        self.blocks: list[Block] = []
        if calendar not in ("jalali", "gregorian"):
            calendar = "jalali" if locale in PERSIAN_DIGIT_LOCALES else "gregorian"
        self.calendar = calendar
        # A bullet every Polish code page has; raster (RTL) slips can use the real one.
        self.bullet = "• " if locale in RTL_LOCALES else "- "

    def m(self, key: str, **params: object) -> str:
        return message(self.locale, key, **params)

    def add(self, *blocks: Block) -> None:
        self.blocks.extend(blocks)

    def amount(self, currency: str, n: int, signed: bool = False) -> str:
        return format_amount(self.locale, currency, n, signed=signed)

    # -- sections ---------------------------------------------------------
    def header(self, d: SlipData) -> None:
        self.add(Text(d.store_name or self.m("slip.title"), align="center", bold=True, double=True))
        kind = d.kind if d.kind in ("sale", "redemption", "return") else "sale"
        self.add(Text(self.m(f"slip.kind.{kind}"), align="center"))
        if d.reprint:
            self.add(Text(self.m("slip.reprint"), align="center", bold=True))

    def member(self, d: SlipData) -> None:
        self.add(Rule(), Columns(self.m("slip.member"), d.member_name))
        tier = localized(d.tier_name, self.locale)
        if tier:
            self.add(Columns(self.m("slip.tier"), tier))
        nxt = d.next_tier
        if nxt and nxt.get("points_needed") is not None:
            needed = int(nxt["points_needed"])
            threshold = int(nxt.get("threshold") or 0)
            if threshold > 0:
                self.add(Progress(max(0.0, min(1.0, (threshold - needed) / threshold))))
            self.add(Text(self.m("slip.next_tier", points=format_number(self.locale, needed),
                                 tier=localized(nxt.get("name"), self.locale)), align="center"))
        elif tier and nxt is None:
            self.add(Text(self.m("slip.top_tier"), align="center"))

    def points(self, d: SlipData) -> None:
        self.add(Rule())
        label = {"redemption": "slip.redeemed", "return": "slip.returned"}.get(d.kind, "slip.earned")
        shown = _shown(d.earned)
        for cur, pts in shown:
            self.add(Columns(self.m(label), self.amount(cur, pts, signed=d.kind == "sale"), bold=True))
        for item in d.breakdown:
            line = self.breakdown_line(item, {cur for cur, _ in shown})
            if line:
                self.add(line)
        earned = {cur for cur, _ in shown}
        balances = [(c, n) for c, n in _shown(d.balance, keep_zero=True) if n or c in earned]
        for cur, total in balances or _shown(d.balance, keep_zero=True):
            self.add(Columns(self.m("slip.balance"), self.amount(cur, total), bold=True))
            pending = d.pending.get(cur, 0)
            if pending:
                self.add(Columns("  " + self.m("slip.confirmed"), self.amount(cur, total - pending)),
                         Columns("  " + self.m("slip.pending"), self.amount(cur, pending)))

    def breakdown_line(self, item: Mapping[str, Any], currencies: set[str]) -> Columns | None:
        rule = str(item.get("type") or item.get("rule") or "")  # the rule's kind; "rule" may be its id
        if rule in _HIDDEN_RULES or item.get("status", "applied") != "applied":
            return None
        if item.get("currency") and item["currency"] not in currencies:
            return None
        label = localized(item.get("label"), self.locale)
        if not label and has_message(self.locale, f"slip.rule.{rule}"):
            label = self.m(f"slip.rule.{rule}")
        if not label:
            return None
        multiplier = item.get("multiplier")
        if multiplier is not None and rule == "tier_multiplier":  # its points are the running total
            return Columns("  " + label, "×" + _decimal(str(multiplier), self.locale))
        if multiplier is not None:
            label += " ×" + _decimal(str(multiplier), self.locale)
        points = _whole_points(item.get("points"))
        if points is None:
            return None
        return Columns("  " + label, format_number(self.locale, points))

    def rewards(self, d: SlipData) -> None:
        if not d.rewards_available:
            return
        self.add(Rule(), Text(self.m("slip.rewards"), bold=True))
        for r in d.rewards_available:
            price = self.amount(str(r.get("currency") or "points"), int(r.get("points") or 0))
            self.add(Text(self.bullet + self.m("slip.reward", title=localized(r.get("title"), self.locale),
                                         points=price)))

    def vouchers(self, d: SlipData) -> None:
        for v in d.vouchers:
            code = str(v.get("code") or "")
            if not code:
                continue
            self.add(Rule(), Text(self.m("slip.voucher"), align="center", bold=True))
            title = localized(v.get("title"), self.locale)
            if title:
                self.add(Text(title, align="center"))
            if str(v.get("symbology", "CODE128")).upper() == "QR":
                self.add(QRCode(code), Text(code, align="center"))
            else:
                self.add(Barcode(code, "CODE128"))  # the printer prints the code under the bars
            if v.get("valid_until"):
                when = format_datetime(self.locale, str(v["valid_until"]), calendar=self.calendar)
                self.add(Text(self.m("slip.valid_until", date=when), align="center"))

    def offers(self, d: SlipData) -> None:
        for o in d.offers:
            title = localized(o.get("title") or o.get("name"), self.locale)
            text = localized(o.get("text") or o.get("description"), self.locale)
            if not (title or text):
                continue
            self.add(Rule(), Text(self.m("slip.offer"), align="center", bold=True))
            if title:
                self.add(Text(title, align="center", bold=True))
            if text:
                self.add(Text(text, align="center"))

    def footer(self, d: SlipData) -> None:
        if d.member_qr:
            self.add(Rule(), Text(self.m("slip.member_code"), align="center"), QRCode(d.member_qr, size=5))
        self.add(
            Rule(),
            Columns(self.m("slip.transaction"), d.transaction_id),
            Text(self.m("slip.lane", store=d.store_id, lane=d.lane_id), align="center"),
            Text(format_datetime(self.locale, d.occurred_at, calendar=self.calendar), align="center"),
            Feed(1),
            Text(self.m("slip.thanks"), align="center", bold=True),
        )


def _shown(amounts: Mapping[str, int], keep_zero: bool = False) -> list[tuple[str, int]]:
    return [(cur, n) for cur, n in sorted(amounts.items())
            if cur not in _HIDDEN_CURRENCIES and (n or keep_zero)]


def _decimal(text: str, locale: str) -> str:
    if locale in PERSIAN_DIGIT_LOCALES:
        text = text.replace(".", "٫")  # the Persian decimal separator
    return localize_digits(text, locale)


def _whole_points(value: Any) -> int | None:
    """Points of a trace entry: an int, or an exact fraction shown floored."""
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, int):
        return value
    try:
        return int(Fraction(str(value)))  # trunc toward zero, as the ledger never rounds up
    except (ValueError, ZeroDivisionError):
        return None
