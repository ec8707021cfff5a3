"""The slip as a document (pure): sections, kinds, languages, numbers and dates."""

from __future__ import annotations

import json
import re

import pytest

from posd.core.messages import (
    CATALOGS, format_amount, format_datetime, format_number, gregorian_to_jalali, message,
)
from posd.core.slip import SlipData, build_slip, localized
from posd.core.slip_doc import Barcode, Columns, Progress, QRCode, Text
from tests.support.slip_samples import sample


def lines(data: SlipData, locale: str) -> list[str]:
    return build_slip(data, locale).plain_lines()


def test_every_catalog_has_every_slip_message():
    english = {k for k in CATALOGS["en"] if not k.endswith(".one")}
    for locale in ("pl", "fa"):
        assert english - set(CATALOGS[locale]) == set(), locale


def test_old_callers_and_stored_jobs_still_work():
    minimal = SlipData("S1", "S001", "L01", "S1", "2026-11-24 10:15", "Anna K.", "Gold",
                       {"points": 194}, {"points": 2034})
    text = "\n".join(lines(minimal, "en"))
    assert "Anna K." in text and "+194 points" in text and "2,034 points" in text
    stored = {**minimal.to_json(), "field_from_a_newer_posd": 1}
    assert SlipData.from_json(json.loads(json.dumps(stored))) == minimal


def test_sale_slip_has_every_section_in_order():
    text = lines(sample(), "en")
    order = ["Loyalty", "Purchase", "Member  Łukasz Żółkiewski", "Tier  Silver", "[Progress:29%]",
             "3,550 points to Gold", "Points earned  +194 points", "  Base points  129", "  Tier bonus ×1.5  65",
             "Balance  2,034 points", "  confirmed  1,840 points", "  of which pending  194 points",
             "You can redeem now", "- Free coffee for 500 points", "Your voucher", "10% off your next visit",
             "[Barcode:V7K3M9Q2X]", "Valid until 2026-12-31", "Just for you", "Double points on Fridays",
             "Transaction  T-sale-1", "Store S001 / lane L01", "2026-11-24 10:15", "Thank you!"]
    positions = [text.index(line) for line in order]
    assert positions == sorted(positions)
    assert not any("rounding" in line.lower() for line in text)  # arithmetic, not a reward


@pytest.mark.parametrize("kind, label, amount", [("redemption", "Points used", "-500 points"),
                                                 ("return", "Points reversed", "-97 points")])
def test_redemption_and_return_slips(kind, label, amount):
    text = lines(sample(kind), "en")
    assert f"{label}  {amount}" in text
    assert {"redemption": "Points redeemed", "return": "Return"}[kind] in text
    assert not any(line.startswith("  of which pending") for line in text)


def test_vouchers_print_as_their_own_codes():
    doc = build_slip(sample("redemption"), "pl")
    codes = [b for b in doc.blocks if isinstance(b, (Barcode, QRCode))]
    assert codes == [QRCode("QV-55XR-2231"), Barcode("C128-0042", "CODE128")]
    assert Text("QV-55XR-2231", align="center") in doc.blocks  # a QR has no printed digits of its own


def test_polish_slip():
    text = lines(sample(), "pl")
    assert "Zdobyte punkty  +194 pkt" in text
    assert "Saldo  2034 pkt" in text
    assert "3550 pkt do poziomu Złoty" in text
    assert "- Kawa gratis za 500 pkt" in text
    assert "Ważny do 31.12.2026" in text and "24.11.2026 10:15" in text


def test_persian_slip_is_rtl_with_persian_digits_and_jalali_dates():
    doc = build_slip(sample(), "fa")
    assert doc.direction == "rtl" and doc.locale == "fa"
    text = "\n".join(doc.plain_lines())
    assert "۱۹۴ امتیاز" in text and "۲٬۰۳۴ امتیاز" in text and "پاداش سطح ×۱٫۵  ۶۵" in text
    assert "۱۴۰۵/۰۹/۰۳ ۱۰:۱۵" in text  # 24 Nov 2026 is 3 Azar 1405
    assert "معتبر تا ۱۴۰۵/۱۰/۱۰" in text
    # Only codes the member may type or scan keep Latin digits.
    latin_digits = {m for line in doc.plain_lines() if not line.startswith("[Progress")
                    for m in re.findall(r"\S*[0-9]\S*", line)}
    assert latin_digits == {"T-sale-1", "S001", "L01", "[Barcode:V7K3M9Q2X]"}


def test_gregorian_calendar_on_request():
    assert "2026-11-24 10:15" not in lines(sample(calendar="gregorian"), "fa")
    assert "۲۰۲۶-۱۱-۲۴ ۱۰:۱۵" in lines(sample(calendar="gregorian"), "fa")


def test_the_members_language_wins_over_the_lanes():
    assert build_slip(sample(locale="fa"), "pl").direction == "rtl"
    assert build_slip(sample(locale="de"), "pl").locale == "pl"  # no catalog: the lane's


def test_progress_bar_and_top_tier():
    blocks = build_slip(sample(), "en").blocks
    assert Progress((5000 - 3550) / 5000) in blocks
    top = build_slip(sample(next_tier=None, tier_name="Gold"), "en").plain_lines()
    assert "You are in the top tier" in top
    reached = {"name": {"en": "Gold", "pl": "Złoty"}, "threshold": 5000, "points_needed": 0}
    for locale, said in (("en", "Gold tier reached"), ("pl", "Osiągnięto poziom Złoty")):
        text = build_slip(sample(next_tier=reached, tier_name="Silver"), locale).plain_lines()
        assert said in text and not any("0 p" in t and "Gold" in t for t in text), text
    assert Progress(1.0) in build_slip(sample(next_tier=reached, tier_name="Silver"), "en").blocks
    one_short = {**reached, "points_needed": 1}
    for locale, said in (("en", "1 point to Gold"), ("pl", "1 pkt do poziomu Złoty")):
        assert said in build_slip(sample(next_tier=one_short, tier_name="Silver"), locale).plain_lines()
    assert "2 points to Gold" in build_slip(sample(next_tier={**reached, "points_needed": 2}), "en").plain_lines()


def test_unknown_rules_without_a_label_are_not_printed_and_labels_win():
    data = sample(breakdown=[{"rule": "mystery", "points": 5},
                             {"rule": "promotion", "label": {"en": "Black Friday x2"}, "points": 60}])
    text = lines(data, "en")
    assert "  Black Friday x2  60" in text and not any("mystery" in t for t in text)


def test_localized_falls_back_to_english_then_anything():
    assert localized({"en": "Gold", "pl": "Złoty"}, "pl") == "Złoty"
    assert localized({"en": "Gold"}, "fa") == "Gold"
    assert localized({"de": "Gold"}, "fa") == "Gold"
    assert localized(None, "fa") == "" and localized("x", "fa") == "x"


@pytest.mark.parametrize("greg, jalali", [((2024, 3, 20), (1403, 1, 1)), ((2023, 3, 21), (1402, 1, 1)),
                                          ((2026, 11, 24), (1405, 9, 3)), ((2000, 1, 1), (1378, 10, 11)),
                                          ((2025, 3, 20), (1403, 12, 30))])
def test_jalali_dates(greg, jalali):
    assert gregorian_to_jalali(*greg) == jalali


def test_numbers_per_locale():
    assert [format_number("en", n) for n in (7, 1250, 12500, -1250)] == ["7", "1,250", "12,500", "-1,250"]
    assert [format_number("pl", n) for n in (1250, 12500, 1250000)] == ["1250", "12\u00a0500", "1\u00a0250\u00a0000"]
    assert format_number("fa", 12500) == "۱۲٬۵۰۰"
    assert format_number("fa", -500) == "\u200e−۵۰۰"  # CLDR: LRM keeps the sign in front in RTL text
    assert format_amount("en", "points", 1) == "1 point"
    assert format_amount("pl", "points", 1) == "1 pkt"
    assert format_amount("en", "miles", 3) == "3 miles"  # an unknown currency keeps its name


def test_dates_that_do_not_parse_pass_through():
    assert format_datetime("fa", "soon 12") == "soon ۱۲"
    assert format_datetime("pl", "2026-02-30 10:00") == "2026-02-30 10:00"


def test_message_falls_back_to_english_then_the_key():
    assert message("de", "slip.thanks") == "Thank you!"
    assert message("pl", "no.such.key") == "no.such.key"


def test_member_qr_and_columns():
    doc = build_slip(sample(member_qr="https://loyalty.example/app"), "en")
    assert QRCode("https://loyalty.example/app", size=5) in doc.blocks
    assert Columns("Transaction", "T-sale-1") in doc.blocks


def test_breakdown_from_the_engines_trace_shape():
    trace = [{"rule": "base-points", "type": "base_rate", "currency": "points", "status": "applied",
              "points": "129.99"},
             {"rule": "base-qualifying", "type": "base_rate", "currency": "qualifying", "status": "applied",
              "points": "129.99"},
             {"rule": "fri-x2", "type": "promotion", "currency": "points", "status": "skipped", "points": "130"},
             {"type": "rounding", "currency": "points", "status": "applied", "points": 129}]
    data = sample(earned={"points": 129, "qualifying": 129, "coffee": 0}, balance={"points": 249, "qualifying": 129},
                  pending={"points": 129, "qualifying": 129}, breakdown=trace)
    text = lines(data, "en")
    assert [t for t in text if t.startswith("  Base")] == ["  Base points  129"]
    assert not any("qualifying" in t or t.endswith(" coffee") or "Promotion" in t for t in text)
    assert "Balance  249 points" in text


def test_tier_bonus_shows_its_points_and_zero_balances_stay_off_the_slip():
    trace = [{"type": "base_rate", "currency": "points", "status": "applied", "points": "129.99"},
             {"type": "tier_bonus", "currency": "points", "status": "applied", "multiplier": "1.25",
              "points": "32.4975"}]
    data = sample(earned={"points": 162, "coffee": 0}, balance={"coffee": 0, "points": 744}, pending={},
                  breakdown=trace)
    text = lines(data, "pl")
    assert "  Premia za poziom ×1,25  32" in text and "  Punkty podstawowe  130" in text  # 130 + 32 = 162
    assert [t for t in text if t.startswith("Saldo")] == ["Saldo  744 pkt"]


def test_breakdown_lines_add_up_to_the_points_earned():
    """129.99 base + 64.995 tier bonus earn 194: the lines print 129 + 65, never 129 + 64."""
    text = lines(sample(), "en")
    shown = [int(t.rsplit(" ", 1)[1]) for t in text if t.startswith("  Base points") or t.startswith("  Tier bonus")]
    assert shown == [129, 65] and sum(shown) == 194


def test_a_transaction_cap_prints_what_it_took_off():
    trace = [{"type": "base_rate", "currency": "points", "status": "applied", "points": "2000"},
             {"type": "threshold_bonus", "currency": "points", "status": "applied", "points": "100"},
             {"type": "rounding", "currency": "points", "status": "applied", "points": 2100},
             {"type": "transaction_cap", "currency": "points", "status": "applied", "cap": 1000, "before": 2100,
              "points": 1000}]
    text = lines(sample(earned={"points": 1000}, breakdown=trace), "en")
    assert ["  Base points  2,000", "  Basket bonus  100", "  Transaction cap  -1,100"] == \
        [t for t in text if t.startswith("  ") and t.strip()[0].isalpha() and "confirmed" not in t
         and "pending" not in t]


def test_titles_fall_back_to_the_lanes_language_before_english():
    assert localized({"en": "Gold", "pl": "Złoty"}, "fa", "pl") == "Złoty"
    assert localized({"en": "Gold", "pl": "Złoty"}, "fa") == "Gold"
    title = {"pl": "Kawa gratis", "en": "Free coffee"}
    voucher = [{"code": "V1", "title": title, "symbology": "CODE128"}]
    persian = lines(sample("redemption", locale="fa", vouchers=voucher), "pl")
    assert "Kawa gratis" in persian  # no Persian title: the lane's Polish, not English
    assert "Free coffee" in lines(sample("redemption", locale="fa", vouchers=voucher), "en")
    title["fa"] = "قهوهٔ رایگان"
    assert "قهوهٔ رایگان" in lines(sample("redemption", locale="fa", vouchers=voucher), "pl")


def test_a_redemption_slip_names_the_redemption_and_never_the_lanes_slip_id():
    text = lines(sample("redemption", slip_id="red-0001~r", transaction_id="", redemption_id="red-0001"), "en")
    assert "Redemption  red-0001" in text
    assert not any("~r" in t for t in text) and not any(t.startswith("Transaction") for t in text)
    for_a_sale = lines(sample("redemption", slip_id="red-2~r", transaction_id="T-77", redemption_id="red-2"), "en")
    assert "Redemption  red-2" in for_a_sale and "Transaction  T-77" in for_a_sale
    stored_before = lines(sample("redemption", slip_id="red-3~r", transaction_id="red-3~r"), "en")
    assert "Redemption  red-3" in stored_before and not any("~r" in t for t in stored_before)


def test_currency_names_come_from_the_program_then_the_catalog_then_the_lanes_language():
    from posd.core.messages import currency_name

    names = {"en": "coffee stamps", "pl": "pieczątki"}
    assert currency_name("pl", "coffee", 1, names) == "pieczątki"  # the program's, in the slip's language
    assert currency_name("fa", "coffee", 1, names, fallback="pl") == "pieczątki"  # then the lane's
    assert currency_name("fa", "coffee", 1, {"en": "coffee stamps"}) == "coffee stamps"
    assert currency_name("pl", "points", 5, {"en": "points"}) == "pkt"  # posd's word beats another language
    assert currency_name("en", "points", 1, {}) == "point"
    assert currency_name("fa", "miles", 3, {}) == "miles"  # nothing names it: the code
    assert format_amount("pl", "coffee", 1, signed=True, names=names) == "+1 pieczątki"


def test_persian_figures_on_a_slip_are_grouped_with_the_arabic_thousands_separator():
    data = sample(balance={"points": 12601}, pending={"points": 2601}, earned={"points": 2601},
                  breakdown=[{"type": "base_rate", "currency": "points", "status": "applied", "points": "2601"}])
    doc = build_slip(data, "fa")
    figures = [part for b in doc.blocks if isinstance(b, (Columns, Text))
               for part in ((b.left, b.right) if isinstance(b, Columns) else (b.text,))
               if re.search(r"[۰-۹]{2}", part)]
    assert any("۱۲٬۶۰۱" in f for f in figures) and any("۲٬۶۰۱" in f for f in figures), figures
    assert not any(re.search(r"[0-9,]", f.replace("T-sale-1", "").replace("S001", "").replace("L01", ""))
                   for f in figures), figures


def test_a_currency_name_with_plural_forms_reads_right_after_every_figure():
    """Polish: 1 punkt, 2-4 punkty (but 12-14 punktów), 5+ punktów; a name without forms is printed as given."""
    from posd.core.messages import currency_name
    from posd.core.program import parse_program
    from posd.core.rules_json import ProgramError

    forms = {"en": {"one": "point", "other": "points"},
             "pl": {"one": "punkt", "few": "punkty", "many": "punktów", "other": "punktu"}, "fa": "امتیاز"}
    expected = {1: "punkt", 2: "punkty", 4: "punkty", 5: "punktów", 12: "punktów", 14: "punktów", 22: "punkty",
                112: "punktów", 400: "punktów", 1000: "punktów", 1002: "punkty", -3: "punkty"}
    for n, word in expected.items():
        assert currency_name("pl", "points", n, forms) == word, n
    assert format_amount("pl", "points", 400, names=forms) == "400 punktów"
    assert [currency_name("en", "points", n, forms) for n in (1, 2, 0)] == ["point", "points", "points"]
    assert currency_name("fa", "points", 3, forms) == "امتیاز"
    assert currency_name("de", "points", 3, forms, fallback="pl") == "punkty"  # the lane's language, its form
    program = {"version": "p", "currencies": [{"code": "points", "kind": "redeemable", "name": forms}],
               "rules": [{"id": "b", "type": "base_rate", "currency": "points",
                          "rates": {"PLN": {"spend_minor": 100, "points": 1}}}]}
    assert parse_program(program).currency("points").name("pl") == "punktu"
    bad = {**program, "currencies": [{"code": "points", "kind": "redeemable", "name": {"pl": {"several": "x"}}}]}
    with pytest.raises(ProgramError, match=r"currencies\[0\]\.name\.pl: plural forms are"):
        parse_program(bad)


def test_a_sale_that_earned_nothing_says_0_and_the_balance():
    """Under the minimum basket a new member earns nothing and holds nothing yet: the slip printed two
    rules with nothing between them. It says what the sale earned (0) and the balance."""
    for earned, balance in (({"points": 0}, {}), ({}, {}), ({"points": 0}, {"points": 40})):
        data = SlipData("S1", "S001", "L01", "S1", "2026-11-24 10:15", "Anna K.", "Gold", earned, balance,
                        currencies={"points": {}})
        text = lines(data, "en")
        assert "Points earned  0 points" in text, (earned, balance, text)
        assert f"Balance  {balance.get('points', 0)} points" in text, text
