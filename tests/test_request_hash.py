"""The request hash is the one posd has always made: orjson writes the canonical text only when it is
byte for byte what json.dumps(sort_keys, compact, default=str) writes, so every ledger's recorded
hashes still match their retries."""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, date, datetime, timedelta, timezone
from decimal import Decimal
from enum import IntEnum, StrEnum

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from posd.lane.context import _canonical, request_hash


class _Kind(StrEnum):  # text and numbers a body may hold as subclasses
    SALE = "sale"
    RETURN = "return"


class _Level(IntEnum):
    LOW = 1
    HIGH = 2


def _reference(body: object) -> str:
    text = json.dumps(_canonical(body), sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()


_leaves = st.one_of(
    st.none(), st.booleans(), st.integers(min_value=-(2**70), max_value=2**70),
    st.text(max_size=12), st.text(alphabet=st.characters(max_codepoint=0x9f), max_size=8),
    st.decimals(allow_nan=False, allow_infinity=False, places=3, min_value=-10**6, max_value=10**6),
    st.floats(allow_nan=False, allow_infinity=False),
    st.datetimes(timezones=st.sampled_from([UTC, timezone(timedelta(hours=1)), timezone(timedelta(hours=-3, minutes=-30))])),
    st.dates(),
    st.sampled_from(list(_Kind)), st.sampled_from(list(_Level)),
)
_bodies = st.dictionaries(st.text(max_size=10), st.recursive(
    _leaves, lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner, max_size=4)
    | st.lists(inner, max_size=3).map(tuple) | st.dictionaries(st.integers(0, 9), inner, max_size=3),
    max_leaves=12), max_size=6)


@pytest.mark.long  # thousands of bodies: CI runs it with the fault runs (make test-faults)
@settings(max_examples=600, deadline=None)
@given(_bodies)
@example({"del": "a\x7fb"})
@example({"tab": "a\tb"})
@example({"quote": "\""})
@example({"nul": "\x00"})
@example({"c1": "\x85"})
@example({"big": 2**64})
@example({"\x7f": 1})
def test_the_hash_is_the_json_modules_on_any_body(body):
    assert request_hash(body) == _reference(body)


def test_the_hash_of_a_usual_sale_is_unchanged():
    sale = {"transaction_id": "T-1", "member": "2900000000018", "currency": "PLN", "total": 4599,
            "occurred_at": datetime(2026, 12, 2, 11, 0, tzinfo=timezone(timedelta(hours=1))),
            "lines": [{"sku": "590123", "category": "grocery", "quantity": Decimal("1.000"), "unit_price": 4599,
                       "discount": 0}]}
    text = ('{"currency":"PLN","lines":[{"category":"grocery","discount":0,"quantity":"1","sku":"590123",'
            '"unit_price":4599}],"member":"2900000000018","occurred_at":"2026-12-02T10:00:00Z","total":4599,'
            '"transaction_id":"T-1"}')
    assert request_hash(sale) == hashlib.sha256(text.encode()).hexdigest() == _reference(sale)
    assert request_hash({**sale, "member": "Zoë \"Z\"", "day": date(2026, 12, 2)}) == _reference(
        {**sale, "member": "Zoë \"Z\"", "day": date(2026, 12, 2)})
