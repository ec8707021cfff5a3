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
    format_decimal,
    format_number,
    has_message,
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
      only above zero: points spent here and not sent yet only lower the
      balance; a "confirmed" figure above it would confuse). Currencies
      earned 0 are left out, and so are tier points (a currency of kind
      ``qualifying``, which the lane leaves out; a stored slip's currency coded
      ``qualifying`` too): they show as the progress to the next tier.
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
      is printed in it instead of the lane's. Multilingual titles fall back to
      the lane's language, then English, then any.
    - ``redemption_id``: a redemption slip's id as the POS knows it (the
      footer prints it, and ``transaction_id`` when the redemption belonged
      to a sale; never the lane's internal slip id).
    - ``calendar``: ``"jalali"`` or ``"gregorian"`` for the date; empty means
      Jalali for Persian slips, Gregorian otherwise.
    - ``currencies``: ``{code: Localized}``, the program's names of its currencies
      (``currencies[].name``), in the program's order. An amount prints with the name
      in the slip's language, else the catalog's word, else the name in the lane's
      language, en or any, else the code. Each earned currency prints with its own
      breakdown lines under it, in this order (then the rest by code).
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
    redemption_id: str | None = None
    currencies: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        # shallow on purpose: asdict() deep-copies every trace entry, and this runs in each sale's write
        return {f.name: getattr(self, f.name) for f in fields(self)}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> SlipData:
        # Unknown keys are ignored: a job stored by a newer posd still prints.
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})


def localized(value: Any, locale: str, fallback: str | None = None) -> str:
    """A plain string as is; a ``{locale: text}`` mapping in ``locale``, then ``fallback`` (the lane's
    language), en, or any."""
    if value is None:
        return ""
    if isinstance(value, Mapping):
        for key in (locale, fallback, "en"):
            if value.get(key):
                return str(value[key])
        return next((str(v) for v in value.values() if v), "")
    return str(value)


def slip_locale(data: SlipData, lane_locale: str) -> str:
    return data.locale if data.locale in CATALOGS else lane_locale


def build_slip(data: SlipData, locale: str) -> SlipDocument:
    """The slip as a document, in the member's language when known, else ``locale``."""
    loc = slip_locale(data, locale)
    b = _Builder(loc, data.calendar, lane_locale=locale)
    b.currencies = data.currencies if isinstance(data.currencies, Mapping) else {}
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
    def __init__(self, locale: str, calendar: str = "", lane_locale: str | None = None) -> None:
        self.locale = locale
        self.lane_locale = lane_locale
        self.blocks: list[Block] = []
        if calendar not in ("jalali", "gregorian"):
            calendar = "jalali" if locale in PERSIAN_DIGIT_LOCALES else "gregorian"
        self.calendar = calendar
        # A bullet every Polish code page has; raster (RTL) slips can use the real one.
        self.bullet = "• " if locale in RTL_LOCALES else "- "
        self.currencies: Mapping[str, Any] = {}

    def m(self, key: str, **params: object) -> str:
        return message(self.locale, key, **params)

    def add(self, *blocks: Block) -> None:
        self.blocks.extend(blocks)

    def amount(self, currency: str, n: int, signed: bool = False) -> str:
        return format_amount(self.locale, currency, n, signed=signed, names=self.currencies.get(currency),
                             fallback=self.lane_locale)

    def text(self, value: Any) -> str:
        """Text central gave in several languages: the slip's, else the lane's, en, any."""
        return localized(value, self.locale, self.lane_locale)

    # -- sections ---------------------------------------------------------
    def header(self, d: SlipData) -> None:
        self.add(Text(d.store_name or self.m("slip.title"), align="center", bold=True, double=True))
        kind = d.kind if d.kind in ("sale", "redemption", "return") else "sale"
        self.add(Text(self.m(f"slip.kind.{kind}"), align="center"))
        if d.reprint:
            self.add(Text(self.m("slip.reprint"), align="center", bold=True))

    def member(self, d: SlipData) -> None:
        self.add(Rule(), Columns(self.m("slip.member"), d.member_name))
        tier = self.text(d.tier_name)
        if tier:
            self.add(Columns(self.m("slip.tier"), tier))
        nxt = d.next_tier
        if nxt and nxt.get("points_needed") is not None:
            needed = int(nxt["points_needed"])
            threshold = int(nxt.get("threshold") or 0)
            if threshold > 0:
                self.add(Progress(max(0.0, min(1.0, (threshold - needed) / threshold))))
            if needed > 0:
                key = "slip.next_tier.one" if needed == 1 and "slip.next_tier.one" in CATALOGS.get(self.locale, {}) \
                    else "slip.next_tier"  # only en inflects; pl's "pkt" and fa need no other form
                self.add(Text(self.m(key, points=format_number(self.locale, needed),
                                     tier=self.text(nxt.get("name"))), align="center"))
            else:  # the sale's points reached it; central moves the member up when the sale syncs
                self.add(Text(self.m("slip.tier_reached", tier=self.text(nxt.get("name"))), align="center"))
        elif tier and nxt is None:
            self.add(Text(self.m("slip.top_tier"), align="center"))

    def points(self, d: SlipData) -> None:
        """Per earned currency: what the slip's kind did to it, then its own breakdown lines,
        which add up to it; then the balances."""
        self.add(Rule())
        label = {"redemption": "slip.redeemed", "return": "slip.returned"}.get(d.kind, "slip.earned")
        shown = self.ordered(_shown(d.earned))
        if not shown:  # nothing earned (under the minimum basket): the slip says 0, not nothing at all
            shown = (self.ordered(_shown(d.earned, keep_zero=True)) or [(c, 0) for c in self.currencies])[:1]
        earned = dict(shown)
        main = shown[0][0] if shown else ""
        # a trace entry names its currency; one without (a label from elsewhere) prints under the main
        # one, as it is, outside the sum that is shared out
        printed = [(item, line, item.get("currency") or main) for item in d.breakdown
                   if (line := self.breakdown_label(item, set(earned))) is not None]
        summed = [item for item, _, _ in printed if item.get("type") != "tier_multiplier"]
        whole = dict(zip(map(id, summed), breakdown_points(summed, earned)))
        for cur, pts in shown:
            self.add(Columns(self.m(label), self.amount(cur, pts, signed=d.kind == "sale"), bold=True))
            for item, line, under in printed:
                if under != cur:
                    continue
                if item.get("type") == "tier_multiplier":  # a stored job's running total: its factor, not points
                    self.add(Columns("  " + line.rsplit(" ×", 1)[0],
                                     "×" + format_decimal(self.locale, str(item["multiplier"]))))
                    continue
                self.add(Columns("  " + line, format_number(self.locale, whole[id(item)])))
        balances = [(c, n) for c, n in self.ordered(_shown(d.balance, keep_zero=True)) if n or c in earned]
        for cur, total in balances or self.ordered(_shown(d.balance, keep_zero=True)) or [(c, 0) for c in earned]:
            self.add(Columns(self.m("slip.balance"), self.amount(cur, total), bold=True))
            pending = d.pending.get(cur, 0)
            if pending > 0:  # points not confirmed yet; a spend central has not heard of only lowers the balance
                self.add(Columns("  " + self.m("slip.confirmed"), self.amount(cur, total - pending)),
                         Columns("  " + self.m("slip.pending"), self.amount(cur, pending)))

    def ordered(self, amounts: list[tuple[str, int]]) -> list[tuple[str, int]]:
        """The program's order of its currencies (its main one first), then the rest by code."""
        order = {code: i for i, code in enumerate(self.currencies)}
        return sorted(amounts, key=lambda pair: (order.get(pair[0], len(order)), pair[0]))

    def breakdown_label(self, item: Mapping[str, Any], currencies: set[str]) -> str | None:
        """The label of a trace entry the slip prints (with its multiplier), None for one it does not."""
        rule = str(item.get("type") or item.get("rule") or "")  # the rule's kind; "rule" may be its id
        if rule in _HIDDEN_RULES or item.get("status", "applied") != "applied":
            return None
        if item.get("currency") and item["currency"] not in currencies:
            return None
        label = self.text(item.get("label"))
        if not label and has_message(self.locale, f"slip.rule.{rule}"):
            label = self.m(f"slip.rule.{rule}")
        if not label or (_exact_points(item) is None and rule != "tier_multiplier"):
            return None
        multiplier = item.get("multiplier")
        if multiplier is not None:
            label += " ×" + format_decimal(self.locale, str(multiplier))
        return label

    def rewards(self, d: SlipData) -> None:
        if not d.rewards_available:
            return
        self.add(Rule(), Text(self.m("slip.rewards"), bold=True))
        for r in d.rewards_available:
            price = self.amount(str(r.get("currency") or "points"), int(r.get("points") or 0))
            self.add(Text(self.bullet + self.m("slip.reward", title=self.text(r.get("title")), points=price)))

    def vouchers(self, d: SlipData) -> None:
        for v in d.vouchers:
            code = str(v.get("code") or "")
            if not code:
                continue
            self.add(Rule(), Text(self.m("slip.voucher"), align="center", bold=True))
            title = self.text(v.get("title"))
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
            title = self.text(o.get("title") or o.get("name"))
            text = self.text(o.get("text") or o.get("description"))
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
        self.add(Rule())
        redemption_id = d.redemption_id
        transaction_id = d.transaction_id
        if d.kind == "redemption" and not redemption_id and transaction_id.endswith("~r"):
            # a job stored before redemption slips named their redemption: never print the lane's slip id
            redemption_id, transaction_id = transaction_id[:-2], ""
        if redemption_id:
            self.add(Columns(self.m("slip.redemption"), redemption_id))
        if transaction_id:
            self.add(Columns(self.m("slip.transaction"), transaction_id))
        self.add(
            Text(self.m("slip.lane", store=d.store_id, lane=d.lane_id), align="center"),
            Text(format_datetime(self.locale, d.occurred_at, calendar=self.calendar), align="center"),
            Feed(1),
            Text(self.m("slip.thanks"), align="center", bold=True),
        )


def _shown(amounts: Mapping[str, int], keep_zero: bool = False) -> list[tuple[str, int]]:
    return [(cur, n) for cur, n in sorted(amounts.items())
            if cur not in _HIDDEN_CURRENCIES and (n or keep_zero)]


def _exact_points(item: Mapping[str, Any]) -> Fraction | None:
    """What a trace entry adds, exactly: its points (an int, or an exact decimal or fraction as a string);
    a transaction cap, what it took off (cap - before)."""
    value = item.get("points")
    if isinstance(value, bool) or value is None:
        return None
    try:
        points = Fraction(str(value))
        if item.get("type") == "transaction_cap" and item.get("before") is not None:
            return points - Fraction(str(item["before"]))
        return points
    except (ValueError, ZeroDivisionError):
        return None


def breakdown_points(items: list[Mapping[str, Any]], earned: Mapping[str, int]) -> list[int]:
    """Whole points per printed trace entry that add up, per currency, to what was earned.

    Each entry is exact (129.99 base + 64.995 tier bonus); the sale earned their sum rounded once
    (194). Flooring each alone would print 129 + 64 under a total of 194, so the total is shared
    out by largest remainder: 129 + 65. A cap's line is what it took off, so the lines still add
    up. Entries of a currency whose total is unknown are floored as they are.
    """
    exact = [_exact_points(item) or Fraction(0) for item in items]
    out = [value.numerator // value.denominator for value in exact]
    by_currency: dict[str, list[int]] = {}
    for i, item in enumerate(items):
        by_currency.setdefault(str(item.get("currency") or ""), []).append(i)
    for currency, positions in by_currency.items():
        if currency not in earned:
            continue
        left = earned[currency] - sum(out[i] for i in positions)
        ranked = sorted(positions, key=lambda i: (-(exact[i] - out[i]), i))  # largest remainder first
        if left < 0:
            ranked = [i for i in reversed(ranked) if out[i] > 0] or ranked[::-1]
        step = 1 if left > 0 else -1
        for n in range(abs(left)):
            out[ranked[n % len(ranked)]] += step
    return out
