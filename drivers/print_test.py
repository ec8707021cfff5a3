"""What ``posd print-test`` prints: a sample slip and a code-page table.

Store IT runs it after plugging a printer in. The sample slip shows the
profile, paper and code page posd chose, Polish diacritics through that code
page, Persian as raster, a voucher barcode and a QR (native or image, as the
profile says). The code-page table shows on paper what the printer really
has in its ``ESC t`` slots, so a clone whose slots differ from its model's
shows it. It prints, by ``--code-pages``:

- ``chosen`` (the default, a hand's length of paper): bytes 0x80-0xFF under
  the slot posd prints Polish in and under slot 0 (the page after power-on),
  then the Polish letters under each other slot posd would fall back to;
- ``all``: bytes 0x80-0xFF under every slot the profile lists (metres of
  paper on a clone listing 60 slots);
- ``N`` or ``N,M``: bytes 0x80-0xFF under those slots, listed or not.

With ``[printer] code_pages`` in the config (the printer's own table, for a
clone whose slots differ from its model's), posd prints through that table:
the sample slip and ``chosen`` show the slots the table gives, ``all`` and
``N`` label each slot with the table's page and mark the profile's slots the
table leaves out, which posd does not use.
"""
from __future__ import annotations

from datetime import datetime
from typing import Mapping

from posd.core.slip import SlipData, build_slip
from posd.core.slip_doc import CodePageTable, Columns, Feed, Rule, SlipDocument, Text

from .codepages import choose_code_page, code_pages_for, rank_code_pages
from .escpos_lib import get_profile
from .escpos_render import columns_for

__all__ = ["print_test_documents", "code_page_table", "parse_code_pages", "POLISH_SAMPLE", "PERSIAN_SAMPLE",
           "POLISH_LETTERS"]

POLISH_SAMPLE = "Zażółć gęślą jaźń ZAŻÓŁĆ GĘŚLĄ JAŹŃ"
POLISH_LETTERS = "ąćęłńóśźż ĄĆĘŁŃÓŚŹŻ"
PERSIAN_SAMPLE = "آزمایش چاپگر: گچ پژو ی ۰۱۲۳۴۵۶۷۸۹"


def _sample_slip(slip_id: str, locale: str, store_id: str, lane_id: str, now: datetime) -> SlipData:
    return SlipData(
        slip_id=slip_id, store_id=store_id, lane_id=lane_id, transaction_id=slip_id,
        occurred_at=now.strftime("%Y-%m-%d %H:%M"), member_name="Łukasz Żółkiewski",
        tier_name={"en": "Silver", "pl": "Srebrny", "fa": "نقره‌ای"}, earned={"points": 194},
        balance={"points": 2034}, pending={"points": 194},
        next_tier={"name": {"en": "Gold", "pl": "Złoty", "fa": "طلایی"}, "points_needed": 2966, "threshold": 5000},
        rewards_available=[{"title": {"en": "Free coffee", "pl": "Kawa gratis", "fa": "قهوهٔ رایگان"},
                            "points": 500}],
        vouchers=[{"code": "TEST-CODE128", "title": "CODE128", "symbology": "CODE128"},
                  {"code": "TEST-QR-0001", "title": "QR", "symbology": "QR"}],
    )


def parse_code_pages(text: str) -> str | tuple[int, ...]:
    """``--code-pages``: "chosen", "all", or slots "N" / "N,M" (0-255); ValueError otherwise."""
    value = text.strip().lower()
    if value in ("chosen", "all"):
        return value
    try:
        slots = tuple(int(part) for part in value.split(","))
    except ValueError:
        raise ValueError(f"expected chosen, all or ESC t slot numbers such as 18,45; got {text!r}") from None
    bad = [n for n in slots if not 0 <= n <= 255]
    if bad:
        raise ValueError(f"an ESC t slot is 0-255; got {bad[0]}")
    return slots


def print_test_documents(profile: str, width_mm: int, locale: str, *, store_id: str = "", lane_id: str = "",
                         now: datetime | None = None, code_pages: str | tuple[int, ...] = "chosen",
                         table: Mapping[int, str] | None = None) -> list[SlipDocument]:
    """The test slip, then the code-page table, for this printer; ``table``: the printer's own
    ESC t table from the config, replacing the profile's."""
    now = now or datetime.now()
    stamp = now.strftime("%Y%m%d-%H%M%S")
    slip = build_slip(_sample_slip(f"print-test-{stamp}", locale, store_id, lane_id, now), locale)
    prof = get_profile(profile)
    features = [f for f in ("barcodeB", "qrCode", "bitImageRaster", "graphics") if prof.supports(f)]
    info = [
        Text("posd print-test", align="center", bold=True, double=True),
        Columns("Profile", profile),
        Columns("Paper", f"{width_mm} mm, {columns_for(profile, width_mm)} columns"),
        Columns("Native", ", ".join(features) or "none"),
    ]
    info.append(Columns("Code pages", "[printer] code_pages" if table is not None else "the profile's"))
    page = choose_code_page([POLISH_SAMPLE], code_pages_for(profile, table))
    info.append(Columns("Polish", f"ESC t {page.slot} {page.name}" if page else "raster (no code page)"))
    info += [Text(POLISH_SAMPLE), Text(PERSIAN_SAMPLE), Rule(), Feed(1)]
    test_slip = SlipDocument(slip.slip_id, slip.locale, slip.direction, tuple(info) + slip.blocks)
    return [test_slip, code_page_table(profile, f"print-test-codepages-{stamp}", code_pages, table)]


def code_page_table(profile: str, slip_id: str, which: str | tuple[int, ...] = "chosen",
                    table: Mapping[int, str] | None = None) -> SlipDocument:
    """The code-page table ``--code-pages`` asks for (module docstring)."""
    listed = {int(k): str(v) for k, v in get_profile(profile).codePages.items()}
    blocks: list = [Text("Code pages", align="center", bold=True, double=True)]
    if which == "chosen":
        blocks += _chosen_tables(profile, listed, table)
    else:
        slots = sorted(set(listed) | set(table or ())) if which == "all" else list(which)
        blocks += [Text(f"{profile}: bytes 0x80-0xFF per ESC t slot", align="center"), Rule()]
        for slot in slots:
            blocks += [CodePageTable(slot, f"ESC t {slot}: {_page_at(slot, listed, table)}"), Feed(1)]
    return SlipDocument(slip_id, "en", "ltr", tuple(blocks))


def _page_at(slot: int, listed: dict[int, str], table: Mapping[int, str] | None) -> str:
    """What posd takes slot ``slot`` to hold: the config's table when there is one, else the profile."""
    if table is None:
        return listed.get(slot, "not in the profile")
    if slot in table:
        return table[slot]
    return f"{listed[slot]} (profile only)" if slot in listed else "not in the table"


def _chosen_tables(profile: str, listed: dict[int, str], table: Mapping[int, str] | None) -> list:
    polish = [p for p in rank_code_pages([POLISH_LETTERS], code_pages_for(profile, table))
              if all(p.can_encode(c) for c in POLISH_LETTERS)]
    blocks: list = [Text(f"{profile}: the slots posd uses", align="center"), Rule()]
    if table is not None:
        blocks.append(Text("as [printer] code_pages says"))
    if polish:
        chosen = polish[0]
        blocks += [CodePageTable(chosen.slot, f"ESC t {chosen.slot}: {chosen.name} (Polish)"), Feed(1)]
    else:
        blocks += [Text("No Polish code page: Polish prints as raster."), Feed(1)]
    if 0 not in [p.slot for p in polish[:1]]:
        blocks += [CodePageTable(0, f"ESC t 0: {_page_at(0, listed, table)} (power-on)"), Feed(1)]
    if polish[1:]:
        blocks += [Text("Fallbacks, each should print:"), Text(POLISH_LETTERS)]
        blocks += [CodePageTable(p.slot, f"ESC t {p.slot}: {p.name}", sample=POLISH_LETTERS) for p in polish[1:]]
        blocks.append(Feed(1))
    blocks += [Text("Persian: drawn, no page has it"), Text("Every slot: --code-pages all")]
    return blocks
