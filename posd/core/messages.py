"""Message catalogs for slips and the status page: pl, fa, en (the fallback)."""

from __future__ import annotations

CATALOGS: dict[str, dict[str, str]] = {
    "en": {
        "slip.title": "Loyalty",
        "slip.member": "Member",
        "slip.tier": "Tier",
        "slip.earned": "Points earned",
        "slip.balance": "Balance",
        "slip.pending": "of which pending",
        "slip.next_tier": "{points} points to {tier}",
        "slip.transaction": "Transaction",
        "slip.lane": "Store {store} / lane {lane}",
        "slip.thanks": "Thank you!",
        "slip.reprint": "COPY",
        "currency.points": "points",
    },
    "pl": {
        "slip.title": "Program lojalnościowy",
        "slip.member": "Członek",
        "slip.tier": "Poziom",
        "slip.earned": "Zdobyte punkty",
        "slip.balance": "Saldo",
        "slip.pending": "w tym oczekujące",
        "slip.next_tier": "{points} pkt do poziomu {tier}",
        "slip.transaction": "Transakcja",
        "slip.lane": "Sklep {store} / kasa {lane}",
        "slip.thanks": "Dziękujemy za zakupy!",
        "slip.reprint": "KOPIA",
        "currency.points": "pkt",
    },
    "fa": {
        "slip.title": "باشگاه مشتریان",
        "slip.member": "عضو",
        "slip.tier": "سطح",
        "slip.earned": "امتیاز کسب‌شده",
        "slip.balance": "موجودی",
        "slip.pending": "در انتظار",
        "slip.next_tier": "{points} امتیاز تا {tier}",
        "slip.transaction": "تراکنش",
        "slip.lane": "فروشگاه {store} / صندوق {lane}",
        "slip.thanks": "از خرید شما سپاسگزاریم!",
        "slip.reprint": "رونوشت",
        "currency.points": "امتیاز",
    },
}

RTL_LOCALES = frozenset({"fa", "ar", "he"})


def message(locale: str, key: str, **params: object) -> str:
    template = CATALOGS.get(locale, {}).get(key) or CATALOGS["en"].get(key) or key
    return template.format(**params) if params else template
