"""Message catalogs and number/date formatting for slips and the status page.

pl, fa and en (the fallback). Pure: catalogs are data, formatting is
arithmetic; no locale module (its output depends on the machine's locales).
"""

from __future__ import annotations

import re
from datetime import UTC, date, datetime
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from posd.core.messages_ops import OPS

CATALOGS: dict[str, dict[str, str]] = {
    "en": {
        "slip.title": "Loyalty",
        "slip.kind.sale": "Purchase",
        "slip.kind.redemption": "Points redeemed",
        "slip.kind.return": "Return",
        "slip.member": "Member",
        "slip.tier": "Tier",
        "slip.next_tier": "{points} points to {tier}",
        "slip.next_tier.one": "{points} point to {tier}",
        "slip.top_tier": "You are in the top tier",
        "slip.tier_reached": "{tier} tier reached",
        "slip.earned": "Points earned",
        "slip.redeemed": "Points used",
        "slip.returned": "Points reversed",
        "slip.rule.base_rate": "Base points",
        "slip.rule.tier_multiplier": "Tier bonus",
        "slip.rule.tier_bonus": "Tier bonus",
        "slip.rule.multiplier": "Promotion",
        "slip.rule.per_unit": "Product bonus",
        "slip.rule.threshold_bonus": "Basket bonus",
        "slip.rule.birthday": "Birthday bonus",
        "slip.rule.transaction_cap": "Transaction cap",
        "slip.balance": "Balance",
        "slip.confirmed": "confirmed",
        "slip.pending": "of which pending",
        "slip.rewards": "You can redeem now",
        "slip.reward": "{title} for {points}",
        "slip.voucher": "Your voucher",
        "voucher.points_title": "{value} {money} voucher",
        "slip.valid_until": "Valid until {date}",
        "slip.offer": "Just for you",
        "slip.member_code": "Your member code",
        "slip.transaction": "Transaction",
        "slip.redemption": "Redemption",
        "slip.lane": "Store {store} / lane {lane}",
        "slip.thanks": "Thank you!",
        "slip.reprint": "COPY",
        "currency.points": "points",
        "currency.points.one": "point",
        "currency.stamps": "stamps",
        "currency.stamps.one": "stamp",
    },
    "pl": {
        "slip.title": "Program lojalnościowy",
        "slip.kind.sale": "Zakup",
        "slip.kind.redemption": "Wymiana punktów",
        "slip.kind.return": "Zwrot",
        "slip.member": "Klient",
        "slip.tier": "Poziom",
        "slip.next_tier": "{points} pkt do poziomu {tier}",
        "slip.top_tier": "Masz najwyższy poziom",
        "slip.tier_reached": "Osiągnięto poziom {tier}",
        "slip.earned": "Zdobyte punkty",
        "slip.redeemed": "Wykorzystane punkty",
        "slip.returned": "Cofnięte punkty",
        "slip.rule.base_rate": "Punkty podstawowe",
        "slip.rule.tier_multiplier": "Premia za poziom",
        "slip.rule.tier_bonus": "Premia za poziom",
        "slip.rule.multiplier": "Promocja",
        "slip.rule.per_unit": "Premia za produkt",
        "slip.rule.threshold_bonus": "Premia za koszyk",
        "slip.rule.birthday": "Prezent urodzinowy",
        "slip.rule.transaction_cap": "Limit transakcji",
        "slip.balance": "Saldo",
        "slip.confirmed": "potwierdzone",
        "slip.pending": "w tym oczekujące",
        "slip.rewards": "Możesz teraz wymienić",
        "slip.reward": "{title} za {points}",
        "slip.voucher": "Twój kupon",
        "voucher.points_title": "Bon {value} {money}",
        "slip.valid_until": "Ważny do {date}",
        "slip.offer": "Specjalnie dla Ciebie",
        "slip.member_code": "Twój kod klienta",
        "slip.transaction": "Transakcja",
        "slip.redemption": "Wymiana",
        "slip.lane": "Sklep {store} / kasa {lane}",
        "slip.thanks": "Dziękujemy za zakupy!",
        "slip.reprint": "KOPIA",
        "currency.points": "pkt",
        "currency.stamps": "naklejek",
    },
    "fa": {
        "slip.title": "باشگاه مشتریان",
        "slip.kind.sale": "خرید",
        "slip.kind.redemption": "استفاده از امتیاز",
        "slip.kind.return": "مرجوعی",
        "slip.member": "عضو",
        "slip.tier": "سطح",
        "slip.next_tier": "{points} امتیاز تا سطح {tier}",
        "slip.top_tier": "شما در بالاترین سطح هستید",
        "slip.tier_reached": "سطح {tier} به دست آمد",
        "slip.earned": "امتیاز کسب‌شده",
        "slip.redeemed": "امتیاز استفاده‌شده",
        "slip.returned": "امتیاز کسرشده",
        "slip.rule.base_rate": "امتیاز پایه",
        "slip.rule.tier_multiplier": "پاداش سطح",
        "slip.rule.tier_bonus": "پاداش سطح",
        "slip.rule.multiplier": "طرح تشویقی",
        "slip.rule.per_unit": "امتیاز ویژهٔ کالا",
        "slip.rule.threshold_bonus": "پاداش سبد خرید",
        "slip.rule.birthday": "هدیهٔ تولد",
        "slip.rule.transaction_cap": "سقف تراکنش",
        "slip.balance": "موجودی",
        "slip.confirmed": "تأییدشده",
        "slip.pending": "در انتظار",
        "slip.rewards": "همین حالا می‌توانید بگیرید",
        "slip.reward": "{title} با {points}",
        "slip.voucher": "کوپن شما",
        "voucher.points_title": "کوپن {value} {money}",
        "slip.valid_until": "معتبر تا {date}",
        "slip.offer": "پیشنهاد ویژهٔ شما",
        "slip.member_code": "کد عضویت شما",
        "slip.transaction": "تراکنش",
        "slip.redemption": "استفاده از امتیاز",
        "slip.lane": "فروشگاه {store} / صندوق {lane}",
        "slip.thanks": "از خرید شما سپاسگزاریم!",
        "slip.reprint": "رونوشت",
        "currency.points": "امتیاز",
        "currency.stamps": "مهر",
    },
}

RTL_LOCALES = frozenset({"fa", "ar", "he"})
# Locales whose slips use Persian digits and may use the Jalali calendar.
PERSIAN_DIGIT_LOCALES = frozenset({"fa"})

_PERSIAN_DIGITS = str.maketrans("0123456789", "۰۱۲۳۴۵۶۷۸۹")
_GROUP_SEP = {"en": ",", "pl": "\u00a0", "fa": "\u066c"}  # pl: a no-break space; fa: ARABIC THOUSANDS SEPARATOR
_DECIMAL_SIGN = {"pl": ",", "fa": "\u066b"}  # fa: ARABIC DECIMAL SEPARATOR (CLDR)
# CLDR's Persian signs: a left-to-right mark keeps the sign before the digits
# in right-to-left text, where bidi would otherwise move it behind them.
_MINUS = {"fa": "\u200e\u2212"}
_PLUS = {"fa": "\u200e+"}
_DATE_RE = re.compile(r"^(\d{4})-(\d{2})-(\d{2})(?:[ T](\d{2}):(\d{2}))?")


def message(locale: str, key: str, **params: object) -> str:
    template = CATALOGS.get(locale, {}).get(key) or CATALOGS["en"].get(key) or key
    return template.format(**params) if params else template


def has_message(locale: str, key: str) -> bool:
    return key in CATALOGS.get(locale, {}) or key in CATALOGS["en"]


def localize_digits(text: str, locale: str) -> str:
    """ASCII digits as the locale writes them (Persian digits for fa)."""
    return text.translate(_PERSIAN_DIGITS) if locale in PERSIAN_DIGIT_LOCALES else text


def format_number(locale: str, n: int) -> str:
    """Grouped thousands: 12,500 (en), 12 500 (pl, from five digits as Polish
    typesetting does), ۱۲٬۵۰۰ (fa)."""
    sign, digits = (_MINUS.get(locale, "-") if n < 0 else ""), str(abs(n))
    if len(digits) > 4 or (len(digits) == 4 and locale != "pl"):
        sep = _GROUP_SEP.get(locale, ",")
        groups = []
        while digits:
            groups.insert(0, digits[-3:])
            digits = digits[:-3]
        digits = sep.join(groups)
    return localize_digits(sign + digits, locale)


def currency_name(locale: str, currency: str, n: int = 0, names: Any = None,
                  fallback: str | None = None) -> str:
    """What a currency is called in ``locale``: the program's own name for it (``names``, a
    ``{locale: name}`` mapping or one string) in that language; else the catalog's word
    (``currency.points``: pkt, امتیاز; en inflects one point); else the program's name in
    ``fallback`` (the lane's language), en or any; else the catalog's English; else the code."""
    if isinstance(names, str) and names:
        return names
    names = names if isinstance(names, dict) else {}
    if names.get(locale):
        return plural_form(names[locale], locale, n)
    key = f"currency.{currency}"
    own = CATALOGS.get(locale, {})
    if abs(n) == 1 and key + ".one" in own:
        return own[key + ".one"]  # only en inflects; pl and fa use forms that need none
    if key in own:
        return own[key]
    for other in (fallback, "en"):
        if other and names.get(other):
            return plural_form(names[other], other, n)
    if names:
        first, name = next(iter(names.items()))
        return plural_form(name, first, n)
    return message(locale, key) if has_message(locale, key) else currency


def plural_category(locale: str, n: int) -> str:
    """CLDR's plural category of a whole number in the languages posd speaks (pl: 1 punkt, 2-4
    punkty but 12-14 punktów, 5 punktów; en: 1 point, 2 points; fa: no inflection after a figure)."""
    n = abs(n)
    if locale == "pl":
        if n == 1:
            return "one"
        return "few" if n % 10 in (2, 3, 4) and n % 100 not in (12, 13, 14) else "many"
    if locale == "fa":
        return "one" if n in (0, 1) else "other"
    return "one" if n == 1 else "other"


def plural_form(name: Any, locale: str, n: int | None = None) -> str:
    """A name as given, or the form of its plural forms figure ``n`` takes (else other, many, any);
    without a figure (a balance's title), the other form."""
    if not isinstance(name, dict):
        return str(name)
    for form in (plural_category(locale, n) if n is not None else "other", "other", "many"):
        if name.get(form):
            return str(name[form])
    return str(next(iter(name.values())))


def format_decimal(locale: str, value: float | str) -> str:
    """A decimal number, or its exact ASCII text already rounded ("1.25"), with the locale's decimal
    sign and digits: 1.25 (en), 1,25 (pl), ۱٫۲۵ (fa)."""
    text = value if isinstance(value, str) else f"{value:g}"
    sign = _DECIMAL_SIGN.get(locale)
    return localize_digits(text.replace(".", sign) if sign else text, locale)


def format_amount(locale: str, currency: str, n: int, *, signed: bool = False, names: Any = None,
                  fallback: str | None = None) -> str:
    """``n`` points (or stamps, ...) with the currency's name (``currency_name``)."""
    name = currency_name(locale, currency, n, names, fallback)
    number = format_number(locale, n)
    if signed and n > 0:
        number = _PLUS.get(locale, "+") + number
    return f"{number} {name}"


def gregorian_to_jalali(year: int, month: int, day: int) -> tuple[int, int, int]:
    """The Solar Hijri (Jalali) date of a Gregorian date (the arithmetic
    33-year-cycle algorithm; exact for 1800-2200, the years a slip sees)."""
    g_d_m = (0, 31, 59, 90, 120, 151, 181, 212, 243, 273, 304, 334)
    gy2 = year + 1 if month > 2 else year
    days = (355666 + 365 * year + (gy2 + 3) // 4 - (gy2 + 99) // 100 + (gy2 + 399) // 400
            + day + g_d_m[month - 1])
    jy = -1595 + 33 * (days // 12053)
    days %= 12053
    jy += 4 * (days // 1461)
    days %= 1461
    if days > 365:
        jy += (days - 1) // 365
        days = (days - 1) % 365
    if days < 186:
        return jy, 1 + days // 31, 1 + days % 31
    return jy, 7 + (days - 186) // 30, 1 + (days - 186) % 30


def format_datetime(locale: str, text: str, *, calendar: str = "gregorian") -> str:
    """A store-local ``YYYY-MM-DD[ HH:MM]`` as the locale writes it:
    2026-11-24 10:15 (en), 24.11.2026 10:15 (pl), ۱۴۰۵/۰۹/۰۳ ۱۰:۱۵ (fa, Jalali).
    Anything else is returned with its digits localized."""
    m = _DATE_RE.match(text)
    if not m:
        return localize_digits(text, locale)
    y, mo, d = int(m.group(1)), int(m.group(2)), int(m.group(3))
    try:
        date(y, mo, d)
    except ValueError:
        return localize_digits(text, locale)
    clock = f" {m.group(4)}:{m.group(5)}" if m.group(4) else ""
    if calendar == "jalali":
        jy, jm, jd = gregorian_to_jalali(y, mo, d)
        out = f"{jy:04d}/{jm:02d}/{jd:02d}{clock}"
    elif locale == "pl":
        out = f"{d:02d}.{mo:02d}.{y:04d}{clock}"
    else:
        out = f"{y:04d}-{mo:02d}-{d:02d}{clock}"
    return localize_digits(out, locale)


def calendar_of(locale: str) -> str:
    return "jalali" if locale in PERSIAN_DIGIT_LOCALES else "gregorian"


def format_local_time(locale: str, when: str | None, timezone: str = "UTC") -> str | None:
    """A UTC ISO time as the lane's clock shows it, in the locale's calendar and digits:
    24.11.2026 10:15 (pl, Europe/Warsaw), ۱۴۰۵/۰۹/۰۳ ۱۲:۴۵ (fa, Asia/Tehran). None for None."""
    if not when:
        return None
    try:
        moment = datetime.fromisoformat(when.replace("Z", "+00:00"))
    except ValueError:
        return localize_digits(when, locale)
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    try:
        zone = ZoneInfo(timezone)
    except (ZoneInfoNotFoundError, ValueError):
        zone = ZoneInfo("UTC")
    local = moment.astimezone(zone).strftime("%Y-%m-%d %H:%M")
    return format_datetime(locale, local, calendar=calendar_of(locale))


def format_duration(locale: str, seconds: float | None) -> str | None:
    """42 s, 5 min, 3 h, 2 d: the largest whole unit, in the locale's words and digits (a locale's
    word for one of a unit, when its language has one: 1 dzień, 2 dni)."""
    if seconds is None:
        return None
    s = max(0, int(seconds))
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60)):
        if s >= size:
            key = f"unit.{unit}_one" if s // size == 1 and has_message(locale, f"unit.{unit}_one") else f"unit.{unit}"
            return message(locale, key, n=format_number(locale, s // size))
    return message(locale, "unit.s", n=format_number(locale, s))


def format_size(locale: str, n_bytes: float | None) -> str | None:
    """1.5 GB, 230 MB, 12 KB (decimal point as the locale writes it)."""
    if n_bytes is None:
        return None
    value, unit = float(n_bytes), "B"
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if value < 1024 or unit == "TB":
            break
        value /= 1024
    text = f"{value:.1f}" if value < 10 and unit != "B" else f"{value:.0f}"
    return f"{format_decimal(locale, text)} {unit}"


def describe_issue(locale: str, issue: dict[str, Any]) -> str:
    """A health issue (posd.health) in the lane's language: its device, kind and reason translated too."""
    values = dict(issue.get("values") or {})
    reason = issue.get("reason")
    params = {
        "subject": issue.get("subject") or "",
        "reason": message(locale, f"reason.{reason}") if reason and has_message(locale, f"reason.{reason}")
        else (reason or ""),
        "count": format_number(locale, int(values.get("count") or 0)),
        "age": format_duration(locale, values.get("age_s")) or "",
        "free": format_size(locale, (values.get("free_mb") or 0) * 2**20) or "",
        "min": format_size(locale, (values.get("min_free_mb") or 0) * 2**20) or "",
        "version": str(values.get("version") or ""),
        "currency": str(values.get("currency") or ""),
        "earned": str(values.get("earned") or ""),
        "detail": issue.get("detail") or "",
    }
    key = f"issue.{issue.get('code')}"
    if issue.get("code") == "cache_stale" and values.get("age_s") is None:  # health says which, in English too
        key = "issue.cache_never"
    if not has_message(locale, key):
        return str(issue.get("code"))
    return message(locale, key, **params)


# What store IT reads (the status page, posd doctor): posd/core/messages_ops.py.
for _locale, _entries in OPS.items():
    CATALOGS.setdefault(_locale, {}).update(_entries)
