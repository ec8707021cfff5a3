"""The status page speaks the lane's language, right-to-left for Persian, and escapes what it shows."""

from posd.api.status_page import render_status

HEALTH = {
    "status": "error", "problems": ["front: offline", "<script>alert(1)</script>"], "version": "0.1.0",
    "store_id": "S001", "lane_id": "L01", "uptime_s": 12.5,
    "devices": [{"name": "front", "kind": "scanner", "url": "serial:///dev/x", "state": "error", "reason": "offline"}],
    "sync": {"pending": 3, "oldest_pending_age_s": 42.0, "quarantined": 0, "online": False, "last_success_at": None},
    "cache": {"members": 1000005, "program_version": "demo-2026.11", "members_synced_at": None, "stale": True},
}


def test_polish_page():
    page = render_status(HEALTH, "pl")
    assert 'lang="pl" dir="ltr"' in page
    assert "Wymaga uwagi" in page and "Sklep S001, kasa L01" in page and "brak połączenia" in page
    assert "<script>" not in page and "&lt;script&gt;" in page


def test_persian_page_is_right_to_left_with_persian_digits():
    page = render_status(HEALTH, "fa")
    assert 'lang="fa" dir="rtl"' in page
    assert "نیاز به رسیدگی" in page
    assert "۱۰۰۰۰۰۵" in page.replace("٬", "").replace(",", "")


def test_english_fallback():
    assert "Needs attention" in render_status(HEALTH, "en")
    assert "Everything works" in render_status({**HEALTH, "status": "ok", "problems": []}, "en")
