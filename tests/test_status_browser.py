"""The status page in a real headless Chromium, as store IT sees it, through an outage and a printer
out of paper: green, then amber at once when central goes down, then red when slips cannot print;
in Polish and in Persian (right to left, Persian digits, Jalali dates), with translated states,
reasons and problems, the printer's URL, its last error and paper, the last sale and the last sync.

The page refreshes itself; the test reads what the browser renders (innerText, computed colours,
layout), never the HTML source.
"""

from __future__ import annotations

import re
import time
from pathlib import Path

import pytest

from tests.support.browser import Chromium, available
from tests.support.central_fixture import demo_seed
from tests.support.lane import sale_body

pytestmark = pytest.mark.skipif(not available(), reason="needs playwright and /usr/bin/chromium (scripts/bootstrap)")

GREEN, AMBER, RED = "rgb(27, 127, 59)", "rgb(183, 121, 31)", "rgb(197, 48, 48)"
SEEN_BY_A_PERSON = """() => {
  const cells = tr => [...tr.querySelectorAll('td')].map(td => td.innerText.trim());
  const badge = document.querySelector('#badge');
  const printer = document.querySelector('#devices tr[data-device="printer"]');
  return {
    status: badge.dataset.status, badge: badge.innerText.trim(), colour: getComputedStyle(badge).backgroundColor,
    lang: document.documentElement.lang, direction: getComputedStyle(document.body).direction,
    problems: [...document.querySelectorAll('#problems li')].map(li => li.innerText.trim()),
    devices: Object.fromEntries([...document.querySelectorAll('#devices tr[data-device]')]
                                .map(tr => [tr.dataset.device, cells(tr)])),
    rows: Object.fromEntries([...document.querySelectorAll('tr[id^="row-"]')]
                             .map(tr => [tr.id.slice(4), tr.querySelector('td').innerText.trim()])),
    firstColumnRightOfLast: printer ? printer.cells[0].getBoundingClientRect().left >
                                      printer.cells[printer.cells.length - 1].getBoundingClientRect().left : null,
  };
}"""

WORDS = {
    "pl": {"ok": "Wszystko działa", "degraded": "Działa, z ostrzeżeniami", "error": "Wymaga uwagi",
           "offline": "brak połączenia", "central": "Brak połączenia z centralą", "printer": "drukarka",
           "state_error": "błąd", "paper_out": "brak papieru", "paper_ok": "papier jest", "ready": "gotowe",
           "time": r"\d\d\.\d\d\.20\d\d \d\d:\d\d", "members": "5"},
    "fa": {"ok": "همه چیز کار می‌کند", "degraded": "کار می‌کند، با هشدار", "error": "نیاز به رسیدگی",
           "offline": "قطع", "central": "مرکز در دسترس نیست", "printer": "چاپگر", "state_error": "خطا",
           "paper_out": "کاغذ تمام شده", "paper_ok": "کاغذ دارد", "ready": "آماده",
           "time": r"۱۴[۰-۹]{2}/[۰-۹]{2}/[۰-۹]{2} [۰-۹]{2}:[۰-۹]{2}", "members": "۵"},
}


@pytest.fixture
def central_seed():
    return demo_seed()


@pytest.fixture
def chromium():
    browser = Chromium()  # per test: its threads (asyncio's executor) end with it, as the thread guard wants
    yield browser
    browser.close()


async def open_page(browser, url: str):
    page = await browser.new_page(viewport={"width": 1280, "height": 900})
    await page.goto(url)
    return page


async def read(page) -> dict | None:
    try:
        return await page.evaluate(SEEN_BY_A_PERSON)
    except Exception:  # the page is reloading itself right now: look again
        return None


def wait_for_page(chromium: Chromium, page, predicate, what: str, timeout: float = 30.0) -> dict:
    """What the page shows once ``predicate`` holds; it refreshes itself (bounded wait)."""
    deadline = time.monotonic() + timeout
    seen = None
    while time.monotonic() < deadline:
        seen = chromium.call(read, page)
        if seen and predicate(seen):
            return seen
        time.sleep(0.25)
    raise AssertionError(f"the page never showed {what}; last seen: {seen}")




@pytest.mark.fault
@pytest.mark.parametrize("locale", ["pl", "fa"])
def test_the_page_tells_the_truth_through_an_outage_and_paper_out(tmp_path: Path, central, printer, start_lane,
                                                                   chromium, locale):
    w = WORDS[locale]
    lane = start_lane(tmp_path / "lane", printer=printer.url, locale=locale)
    page = chromium.call(open_page, chromium.browser, lane.base + "/")
    try:
        seen = wait_for_page(chromium, page, lambda s: s["status"] == "ok", "green")
        assert (seen["badge"], seen["colour"], seen["lang"]) == (w["ok"], GREEN, locale)
        assert seen["direction"] == ("rtl" if locale == "fa" else "ltr")
        assert seen["rows"]["members"] == w["members"]
        assert seen["devices"]["printer"][1] == w["printer"] and seen["devices"]["printer"][3] == w["ready"]
        assert lane.post("/v1/transactions", sale_body("T-b1")).status_code == 200
        seen = wait_for_page(chromium, page, lambda s: s["devices"]["printer"][7] == w["paper_ok"]
                             and re.fullmatch(w["time"], s["rows"]["last_sale"]), "the sale and paper")

        central.stop()  # amber as soon as the lane tries central and fails, sales still recorded
        seen = wait_for_page(chromium, page, lambda s: s["status"] == "degraded", "amber")
        assert (seen["badge"], seen["colour"]) == (w["degraded"], AMBER)
        assert seen["rows"]["state"] == w["offline"] and "central unreachable" in seen["rows"]["last_error"]
        assert any(p.startswith(w["central"]) for p in seen["problems"]), seen["problems"]
        assert re.fullmatch(w["time"], seen["rows"]["last_success"]), seen["rows"]

        printer.state = "paper_out"
        assert lane.post("/v1/transactions", sale_body("T-b2")).status_code == 200  # offline, its slip held
        seen = wait_for_page(chromium, page, lambda s: s["status"] == "error", "red")
        assert (seen["badge"], seen["colour"]) == (w["error"], RED)
        name, kind, url, state, reason, since, last_error, paper = seen["devices"]["printer"]
        assert (kind, url, state, reason, paper) == (w["printer"], printer.url, w["state_error"], w["paper_out"],
                                                     w["paper_out"])
        assert re.fullmatch(w["time"], since) and last_error.startswith(w["paper_out"])
        assert re.search(w["time"], last_error)
        assert f"printer: {w['paper_out']}" in seen["problems"]
        assert any(p.startswith(w["central"]) for p in seen["problems"])
        if locale == "fa":  # right to left as a reader sees it: the first column is the rightmost
            assert seen["firstColumnRightOfLast"] is True
            assert not re.search(r"[0-9]", seen["rows"]["members"] + seen["rows"]["last_sale"])
        else:
            assert seen["firstColumnRightOfLast"] is False
        chromium.call(page.screenshot, path=str(tmp_path / f"status-{locale}-outage.png"), full_page=True)
        assert (tmp_path / f"status-{locale}-outage.png").stat().st_size > 10_000
    finally:
        chromium.call(page.close)
