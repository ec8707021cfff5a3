"""Compact JSON text of what central stores and answers: orjson's speed, the json module's meaning.

orjson writes the same compact JSON as ``json.dumps(..., separators=(",", ":"), ensure_ascii=False)``
in about a tenth of the time, keys in the order they are in the dict. What it refuses (an integer
past 64 bits, a lone surrogate, a key that is not a string) or would change (NaN and the
infinities, which the json module reads in a push and orjson writes as null) is written by the
json module, as before.
"""

from __future__ import annotations

import json
import math
from typing import Any

import orjson


def json_text(value: Any) -> str:
    """``value`` as compact JSON text, keys in their order."""
    try:
        text = orjson.dumps(value).decode()
    except TypeError:  # orjson.JSONEncodeError
        return _json_module(value)
    if "null" in text and _has_non_finite(value):
        return _json_module(value)
    return text


def _json_module(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


def _has_non_finite(value: Any) -> bool:
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, float) and not math.isfinite(item):
            return True
        if isinstance(item, dict):
            stack.extend(item.values())
        elif isinstance(item, list | tuple):
            stack.extend(item)
    return False
