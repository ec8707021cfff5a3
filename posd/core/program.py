"""The loyalty program as central publishes it, parsed and validated.

Pure: a dict in, frozen dataclasses out. Rates and multipliers are exact
fractions (never floats), so evaluating the same basket against the same
program version always gives the same points.
"""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction
from typing import Any, Literal

Rounding = Literal["floor", "half_up"]
ROUNDINGS: tuple[str, ...] = ("floor", "half_up")


class ProgramError(ValueError):
    """A program document posd cannot evaluate; the previous program stays in force."""


@dataclass(frozen=True)
class EarnRate:
    spend_minor: int  # this much spend, in minor units of the money currency...
    points: int  # ...earns this many points


@dataclass(frozen=True)
class Tier:
    tier_id: str
    threshold: int
    multiplier: Fraction
    names: dict[str, str]

    def name(self, locale: str) -> str:
        return self.names.get(locale) or self.names.get("en") or self.tier_id


@dataclass(frozen=True)
class Program:
    version: str
    earn_currency: str
    rates: dict[str, EarnRate]  # money currency (ISO 4217) -> rate
    rounding: Rounding
    tiers: tuple[Tier, ...]  # ascending threshold
    tier_currency: str
    raw: dict[str, Any]

    def tier(self, tier_id: str | None) -> Tier | None:
        for t in self.tiers:
            if t.tier_id == tier_id:
                return t
        return None

    def next_tier(self, tier_id: str | None) -> Tier | None:
        current = self.tier(tier_id)
        for t in self.tiers:
            if current is None or t.threshold > current.threshold:
                return t
        return None


def parse_fraction(value: Any, where: str) -> Fraction:
    """"1.5", "3/2", 2 -> Fraction; floats are refused (0.1 is not exact)."""
    if isinstance(value, bool) or isinstance(value, float):
        raise ProgramError(f"{where}: write {value!r} as a string such as \"1.5\"")
    try:
        f = Fraction(str(value))
    except (ValueError, ZeroDivisionError) as exc:
        raise ProgramError(f"{where}: {value!r} is not a number") from exc
    if f < 0:
        raise ProgramError(f"{where}: must not be negative")
    return f


def _int(value: Any, where: str, *, minimum: int = 0) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ProgramError(f"{where}: must be an integer >= {minimum}")
    return value


def parse_program(doc: dict[str, Any]) -> Program:
    if not isinstance(doc, dict):
        raise ProgramError("program must be a JSON object")
    version = doc.get("version")
    if not isinstance(version, str) or not version:
        raise ProgramError("version: required")
    earn = doc.get("earn")
    if not isinstance(earn, dict):
        raise ProgramError("earn: required")
    rounding = earn.get("rounding", "floor")
    if rounding not in ROUNDINGS:
        raise ProgramError(f"earn.rounding: one of {', '.join(ROUNDINGS)}")
    rates: dict[str, EarnRate] = {}
    for money, rate in (earn.get("rates") or {}).items():
        if not isinstance(rate, dict):
            raise ProgramError(f"earn.rates.{money}: must be an object")
        rates[money] = EarnRate(
            spend_minor=_int(rate.get("spend_minor"), f"earn.rates.{money}.spend_minor", minimum=1),
            points=_int(rate.get("points"), f"earn.rates.{money}.points"),
        )
    tiers = []
    for i, t in enumerate(doc.get("tiers") or []):
        if not isinstance(t, dict) or not isinstance(t.get("id"), str):
            raise ProgramError(f"tiers[{i}].id: required")
        tiers.append(
            Tier(
                tier_id=t["id"],
                threshold=_int(t.get("threshold", 0), f"tiers[{i}].threshold"),
                multiplier=parse_fraction(t.get("multiplier", "1"), f"tiers[{i}].multiplier"),
                names=dict(t.get("name") or {}),
            )
        )
    tiers.sort(key=lambda t: t.threshold)
    earn_currency = earn.get("currency", "points")
    return Program(
        version=version,
        earn_currency=earn_currency,
        rates=rates,
        rounding=rounding,
        tiers=tuple(tiers),
        tier_currency=doc.get("tier_currency", earn_currency),
        raw=doc,
    )
