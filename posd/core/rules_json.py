"""Reading the program JSON: small typed readers that name the JSON path.

Every error a central author can make surfaces as a ProgramError whose message
starts with the path of the offending value ("rules[3].multiplier: ..."), so
the fix is obvious from a log line. Floats are refused everywhere: 0.1 is not
exact, and points must not depend on binary rounding.
"""

from __future__ import annotations

import re
import unicodedata
from datetime import datetime, time
from fractions import Fraction
from typing import Any


class ProgramError(ValueError):
    """A program document posd cannot evaluate; the previous program stays in force."""


SHOWN_CHARS = 40  # of a value quoted in an error: a log line, not a copy of the document
MAX_NUMBER_CHARS = 64  # a number written as a string: far past any rate, price or threshold a program needs


def shown(value: Any) -> str:
    """A value as an error quotes it: its repr, cut short when long."""
    text = repr(value)
    return text if len(text) <= SHOWN_CHARS else f"{text[:SHOWN_CHARS - 1]}… ({len(text)} characters)"


def refuse_floats(value: Any, path: str) -> None:
    """Walk the whole document once; a float anywhere is an error naming its path."""
    if isinstance(value, float):
        if value.is_integer() and abs(value) >= 2**63:  # a JSON reader's float for an integer past 64 bits
            raise ProgramError(f"{path}: {shown(value)} is past the largest whole number a program may hold "
                               f"({2**63 - 1}), or a float")
        raise ProgramError(f"{path}: {shown(value)} is a float; write exact numbers as strings such as \"1.5\"")
    if isinstance(value, dict):
        for key, item in value.items():
            refuse_floats(item, f"{path}.{key}" if path else str(key))
    elif isinstance(value, list):
        for i, item in enumerate(value):
            refuse_floats(item, f"{path}[{i}]")


def obj(value: Any, path: str, *, required: tuple[str, ...] = (), optional: tuple[str, ...] = ()) -> dict[str, Any]:
    """An object with exactly the known keys: a typo such as "multipler" must not be ignored silently."""
    if not isinstance(value, dict):
        raise ProgramError(f"{path}: must be an object")
    for key in required:
        if key not in value:
            raise ProgramError(f"{path}.{key}: required")
    known = set(required) | set(optional) | {"description"}
    for key in value:
        if key not in known:
            raise ProgramError(f"{path}.{key}: unknown key; known keys are {', '.join(sorted(known))}")
    return value


def mapping(value: Any, path: str, example: str) -> dict[str, Any]:
    """A map with free keys (money currency -> amount); never empty."""
    if not isinstance(value, dict) or not value:
        raise ProgramError(f"{path}: must be a non-empty object such as {example}")
    return value


def array(value: Any, path: str) -> list[Any]:
    if not isinstance(value, list):
        raise ProgramError(f"{path}: must be an array")
    return value


def text(value: Any, path: str) -> str:
    if not isinstance(value, str) or not value:
        raise ProgramError(f"{path}: must be a non-empty string")
    return value


def money_code(value: Any, path: str) -> str:
    """A money currency as a sale names it: ISO 4217's three capital letters (PLN, EUR, JPY)."""
    code = text(value, path)
    if not (len(code) == 3 and code.isascii() and code.isalpha() and code.isupper()):
        raise ProgramError(f"{path}: {shown(code)} is not an ISO 4217 code (PLN, EUR), as a sale's currency is written")
    return code


def ident(value: Any, path: str, limit: int = 128) -> str:
    """An id lanes put in their events (a reward's): 1-``limit`` characters, no control character,
    as central takes ids in events; a longer one would have every event naming it refused."""
    value = text(value, path)
    if len(value) > limit or any(unicodedata.category(ch) in ("Cc", "Cs") for ch in value):
        raise ProgramError(f"{path}: must be 1-{limit} characters, none of them a control character")
    return value


def choice(value: Any, path: str, options: tuple[str, ...]) -> str:
    if value not in options:
        raise ProgramError(f"{path}: {shown(value)} is not one of {', '.join(options)}")
    return value


def integer(value: Any, path: str, *, minimum: int = 0) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ProgramError(f"{path}: must be an integer >= {minimum}")
    return value


_EXACT = re.compile(r"[0-9]+(\.[0-9]+)?|[0-9]+/[0-9]+")


def fraction(value: Any, path: str, *, minimum: Fraction = Fraction(0)) -> Fraction:
    """"1.5", "3/2" or 2 -> Fraction; JSON floats never reach here (refuse_floats)."""
    if isinstance(value, bool) or not isinstance(value, (int, str)):
        raise ProgramError(f"{path}: write a number such as \"1.5\" or \"3/2\"")
    if isinstance(value, str) and len(value) > MAX_NUMBER_CHARS:  # Python reads no more than 4300 digits anyway
        raise ProgramError(f"{path}: {shown(value)} is too long for a number: at most {MAX_NUMBER_CHARS} characters")
    if isinstance(value, str) and not _EXACT.fullmatch(value):  # Fraction would also take "1e2", " 2", "1_0"
        raise ProgramError(f"{path}: {shown(value)} is not a number written as \"1.5\", \"3/2\" or \"2\"")
    try:
        result = Fraction(value)
    except (ValueError, ZeroDivisionError) as exc:
        raise ProgramError(f"{path}: {shown(value)} is not a number") from exc
    if result < minimum:
        raise ProgramError(f"{path}: must be at least {minimum}")
    return result


def names(value: Any, path: str) -> dict[str, str]:
    """Localised names: {"en": "Gold", "pl": "Złoty", "fa": "طلایی"}."""
    if not isinstance(value, dict) or not value:
        raise ProgramError(f"{path}: must be an object of locale -> name, such as {{\"en\": \"Gold\"}}")
    return {locale: text(name, f"{path}.{locale}") for locale, name in value.items()}


PLURAL_CATEGORIES = ("zero", "one", "two", "few", "many", "other")  # CLDR's


def plural_names(value: Any, path: str) -> dict[str, str | dict[str, str]]:
    """A currency's names: per language a name, or its CLDR plural forms
    ({"one": "punkt", "few": "punkty", "many": "punktów", "other": "punktu"}) so a figure reads right."""
    if not isinstance(value, dict) or not value:
        raise ProgramError(f"{path}: must be an object of locale -> name, such as {{\"en\": \"points\"}}")
    out: dict[str, str | dict[str, str]] = {}
    for locale, name in value.items():
        if not isinstance(name, dict):
            out[locale] = text(name, f"{path}.{locale}")
            continue
        unknown = sorted(set(name) - set(PLURAL_CATEGORIES))
        if unknown or not name:
            raise ProgramError(f"{path}.{locale}: plural forms are {', '.join(PLURAL_CATEGORIES)}"
                               + (f", not {', '.join(unknown)}" if unknown else ""))
        out[locale] = {form: text(word, f"{path}.{locale}.{form}") for form, word in name.items()}
    return out


def strings(value: Any, path: str) -> frozenset[str]:
    return frozenset(text(item, f"{path}[{i}]") for i, item in enumerate(array(value, path)))


def listed(raw: dict[str, Any], key: str, path: str) -> frozenset[str]:
    """The lines a rule or discount names by ``key`` (skus, categories); empty when the key is left out.
    An empty list names no line: refused, since leaving both lists out means every line."""
    if key not in raw:
        return frozenset()
    found = strings(raw[key], f"{path}.{key}")
    if not found:
        raise ProgramError(f"{path}.{key}: an empty list names no line; leave {key} out (with neither list, "
                           "every line)")
    return found


def clock(value: Any, path: str) -> time | None:
    """"HH:MM" in store time; "24:00" (end of day) reads as None."""
    raw = text(value, path)
    if raw == "24:00":
        return None
    try:
        if len(raw) != 5:
            raise ValueError(raw)
        return time.fromisoformat(raw)
    except ValueError as exc:
        raise ProgramError(f"{path}: {shown(raw)} is not a time such as \"10:00\"") from exc


def instant(value: Any, path: str) -> datetime:
    """An ISO 8601 instant with its offset ("2026-12-31T23:59:59Z"); a wall-clock time is ambiguous."""
    raw = text(value, path)
    try:
        moment = datetime.fromisoformat(raw.replace("Z", "+00:00"))
    except ValueError as exc:
        raise ProgramError(f"{path}: {shown(raw)} is not an instant such as \"2026-12-31T23:59:59Z\"") from exc
    if moment.utcoffset() is None:
        raise ProgramError(f"{path}: {shown(raw)} needs an offset (Z for UTC)")
    return moment


def unique_ids(items: list[Any], attr: str, path: str, key: str = "id") -> None:
    seen: set[Any] = set()
    for i, item in enumerate(items):
        ident = getattr(item, attr)
        if ident in seen:
            raise ProgramError(f"{path}[{i}].{key}: duplicate {key} {shown(ident)}")
        seen.add(ident)
