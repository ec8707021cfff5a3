"""What ``posd print-test`` prints: a sample slip and a code-page table.

Store IT runs it after plugging a printer in. The sample slip shows the
profile, paper and code page posd chose, Polish diacritics through that code
page, Persian as raster, a voucher barcode and a QR (native or image, as the
profile says). The table prints bytes 0x80-0xFF under every ``ESC t`` slot
the profile lists, so a clone whose slots differ from its model's shows it
on paper.
"""

from __future__ import annotations

from datetime import datetime

from posd.core.slip import SlipData, build_slip
from posd.core.slip_doc import CodePageTable, Columns, Feed, Rule, SlipDocument, Text

from .codepages import choose_code_page, code_pages_for
from .escpos_lib import get_profile
from .escpos_render import columns_for

__all__ = ["print_test_documents", "POLISH_SAMPLE", "PERSIAN_SAMPLE"]

POLISH_SAMPLE = "Zażółć gęślą jaźń ZAŻÓŁĆ GĘŚLĄ JAŹŃ"
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


def print_test_documents(profile: str, width_mm: int, locale: str, *, store_id: str = "", lane_id: str = "",
                   now: datetime | None = None) -> list[SlipDocument]:
    """The test slip, then the code-page table, for this printer."""
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
    page = choose_code_page([POLISH_SAMPLE], code_pages_for(profile))
    info.append(Columns("Polish", f"ESC t {page.slot} {page.name}" if page else "raster (no code page)"))
    info += [Text(POLISH_SAMPLE), Text(PERSIAN_SAMPLE), Rule(), Feed(1)]
    test_slip = SlipDocument(slip.slip_id, slip.locale, slip.direction, tuple(info) + slip.blocks)
    return [test_slip, code_page_table(profile, f"print-test-codepages-{stamp}")]


def code_page_table(profile: str, slip_id: str) -> SlipDocument:
    slots = {int(k): v for k, v in get_profile(profile).codePages.items()}
    blocks: list = [Text("Code pages", align="center", bold=True, double=True),
                    Text(f"{profile}: bytes 0x80-0xFF per ESC t slot", align="center"), Rule()]
    for slot, name in sorted(slots.items()):
        blocks += [CodePageTable(slot, f"ESC t {slot}: {name}"), Feed(1)]
    return SlipDocument(slip_id, "en", "ltr", tuple(blocks))

