"""The one reading of a line's quantity: sales, returns and quotes all parse it here.

A quantity is a JSON number (``2``, ``0.25``) or a string of ASCII digits with
at most one decimal point (``"2"``, ``"0.250"``), more than 0, at most 100,000,
with at most 3 decimals (grams of a kilogram). Nothing else: no spaces, no
sign, no exponent, no digit separators, no fullwidth or Persian digits.
A till sends numbers; a quantity that needs reading generously is a POS bug
that would otherwise earn (or take back) points on a guess. Pure.
"""

from __future__ import annotations

import math
import re
from decimal import Decimal, InvalidOperation
from typing import Any

MAX_QUANTITY = Decimal(100_000)
MAX_DECIMALS = 3

_TEXT = re.compile(r"[0-9]{1,6}(?:\.[0-9]{1,3})?")
_RULE = ("a number such as 2 or 0.25, or a string such as \"0.250\": ASCII digits, at most 3 decimals, "
         "more than 0 and at most 100000")


class QuantityError(ValueError):
    """A quantity posd does not read; the message says what it takes."""


def parse_quantity(value: Any) -> Decimal:
    """The quantity as an exact Decimal, or QuantityError."""
    if isinstance(value, bool):
        raise QuantityError(f"quantity must be {_RULE}")
    if isinstance(value, int):
        quantity = Decimal(value)
    elif isinstance(value, float):
        if not math.isfinite(value) or not _TEXT.fullmatch(repr(value).removesuffix(".0")):
            raise QuantityError(f"quantity must be {_RULE}")
        quantity = Decimal(repr(value))
    elif isinstance(value, Decimal):
        if not value.is_finite():
            raise QuantityError(f"quantity must be {_RULE}")
        quantity = value
    elif isinstance(value, str):
        if not _TEXT.fullmatch(value):
            raise QuantityError(f"quantity must be {_RULE}")
        try:
            quantity = Decimal(value)
        except InvalidOperation as exc:  # the pattern makes this unreachable; kept as a guard
            raise QuantityError(f"quantity must be {_RULE}") from exc
    else:
        raise QuantityError(f"quantity must be {_RULE}")
    if quantity <= 0 or quantity > MAX_QUANTITY:
        raise QuantityError("quantity must be more than 0 and at most 100000")
    exponent = quantity.as_tuple().exponent
    if isinstance(exponent, int) and -exponent > MAX_DECIMALS and quantity != quantity.quantize(Decimal("0.001")):
        raise QuantityError(f"quantity has more than {MAX_DECIMALS} decimals")
    return quantity
