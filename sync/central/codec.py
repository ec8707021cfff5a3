"""JSON as the reference central reads and writes it: orjson where it gives what the json module
gives, the json module for the rest.

central decodes a pushed batch on every push and three JSON columns of every member it serves
(about half of the CPU a member page took), encodes every answer (a push's 1,000 results, a
member page), and stores each accepted event's text. orjson does each in a fraction of the json
module's time, writing the same compact JSON as ``json.dumps(..., separators=(",", ":"),
ensure_ascii=False)``, keys in the order they are in the dict. What orjson refuses (an integer past
64 bits, a lone surrogate, a key that is not a string) or would read or write otherwise (NaN and
the infinities, which the json module reads in a push and orjson writes as null; a float the json
module writes with an exponent) goes to the json module, as before.
"""

from __future__ import annotations

import json
import math
import re
from typing import Any

import orjson

# 19 digits in a row: perhaps an integer past 64 bits, which orjson would read as a float. In bytes,
# found by mapping every digit to "0" and anything else to " ", then one substring search: a tenth of
# the time the regex [0-9]{19} takes over a 400 KB batch (2.4 ms), which tries each digit as a start.
_DIGITS_ONLY = bytes(0x30 if 0x30 <= b <= 0x39 else 0x20 for b in range(256))
_LONG_NUMBER = b"0" * 19
_LONG_NUMBER_TEXT = re.compile(r"[0-9]{19}")  # a column's text: short, the regex is fine


def _has_long_number(raw: bytes | str) -> bool:
    if isinstance(raw, str):
        return _LONG_NUMBER_TEXT.search(raw) is not None
    return _LONG_NUMBER in raw.translate(_DIGITS_ONLY)


def loads(raw: bytes | str) -> Any:
    """JSON as json.loads reads it, in a quarter of the time: orjson reads the usual document; what
    it refuses and json accepts (NaN, 1e400, UTF-16, a BOM, an encoded surrogate) and what it would
    read otherwise (an integer past 64 bits) is read by json, so a document reads the same."""
    if _has_long_number(raw):
        return json.loads(raw)
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError:
        return json.loads(raw)


def dumps(doc: Any) -> bytes:
    """``doc`` as compact UTF-8 JSON, keys in their order (an answer's body)."""
    fast = _orjson(doc)
    return fast if fast is not None else _json_module(doc).encode("utf-8")


def json_text(doc: Any) -> str:
    """``doc`` as compact JSON text, keys in their order (what central stores)."""
    fast = _orjson(doc)
    return fast.decode("utf-8") if fast is not None else _json_module(doc)


# Where orjson and the json module write a float differently: NaN and the infinities (orjson: null),
# and a float json writes with an exponent, below 1e-4 or from 1e16 on (json 1e-05, orjson 0.00001;
# json 1e+16, orjson 1e16). In between, both write the same shortest repr. In orjson's output, such a
# number starts right after ":", "," or "[" with "0.0000" or has an exponent; a match (perhaps in a
# string) only sends the document to the walk below, which decides.
_ODD_FLOAT = re.compile(rb"[:,\[]-?(?:0\.0000|[0-9]+(?:\.[0-9]+)?e)")


def _orjson(doc: Any) -> bytes | None:
    """orjson's bytes, or None where they would not be what the json module writes."""
    try:
        raw = orjson.dumps(doc)
    except TypeError:  # orjson.JSONEncodeError
        return None
    if (b"null" in raw or _ODD_FLOAT.search(raw)) and _has_odd_float(doc):
        return None
    return raw


def _json_module(doc: Any) -> str:
    return json.dumps(doc, ensure_ascii=False, separators=(",", ":"))


def _has_odd_float(value: Any) -> bool:
    """A float orjson writes otherwise than json: not finite, or outside [1e-4, 1e16) and not zero."""
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, float) and (not math.isfinite(item) or (item and not 1e-4 <= abs(item) < 1e16)):
            return True
        if isinstance(item, dict):
            stack.extend(item.values())
        elif isinstance(item, list | tuple):
            stack.extend(item)
    return False
