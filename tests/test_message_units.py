"""Durations in the lane's language: the largest whole unit, with the singular a language needs."""

from posd.core.messages import format_duration, message


def test_one_day_is_singular_in_polish_and_other_counts_keep_their_words():
    assert [format_duration("pl", d * 86400) for d in (1, 2, 5, 22)] == ["1 dzień", "2 dni", "5 dni", "22 dni"]
    assert [format_duration("pl", s) for s in (3600, 7200, 61, 5)] == ["1 godz.", "2 godz.", "1 min", "5 s"]
    assert [format_duration("en", s) for s in (86400, 2 * 86400, 3600)] == ["1 d", "2 d", "1 h"]
    assert format_duration("fa", 86400) == "۱ روز"


def test_doctor_growth_in_polish_reads_right_for_a_one_day_window():
    text = message("pl", "doctor.storage.growth", rate="676 KB", events=4, window=format_duration("pl", 86400),
                   bytes_per_day=1, window_s=86400)
    assert text == "ledger.db rośnie o około 676 KB dziennie (zdarzenia: 4, okres: 1 dzień)"


def test_a_lane_that_never_loaded_its_members_is_not_said_to_be_a_day_behind():
    """The status page and doctor said "not refreshed for over a day" on a lane started seconds ago that
    never reached central; health itself said "never loaded"."""
    from posd.core.messages import describe_issue

    never = {"code": "cache_stale", "values": {"age_s": None}}
    stale = {"code": "cache_stale", "values": {"age_s": 90_000.0}}
    assert describe_issue("en", never) == "Members never loaded from central yet"
    assert describe_issue("en", stale) == "Members not refreshed from central for over a day"
    assert "jeszcze" in describe_issue("pl", never) and "هنوز" in describe_issue("fa", never)
