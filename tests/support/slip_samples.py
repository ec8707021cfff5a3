"""Slip data shared by the slip tests and the slip benchmark: every section filled."""

from __future__ import annotations

from typing import Any

from posd.core.slip import SlipData

TITLES = {
    "coffee": {"en": "Free coffee", "pl": "Kawa gratis", "fa": "قهوهٔ رایگان"},
    "ten": {"en": "10% off your next visit", "pl": "Rabat 10% na kolejne zakupy", "fa": "۱۰٪ تخفیف خرید بعدی"},
    "offer": {"en": "Double points on Fridays", "pl": "Podwójne punkty w piątki",
              "fa": "امتیاز دوبرابر در روزهای جمعه"},
}


def sample(kind: str = "sale", name: str = "Łukasz Żółkiewski", **changes: Any) -> SlipData:
    earned = {"sale": 194, "redemption": -500, "return": -97}[kind]
    data: dict[str, Any] = dict(
        slip_id=f"T-{kind}-1", store_id="S001", lane_id="L01", transaction_id=f"T-{kind}-1",
        occurred_at="2026-11-24 10:15", member_name=name,
        tier_name={"en": "Silver", "pl": "Srebrny", "fa": "نقره‌ای"}, earned={"points": earned},
        balance={"points": 2034}, pending={"points": 194 if kind == "sale" else 0},
        next_tier={"name": {"en": "Gold", "pl": "Złoty", "fa": "طلایی"}, "points_needed": 3550,
                   "threshold": 5000},
        kind=kind,
        # the rules engine's trace, as the lane stores it
        breakdown=[{"rule": "base-points", "type": "base_rate", "currency": "points", "status": "applied",
                    "points": "129.99"},
                   {"type": "tier_bonus", "currency": "points", "status": "applied", "multiplier": "1.5",
                    "base": "129.99", "points": "64.995"},
                   {"type": "rounding", "currency": "points", "status": "applied", "points": 194}]
        if kind == "sale" else [],
        rewards_available=[{"title": TITLES["coffee"], "points": 500, "currency": "points"}],
        vouchers=[],
        offers=[{"title": TITLES["offer"]}] if kind == "sale" else [],
    )
    if kind == "sale":
        data["vouchers"] = [{"code": "V7K3M9Q2X", "title": TITLES["ten"], "symbology": "CODE128",
                             "valid_until": "2026-12-31"}]
    if kind == "redemption":
        data["vouchers"] = [{"code": "QV-55XR-2231", "title": TITLES["coffee"], "symbology": "QR",
                             "valid_until": "2026-12-31"},
                            {"code": "C128-0042", "title": TITLES["coffee"], "symbology": "CODE128"}]
    data.update(changes)
    return SlipData(**data)
