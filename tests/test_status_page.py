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


def test_credentials_central_refused_are_not_called_offline():
    """Central answering 401 (its pulls too, or only the pushes) is not "offline": store IT must fix
    the store secret, not the network."""
    for sync in ({"state": "auth_failed"}, {"state": "idle", "pull": {"state": "auth_failed"}}):
        health = {**HEALTH, "sync": {**HEALTH["sync"], **sync}}
        assert "centrala odrzuciła dane dostępowe" in render_status(health, "pl")
        assert "brak połączenia" not in render_status(health, "pl")
        assert "central refused our credentials" in render_status(health, "en")


def test_english_fallback():
    assert "Needs attention" in render_status(HEALTH, "en")
    assert "Everything works" in render_status({**HEALTH, "status": "ok", "problems": []}, "en")


LIVE = {
    "status": "error", "version": "0.2.0", "store_id": "S001", "lane_id": "L01", "locale": "pl",
    "timezone": "Europe/Warsaw", "started_at": "2026-11-24T08:00:00Z", "uptime_s": 4500,
    "last_sale_at": "2026-11-24T09:14:02.120Z",
    "problems": ["printer: paper_out", "central unreachable (central unreachable: ConnectionError)"],
    "issues": [
        {"code": "device_error", "severity": "error", "subject": "printer", "reason": "paper_out", "detail": None,
         "values": {"kind": "printer"}},
        {"code": "central_unreachable", "severity": "warning", "subject": None, "reason": None,
         "detail": "central unreachable: ConnectionError", "values": {}},
    ],
    "devices": [
        {"name": "printer", "kind": "printer", "url": "tcp://10.0.0.5:9100", "state": "error", "reason": "paper_out",
         "since": "2026-11-24T09:14:05Z", "last_error": {"reason": "paper_out", "at": "2026-11-24T09:14:05Z"},
         "paper": "out"},
        {"name": "front", "kind": "scanner", "url": "serial:///dev/ttyUSB0", "state": "idle", "reason": None,
         "since": "2026-11-24T08:00:01Z", "last_error": None, "paper": None},
    ],
    "sync": {"pending": 12, "oldest_pending_age_s": 4000.0, "quarantined": 0, "online": False,
             "last_error": "central unreachable: ConnectionError", "last_success_at": "2026-11-24T09:00:00Z",
             "last_sync_at": "2026-11-24T09:10:00Z", "clock_skew_s": -2.0},
    "cache": {"members": 12500, "program_version": "demo-2026.11", "members_synced_at": "2026-11-24T09:10:00Z",
              "stale": False},
    "storage": {"free_mb": 2048, "min_free_mb": 200, "ledger_mb": 10.5},
}


def test_devices_reasons_and_problems_are_translated_with_local_times():
    page = render_status(LIVE)
    assert 'lang="pl" dir="ltr"' in page and 'data-status="error"' in page and "Wymaga uwagi" in page
    assert "drukarka: brak papieru" not in page  # the device's own name is kept, its reason translated:
    assert "<li>printer: brak papieru</li>" in page
    assert "Brak połączenia z centralą" in page and "ConnectionError</code>" in page
    row = page.split('data-device="printer"')[1].split("</tr>")[0]
    assert "drukarka" in row and "tcp://10.0.0.5:9100" in row and "błąd" in row and "brak papieru" in row
    assert "24.11.2026 10:14" in row  # Warsaw time of 09:14 UTC
    assert "24.11.2026 10:14" in page.split('id="row-last_sale"')[1]
    assert "24.11.2026 10:10" in page.split('id="row-last_success"')[1]
    assert "1 godz." in page.split('id="row-oldest"')[1]
    assert "12\u00a0500" in page  # Polish grouping with a no-break space


def test_persian_page_uses_jalali_dates_persian_words_and_digits():
    page = render_status({**LIVE, "locale": "fa", "timezone": "Asia/Tehran"})
    assert 'lang="fa" dir="rtl"' in page
    assert "printer: کاغذ تمام شده" in page and "مرکز در دسترس نیست" in page
    assert "۱۴۰۵/۰۹/۰۳ ۱۲:۴۴" in page  # 2026-11-24 09:14 UTC in Tehran, Jalali
    assert "چاپگر" in page and "اسکنر" in page and "آماده" in page
    assert "۱۲٬۵۰۰" in page


def test_a_missing_translation_falls_back_to_the_code_not_a_crash():
    odd = {**LIVE, "issues": [{"code": "new_thing", "severity": "warning", "subject": None, "reason": None,
                               "detail": None, "values": {}}],
           "devices": [{**LIVE["devices"][0], "reason": "jammed", "kind": "drawer"}]}
    page = render_status(odd)
    assert "<li>new_thing</li>" in page and "jammed" in page and "drawer" in page
