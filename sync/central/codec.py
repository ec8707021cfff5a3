"""JSON as the reference central reads and writes it: orjson where it gives what the json module
gives, the json module for the rest.

central decodes a pushed batch on every push and three JSON columns of every member it serves
(about half of the CPU a member page took), and encodes every answer: a snapshot of a million
members is a thousand pages. orjson does each in a fraction of the json module's time.
"""

from __future__ import annotations

import json
import re
from typing import Any

import orjson

# 19 digits in a row: perhaps an integer past 64 bits, which orjson would read as a float
_LONG_NUMBER = re.compile(rb"[0-9]{19}")
_LONG_NUMBER_TEXT = re.compile(r"[0-9]{19}")


def loads(raw: bytes | str) -> Any:
    """JSON as json.loads reads it, in a quarter of the time: orjson reads the usual document; what
    it refuses and json accepts (NaN, 1e400, UTF-16, a BOM, an encoded surrogate) and what it would
    read otherwise (an integer past 64 bits) is read by json, so a document reads the same."""
    if (_LONG_NUMBER_TEXT if isinstance(raw, str) else _LONG_NUMBER).search(raw):
        return json.loads(raw)
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError:
        return json.loads(raw)


def dumps(doc: Any) -> bytes:
    """Compact UTF-8 JSON, as json.dumps(doc, separators=(",", ":"), ensure_ascii=False) writes it:
    orjson, in about a tenth of the time; what orjson refuses (a key that is not a string, an
    integer past 64 bits) goes to the json module."""
    try:
        return orjson.dumps(doc)
    except TypeError:  # orjson.JSONEncodeError
        return json.dumps(doc, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
