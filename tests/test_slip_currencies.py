"""Slips name every currency as the program does, in the slip's language, and print each
currency's breakdown under it, adding up to it: a real lane, the demo program, a preview printer."""

from __future__ import annotations

import json
import re
import sqlite3

import pytest

from posd.core.messages import plural_category
from posd.core.slip import SlipData, build_slip
from posd.core.slip_doc import Columns
from tests.support.central_fixture import demo_seed

LUKASZ, ZAHRA, GRACE = "2900000000025", "2900000000032", "2900000000056"  # pl, fa, en
COFFEE_TO_GO = {"sku": "2000000000012", "category": "coffee_to_go", "quantity": 1, "unit_price": 1290}
BEANS = {"sku": "5900000001017", "category": "grocery", "quantity": 1, "unit_price": 5450}  # +50 points a bag


@pytest.fixture
def central_seed():
    seed = demo_seed()
    for member in seed["members"]:
        if member["member_id"] == "M0005":
            member["status"] = "active"  # the demo's English member is blocked to show that refusal
    return seed


def sale(tid: str, member: str) -> dict:
    lines = [COFFEE_TO_GO, BEANS]
    return {"transaction_id": tid, "member": member, "occurred_at": "2026-11-17T10:15:00+01:00",
            "currency": "PLN", "total": sum(line["unit_price"] for line in lines), "lines": lines}


def groups(blocks, earned_label: str) -> dict[str, tuple[str, list[str]]]:
    """{amount text: (header, [breakdown figures])} per 'points earned' header."""
    out: dict[str, tuple[str, list[str]]] = {}
    current = None
    for block in blocks:
        if isinstance(block, Columns) and block.left == earned_label:
            current = block.right
            out[current] = (block.right, [])
        elif isinstance(block, Columns) and block.left.startswith("  ") and current is not None:
            out[current][1].append(block.right)
        else:
            current = None
    return out


def digits(text: str) -> int:
    persian = str.maketrans("۰۱۲۳۴۵۶۷۸۹", "0123456789")
    return int(re.sub(r"[^0-9]", "", text.translate(persian)))


def test_slips_name_currencies_as_the_program_does_and_each_breakdown_adds_up(tmp_path, start_lane, central_seed):
    names = {c["code"]: c["name"] for c in central_seed["program"]["currencies"]}
    slips = tmp_path / "slips"
    lane = start_lane(tmp_path / "lane", printer=f"preview://{slips}")
    earned = {}
    for tid, member in (("T-pl", LUKASZ), ("T-fa", ZAHRA), ("T-en", GRACE)):
        resp = lane.post("/v1/transactions", sale(tid, member))
        assert resp.status_code == 200, resp.text
        earned[tid] = resp.json()["accrual"]["points"]
        assert earned[tid]["coffee"] == 1 and earned[tid]["points"] > 50

    # The bytes the printer got (Polish prints as text): names, and stamps apart from points.
    text = lane.wait_for(lambda: (slips / "T-pl.txt").exists() and (slips / "T-pl.txt").read_text(),
                         what="the Polish slip")
    assert "coffee" not in text  # never the currency's code
    points_pl = names["points"]["pl"][plural_category("pl", earned["T-pl"]["points"])]
    assert f"+{earned['T-pl']['points']} {points_pl}" in text  # the program's plural form for the figure
    assert f"+1 {names['coffee']['pl']['one']}" in text  # 1 pieczątka
    assert f"Saldo                          1 {names['coffee']['pl']['one']}" in text

    lane.stop()
    with sqlite3.connect(lane.state / "ledger.db") as db:
        stored = {row[0]: json.loads(row[1]) for row in db.execute("SELECT slip_id, slip FROM print_jobs")}
    labels = {"pl": "Zdobyte punkty", "fa": "امتیاز کسب‌شده", "en": "Points earned"}
    for tid, locale in (("T-pl", "pl"), ("T-fa", "fa"), ("T-en", "en")):
        doc = build_slip(SlipData.from_json(stored[tid]), "pl")  # each prints in its member's language
        assert doc.locale == locale
        found = groups(doc.blocks, labels[locale])
        assert len(found) == 2, (tid, found)  # points and stamps; tier points show as progress
        for currency in ("points", "coffee"):
            name = names[currency][locale]
            word = name[plural_category(locale, earned[tid][currency])] if isinstance(name, dict) else name
            header = next(h for h in found if h.endswith(" " + word))
            assert digits(header) == earned[tid][currency]
            figures = found[header][1]
            assert figures and sum(digits(f) for f in figures) == earned[tid][currency], (tid, currency, figures)
        assert not any(getattr(b, "right", "").endswith(" coffee") for b in doc.blocks)  # never the bare code
