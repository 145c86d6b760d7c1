"""The SLA policy engine: due dates, pauses, extensions, warnings, restarts, reviews and
policy selection, on the real 2026 calendar (see test_calendar.py for its holidays).

Expected values are counted by hand from that calendar, e.g. cbrc-2012 received Mon
2026-09-28: working days Sep 29 (1), Sep 30 (2), [Oct 1-7 off], Oct 8 (3), 9 (4), Sat 10 (5),
12 (6) ... 16 (10), 19 (11) ... 23 (15).
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from services.common.policy import (
    SHANGHAI,
    BusinessCalendar,
    CalendarYearUnknown,
    DeclaredYear,
    ExtensionRefused,
    Limit,
    PolicyError,
    ReviewWindowClosed,
    UnknownClock,
    UnknownPolicy,
    load_calendars,
    load_policies,
    policies_from_data,
)

BOOK = load_policies()
CAL = load_calendars().for_institution("BANKA")
CBIRC = BOOK.get("cbirc-2020").clock("decision")
CBRC = BOOK.get("cbrc-2012").clock("decision")
ENTERPRISE = BOOK.get("enterprise-3-7").clock("resolution")
CONSULT = BOOK.get("consultation-24h").clock("consultation_answer")
SAME_DAY = BOOK.get("same-day").clock("same_day")


def sh(*args: int) -> datetime:
    return datetime(*args, tzinfo=SHANGHAI)


def eod(y: int, m: int, d: int) -> datetime:
    return sh(y, m, d, 23, 59, 59)


# -- the shipped data --------------------------------------------------------------------


def test_every_policy_of_the_regulation_is_shipped():
    assert set(BOOK.policies) >= {
        "cbirc-2020",
        "cbrc-2012",
        "enterprise-3-7",
        "consultation-24h",
        "same-day",
        "suggestion",
    }
    assert CBIRC.limit == Limit(15, "calendar_days")
    assert [s.to_total.value for s in CBIRC.extensions] == [30, 60]
    assert CBIRC.extensions[1].approval == {"superior_unit", "head_office_senior_manager"}
    assert all(s.customer_told for s in CBIRC.extensions)
    assert BOOK.get("cbirc-2020").clock("review").limit == Limit(30, "calendar_days")
    assert BOOK.get("cbirc-2020").review_window == Limit(30, "calendar_days")
    assert CBRC.limit == Limit(15, "working_days") and CBRC.max_total == 60
    assert ENTERPRISE.limit == Limit(3, "working_days") and ENTERPRISE.max_total == 7
    assert CONSULT.limit == Limit(24, "hours") and CONSULT.extensions == ()
    assert SAME_DAY.limit.unit == "end_of_business_day"
    assert BOOK.get("suggestion").clock("reply").limit == Limit(15, "calendar_days")
    with pytest.raises(UnknownClock):
        BOOK.get("cbrc-2012").clock("review")
    with pytest.raises(UnknownPolicy):
        BOOK.get("nope")


def test_primary_clock_is_the_one_started_on_receipt():
    assert BOOK.get("cbirc-2020").primary_clock is CBIRC
    assert BOOK.select("BANKA", "consultation", "app").primary_clock is CONSULT
    assert BOOK.get("suggestion").primary_clock.name == "reply"
    assert BOOK.get("same-day").primary_clock is SAME_DAY


def test_default_selection_by_kind():
    assert BOOK.select("BANKA", "complaint", "phone").code == "cbirc-2020"
    assert BOOK.select("INSA", "complaint", "regulator").code == "cbirc-2020"
    assert BOOK.select("BANKA", "consultation", "web").code == "consultation-24h"
    assert BOOK.select(None, "suggestion", None).code == "suggestion"
    with pytest.raises(ValueError):
        BOOK.select("BANKA", "praise", "web")


def _custom_book(selection):
    raw = {
        "policies": [
            {"code": "a", "clocks": [{"name": "decision", "limit": {"value": 15, "unit": "calendar_days"}}]},
            {"code": "b", "clocks": [{"name": "decision", "limit": {"value": 3, "unit": "working_days"}}]},
            {"code": "c", "clocks": [{"name": "decision", "limit": {"value": 15, "unit": "working_days"}}]},
        ],
        "selection": selection,
    }
    return policies_from_data(raw)


def test_selection_by_institution_and_channel_first_match_wins():
    book = _custom_book(
        [
            {"when": {"institution": "BANKA", "kind": "complaint", "channel": ["visit", "phone"]}, "policy": "b"},
            {"when": {"institution": "INSA", "kind": "complaint"}, "policy": "c"},
            {"when": {"kind": ["complaint", "suggestion"]}, "policy": "a"},
        ]
    )
    assert book.select("BANKA", "complaint", "visit").code == "b"
    assert book.select("BANKA", "complaint", "phone").code == "b"
    assert book.select("BANKA", "complaint", "web").code == "a"
    assert book.select("INSA", "complaint", "visit").code == "c"
    assert book.select("INSA", "suggestion", "visit").code == "a"
    with pytest.raises(UnknownPolicy):
        book.select("BANKA", "consultation", "web")


@pytest.mark.parametrize(
    "raw",
    [
        {"policies": [{"code": "x", "clocks": [{"name": "d", "limit": {"value": 15, "unit": "fortnights"}}]}]},
        {"policies": [{"code": "x", "clocks": [{"name": "d", "limit": {"value": 0, "unit": "hours"}}]}]},
        {
            "policies": [
                {
                    "code": "x",
                    "clocks": [
                        {
                            "name": "d",
                            "limit": {"value": 15, "unit": "calendar_days"},
                            "extensions": [{"to_total": {"value": 30, "unit": "working_days"}}],
                        }
                    ],
                }
            ]
        },
        {
            "policies": [
                {
                    "code": "x",
                    "clocks": [
                        {
                            "name": "d",
                            "limit": {"value": 15, "unit": "calendar_days"},
                            "extensions": [
                                {"to_total": {"value": 30, "unit": "calendar_days"}},
                                {"to_total": {"value": 30, "unit": "calendar_days"}},
                            ],
                        }
                    ],
                }
            ]
        },
        {
            "policies": [{"code": "x", "clocks": [{"name": "d", "limit": {"value": 1, "unit": "hours"}}]}],
            "selection": [{"when": {"kind": "complaint"}, "policy": "missing"}],
        },
        {
            "policies": [{"code": "x", "clocks": [{"name": "d", "limit": {"value": 1, "unit": "hours"}}]}],
            "selection": [{"when": {"region": "37"}, "policy": "x"}],
        },
    ],
)
def test_invalid_data_is_refused_at_load(raw):
    with pytest.raises(PolicyError):
        policies_from_data(raw)


def test_load_from_a_path(tmp_path):
    path = tmp_path / "p.yaml"
    path.write_text(
        "policies:\n  - code: quick\n    clocks:\n      - {name: decision, limit: {value: 2, unit: hours}}\n"
        "selection:\n  - {when: {}, policy: quick}\n",
        encoding="utf-8",
    )
    book = load_policies(path)
    assert book.select("ANY", "consultation", "web").code == "quick"


# -- due dates -----------------------------------------------------------------------------


def test_calendar_days_example_from_the_brief():
    assert CBIRC.due_by(sh(2026, 9, 20, 10, 0), calendar=CAL) == eod(2026, 10, 5)


def test_calendar_days_count_holidays_across_national_day_and_spring_festival():
    assert CBIRC.due_by(sh(2026, 9, 28, 9, 0), calendar=CAL) == eod(2026, 10, 13)
    assert CBIRC.due_by(sh(2026, 2, 10, 9, 0), calendar=CAL) == eod(2026, 2, 25)
    # natural days need no calendar at all, even in a year no calendar knows
    assert CBIRC.due_by(sh(2030, 1, 1, 9, 0), calendar=None) == eod(2030, 1, 16)


def test_due_dates_are_aware_shanghai_from_any_offset():
    due = CBIRC.due_by(datetime(2026, 9, 20, 2, 0, tzinfo=UTC), calendar=CAL)
    assert due == eod(2026, 10, 5) and due.utcoffset() == timedelta(hours=8)
    # 16:30Z on Sep 19 is 00:30 on Sep 20 in Shanghai: the Shanghai date counts
    assert CBIRC.due_by(datetime(2026, 9, 19, 16, 30, tzinfo=UTC), calendar=CAL) == eod(2026, 10, 5)
    with pytest.raises(ValueError):
        CBIRC.due_by(datetime(2026, 9, 20, 10, 0), calendar=CAL)


def test_working_days_across_national_day():
    assert CBRC.due_by(sh(2026, 9, 28, 9, 0), calendar=CAL) == eod(2026, 10, 23)


def test_working_days_across_spring_festival():
    # Thu Feb 12: 13 (1), Sat 14 (2), [15-23 off], 24 (3) .. 27 (6), Sat 28 (7),
    # Mar 2 (8) .. 6 (12), 9 (13), 10 (14), 11 (15)
    assert CBRC.due_by(sh(2026, 2, 12, 15, 0), calendar=CAL) == eod(2026, 3, 11)


def test_working_days_over_a_make_up_saturday():
    # Fri Oct 9: Sat Oct 10 is a make-up working day (1), Mon 12 (2), Tue 13 (3)
    assert ENTERPRISE.due_by(sh(2026, 10, 9, 14, 0), calendar=CAL) == eod(2026, 10, 13)
    # Fri Feb 13: Sat Feb 14 (1), [15-23 off], Tue 24 (2), Wed 25 (3)
    assert ENTERPRISE.due_by(sh(2026, 2, 13, 9, 0), calendar=CAL) == eod(2026, 2, 25)


def test_complaint_received_on_a_holiday_counts_from_the_next_working_day():
    # received Sat Oct 3 (National Day): Oct 8 (1), 9 (2), Sat 10 (3)
    assert ENTERPRISE.due_by(sh(2026, 10, 3, 12, 0), calendar=CAL) == eod(2026, 10, 10)
    # received on a plain Sunday: Mon 12 (1), 13 (2), 14 (3)
    assert ENTERPRISE.due_by(sh(2026, 10, 11, 12, 0), calendar=CAL) == eod(2026, 10, 14)


def test_consultation_at_half_past_eleven():
    assert CONSULT.due_by(sh(2026, 9, 30, 23, 30), calendar=CAL) == sh(2026, 10, 1, 23, 30)
    due = CONSULT.due_by(datetime(2026, 9, 30, 15, 30, tzinfo=UTC), calendar=None)
    assert due == sh(2026, 10, 1, 23, 30) and due.tzinfo == SHANGHAI


def test_same_day():
    assert SAME_DAY.due_by(sh(2026, 10, 9, 10, 0), calendar=CAL) == sh(2026, 10, 9, 17, 30)
    assert SAME_DAY.due_by(sh(2026, 10, 9, 18, 0), calendar=CAL) == sh(2026, 10, 10, 17, 30)
    assert SAME_DAY.due_by(sh(2026, 10, 3, 10, 0), calendar=CAL) == sh(2026, 10, 8, 17, 30)


def test_working_day_clock_without_calendar_is_an_error():
    with pytest.raises(ValueError):
        CBRC.due_by(sh(2026, 9, 28, 9, 0), calendar=None)


def test_suggestion_promised_limit():
    reply = BOOK.get("suggestion").clock("reply")
    assert reply.due_by(sh(2026, 9, 20, 10, 0), calendar=None) == eod(2026, 10, 5)
    assert reply.with_limit(20).due_by(sh(2026, 9, 20, 10, 0), calendar=None) == eod(2026, 10, 10)


# -- unknown years ---------------------------------------------------------------------------


def test_working_days_into_a_year_not_published_are_provisional():
    # Sun Dec 20 2026: Dec 21-25 (5), 28-31 (9), [Fri Jan 1 2027 statutory], Jan 4-8 (14), Mon Jan 11
    start = sh(2026, 12, 20, 10, 0)
    due = CBRC.due_by(start, calendar=CAL)
    assert due == eod(2027, 1, 11)
    assert CBRC.provisional_years(start, due, CAL) == (2027,)
    # Within the published year, or on a calendar-day limit, nothing is provisional.
    early = sh(2026, 11, 2, 10, 0)
    assert CBRC.provisional_years(early, CBRC.due_by(early, calendar=CAL), CAL) == ()
    assert CBIRC.provisional_years(start, CBIRC.due_by(start, calendar=CAL), CAL) == ()


def test_working_days_into_a_year_no_calendar_can_count_raise():
    bare = BusinessCalendar(code="BANKA")  # no provisional rule: unpublished years are unknown
    with pytest.raises(CalendarYearUnknown, match="2027"):
        CBRC.due_by(sh(2026, 12, 20, 10, 0), calendar=bare)


def test_an_override_declaring_the_year_works():
    cal = BusinessCalendar(code="BANKA", years={2027: DeclaredYear(holidays=frozenset({date(2027, 1, 1)}))})
    # Dec 21-25 (5), 28-31 (9), [Fri Jan 1 off], Jan 4-8 (14), Mon Jan 11 (15)
    start = sh(2026, 12, 20, 10, 0)
    assert CBRC.due_by(start, calendar=cal) == eod(2027, 1, 11)
    assert CBRC.provisional_years(start, eod(2027, 1, 11), cal) == ()


def test_warning_points_in_an_unknown_year_raise():
    due = CBIRC.due_by(sh(2030, 1, 1, 9, 0), calendar=None)
    with pytest.raises(CalendarYearUnknown, match="2030"):
        CBIRC.warning_points(due, BusinessCalendar(code="BANKA"))
    # On the provisional calendar they are placed: due Wed Jan 16 2030; Fri 11 and Tue 15.
    assert [when.date() for _, when in CBIRC.warning_points(due, CAL)] == [date(2030, 1, 11), date(2030, 1, 15)]


# -- pauses ------------------------------------------------------------------------------------


def test_calendar_day_pause_moves_by_the_exact_duration():
    due = CBIRC.due_by(sh(2026, 9, 20, 10, 0), calendar=CAL, paused=[(sh(2026, 9, 22, 9, 0), sh(2026, 9, 24, 15, 0))])
    assert due == sh(2026, 10, 8, 5, 59, 59)  # Oct 5 23:59:59 + 2 days 6 hours


def test_overlapping_pauses_merge():
    paused = [(sh(2026, 9, 22, 9, 0), sh(2026, 9, 23, 9, 0)), (sh(2026, 9, 22, 21, 0), sh(2026, 9, 24, 9, 0))]
    assert CBIRC.due_by(sh(2026, 9, 20, 10, 0), calendar=CAL, paused=paused) == eod(2026, 10, 7)


def test_working_day_pause_across_national_day():
    # paused Wed Sep 30 10:00 .. Fri Oct 9 11:00; the clock ran Sep 29 (1) and Sep 30 (2);
    # Oct 8 and 9 are given back; then Oct 10 (3), 12 (4) .. 16 (8), 19 (9) .. 23 (13), 26 (14), 27 (15)
    paused = [(sh(2026, 9, 30, 10, 0), sh(2026, 10, 9, 11, 0))]
    assert CBRC.due_by(sh(2026, 9, 28, 9, 0), calendar=CAL, paused=paused) == eod(2026, 10, 27)


def test_pause_inside_a_holiday_gives_nothing_back():
    # received Thu Oct 8: 9 (1), Sat 10 (2), 12 (3); a pause Oct 3..6 lies before the start
    # and one wholly inside the weekend Oct 10 23:00 .. Oct 11 20:00 gives back nothing
    paused = [(sh(2026, 10, 3, 9, 0), sh(2026, 10, 6, 9, 0)), (sh(2026, 10, 10, 23, 0), sh(2026, 10, 11, 20, 0))]
    assert ENTERPRISE.due_by(sh(2026, 10, 8, 9, 0), calendar=CAL, paused=paused) == eod(2026, 10, 12)


def test_same_day_pause_and_pause_before_start_change_nothing():
    paused = [(sh(2026, 9, 1, 9, 0), sh(2026, 9, 28, 12, 0)), (sh(2026, 10, 12, 9, 0), sh(2026, 10, 12, 17, 0))]
    assert CBRC.due_by(sh(2026, 9, 28, 9, 0), calendar=CAL, paused=paused) == eod(2026, 10, 23)


def test_pause_after_the_limit_does_not_revive_the_clock():
    paused = [(sh(2026, 10, 24, 9, 0), sh(2026, 10, 30, 9, 0))]
    assert CBRC.due_by(sh(2026, 9, 28, 9, 0), calendar=CAL, paused=paused) == eod(2026, 10, 23)


def test_open_pause_leaves_the_due_date_undetermined():
    assert CBIRC.due_by(sh(2026, 9, 20, 10, 0), calendar=CAL, paused=[(sh(2026, 9, 25, 9, 0), None)]) is None
    # ... unless the clock had already run out when it began
    assert CBIRC.due_by(sh(2026, 9, 20, 10, 0), calendar=CAL, paused=[(sh(2026, 10, 6, 9, 0), None)]) == eod(
        2026, 10, 5
    )


def test_inverted_pause_is_an_error():
    with pytest.raises(ValueError):
        CBIRC.due_by(sh(2026, 9, 20, 10, 0), calendar=CAL, paused=[(sh(2026, 9, 25, 9, 0), sh(2026, 9, 24, 9, 0))])


def test_hours_pause():
    paused = [(sh(2026, 10, 1, 8, 0), sh(2026, 10, 1, 10, 30))]
    assert CONSULT.due_by(sh(2026, 9, 30, 23, 30), calendar=None, paused=paused) == sh(2026, 10, 2, 2, 0)


# -- extensions ----------------------------------------------------------------------------------


def test_cbirc_first_extension_up_to_30():
    assert CBIRC.extend(15, 15, {"handler"}) == 30
    assert CBIRC.extend(15, 10, {"supervisor"}) == 25
    with pytest.raises(ExtensionRefused) as info:
        CBIRC.extend(15, 16, {"supervisor"})
    assert info.value.reason == "over_cap"
    with pytest.raises(ExtensionRefused) as info:
        CBIRC.extend(15, 15, set())
    assert info.value.reason == "approval_missing"


def test_cbirc_second_extension_up_to_60_with_superior_approval():
    assert CBIRC.extend(30, 30, {"superior_unit"}, steps_taken=1) == 60
    assert CBIRC.extend(30, 30, {"head_office_senior_manager"}, steps_taken=1) == 60
    assert CBIRC.extend(25, 20, {"superior_unit", "handler"}, steps_taken=1) == 45
    with pytest.raises(ExtensionRefused) as info:
        CBIRC.extend(30, 30, {"supervisor", "handler"}, steps_taken=1)
    assert info.value.reason == "approval_missing"
    with pytest.raises(ExtensionRefused) as info:
        CBIRC.extend(30, 31, {"superior_unit"}, steps_taken=1)
    assert info.value.reason == "over_cap"


def test_cbirc_no_jump_to_60_and_no_third_extension():
    with pytest.raises(ExtensionRefused) as info:
        CBIRC.extend(15, 45, {"superior_unit", "supervisor"})  # the first step caps at 30
    assert info.value.reason == "over_cap"
    with pytest.raises(ExtensionRefused) as info:
        CBIRC.extend(45, 5, {"superior_unit"}, steps_taken=2)  # two steps declared, two used
    assert info.value.reason == "steps_exhausted"
    with pytest.raises(ExtensionRefused) as info:
        CBIRC.extend(15, 0, {"supervisor"})
    assert info.value.reason == "invalid_request"


def test_extended_due_dates():
    start = sh(2026, 9, 20, 10, 0)
    assert CBIRC.due_by(start, calendar=CAL, extended_to=30) == eod(2026, 10, 20)
    assert CBIRC.due_by(start, calendar=CAL, extended_to=Limit(60, "calendar_days")) == eod(2026, 11, 19)
    with pytest.raises(ValueError):
        CBIRC.due_by(start, calendar=CAL, extended_to=Limit(30, "working_days"))
    with pytest.raises(ValueError):
        CBIRC.due_by(start, calendar=CAL, extended_to=10)


def test_cbrc_and_enterprise_extensions():
    assert CBRC.extend(15, 45) == 60
    with pytest.raises(ExtensionRefused, match="over_cap"):
        CBRC.extend(15, 46)
    with pytest.raises(ExtensionRefused, match="steps_exhausted"):
        CBRC.extend(60, 1, steps_taken=1)
    assert ENTERPRISE.extend(3, 4) == 7
    with pytest.raises(ExtensionRefused, match="over_cap"):
        ENTERPRISE.extend(3, 5)
    # special case, received Fri Oct 9: Sat 10 (1), 12 (2) .. 16 (6), 19 (7)
    assert ENTERPRISE.due_by(sh(2026, 10, 9, 9, 0), calendar=CAL, extended_to=7) == eod(2026, 10, 19)


def test_consultation_cannot_be_extended():
    with pytest.raises(ExtensionRefused) as info:
        CONSULT.extend(24, 1, {"supervisor"})
    assert info.value.reason == "no_extensions"


def test_extension_step_lookup():
    assert CBIRC.extension_step(0).approval == {"handler", "supervisor"}
    assert CBIRC.extension_step(1).to_total == Limit(60, "calendar_days")
    assert CBIRC.extension_step(2) is None


# -- warnings ----------------------------------------------------------------------------------


def test_warning_points_of_a_calendar_day_clock_ending_on_a_holiday():
    # due Mon Oct 5 (holiday); last working day before it Wed Sep 30;
    # 1 working day left from the end of Sep 29; 3 left (28, 29, 30) from the end of
    # Thu Sep 24 (Sep 25-27 are Mid-autumn)
    due = CBIRC.due_by(sh(2026, 9, 20, 10, 0), calendar=CAL)
    points = CBIRC.warning_points(due, CAL)
    assert [at for _, at in points] == [eod(2026, 9, 24), eod(2026, 9, 29)]
    assert [label for label, _ in points] == ["3_working_days_before", "1_working_days_before"]


def test_warning_points_of_a_working_day_clock():
    due = CBRC.due_by(sh(2026, 9, 28, 9, 0), calendar=CAL)  # Fri Oct 23
    assert [at for _, at in CBRC.warning_points(due, CAL)] == [eod(2026, 10, 20), eod(2026, 10, 22)]
    # received Thu Oct 8: 9 (1), Sat 10 (2), Mon 12 (3); one working day left after Sat Oct 10
    due = ENTERPRISE.due_by(sh(2026, 10, 8, 9, 0), calendar=CAL)
    assert ENTERPRISE.warning_points(due, CAL) == [("1_working_days_before", eod(2026, 10, 10))]


def test_warning_points_in_hours_and_not_before():
    due = CONSULT.due_by(sh(2026, 9, 30, 23, 30), calendar=None)
    assert CONSULT.warning_points(due, None) == [("4_hours_before", sh(2026, 10, 1, 19, 30))]
    start = sh(2026, 10, 9, 16, 0)
    due = SAME_DAY.due_by(start, calendar=CAL)
    assert SAME_DAY.warning_points(due, CAL) == [("2_hours_before", sh(2026, 10, 9, 15, 30))]
    assert SAME_DAY.warning_points(due, CAL, not_before=start) == []


# -- restart and review ------------------------------------------------------------------------


def test_restart_on_new_facts_counts_again_from_the_new_material():
    paused = [(sh(2026, 9, 22, 9, 0), sh(2026, 9, 24, 9, 0))]
    assert CBIRC.restart(sh(2026, 10, 2, 15, 0), calendar=CAL, paused=paused) == eod(2026, 10, 17)
    # working days, new material on a holiday (Oct 3): Oct 8 (1), 9, Sat 10, 12-16 (8), 19-23 (13), 26, 27 (15)
    assert CBRC.restart(sh(2026, 10, 3, 10, 0), calendar=CAL) == eod(2026, 10, 27)


def test_review_window_and_review_clock():
    policy = BOOK.get("cbirc-2020")
    decided = sh(2026, 10, 9, 16, 0)
    assert policy.review_window_ends(decided) == eod(2026, 11, 8)
    assert policy.review_due_by(decided, sh(2026, 11, 8, 20, 0)) == eod(2026, 12, 8)
    assert policy.clock("review").due_by(sh(2026, 10, 12, 9, 0), calendar=CAL) == eod(2026, 11, 11)
    with pytest.raises(ReviewWindowClosed):
        policy.review_due_by(decided, sh(2026, 11, 9, 0, 0, 1))
    with pytest.raises(ValueError):
        policy.review_due_by(decided, sh(2026, 10, 9, 15, 0))
    with pytest.raises(UnknownClock):
        BOOK.get("cbrc-2012").review_window_ends(decided)


# -- properties ----------------------------------------------------------------------------------

MIN = datetime(2025, 1, 1)
MAX = datetime(2026, 10, 31, 23, 59)
moments = st.datetimes(min_value=MIN, max_value=MAX, timezones=st.just(SHANGHAI))
CLOCKS = [clock for policy in BOOK.policies.values() for clock in policy.clocks.values()]
WORKING_DAY_CLOCKS = [c for c in CLOCKS if c.limit.unit == "working_days"]
clocks = st.sampled_from(CLOCKS)


@settings(max_examples=150, deadline=None)
@given(clock=clocks, a=moments, b=moments)
def test_due_by_is_monotonic_in_started_at(clock, a, b):
    a, b = min(a, b), max(a, b)
    assert clock.due_by(a, calendar=CAL) <= clock.due_by(b, calendar=CAL)


@settings(max_examples=150, deadline=None)
@given(
    clock=clocks,
    start=moments,
    pause_offset=st.timedeltas(min_value=timedelta(0), max_value=timedelta(days=20)),
    pause_length=st.timedeltas(min_value=timedelta(0), max_value=timedelta(days=20)),
)
def test_a_pause_never_makes_the_due_date_earlier(clock, start, pause_offset, pause_length):
    pause = (start + pause_offset, start + pause_offset + pause_length)
    plain = clock.due_by(start, calendar=CAL)
    paused = clock.due_by(start, calendar=CAL, paused=[pause])
    assert paused >= plain
    if clock.limit.unit != "working_days":
        # exact duration, or nothing if the pause began after the limit
        assert paused - plain == (pause_length if pause[0] < plain else timedelta(0))


@settings(max_examples=150, deadline=None)
@given(
    clock=st.sampled_from(WORKING_DAY_CLOCKS),
    start=moments,
    pauses=st.lists(
        st.tuples(
            st.timedeltas(min_value=timedelta(0), max_value=timedelta(days=10)),
            st.timedeltas(min_value=timedelta(0), max_value=timedelta(days=5)),
        ),
        max_size=3,
    ),
)
def test_working_day_clocks_end_on_a_working_day(clock, start, pauses):
    intervals = [(start + off, start + off + length) for off, length in pauses]
    due = clock.due_by(start, calendar=CAL, paused=intervals)
    assert CAL.is_working_day(due.date())
    assert due.timetz().replace(tzinfo=None).isoformat() == "23:59:59"
    assert due.date() > start.date()
    # exactly `limit` working days after the start day when nothing pauses
    plain = clock.due_by(start, calendar=CAL)
    assert CAL.working_days_between(start.date(), plain.date()) == clock.limit.value


@settings(max_examples=100, deadline=None)
@given(start=moments)
def test_calendar_day_clock_is_n_days_after_the_start_date(start):
    due = CBIRC.due_by(start, calendar=None)
    assert due.date() - start.date() == timedelta(days=15)
    assert (due.hour, due.minute, due.second) == (23, 59, 59)


@settings(max_examples=200, deadline=None)
@given(
    clock=st.sampled_from([c for c in CLOCKS if c.extensions]),
    extra=st.integers(min_value=0, max_value=70),
    requested=st.integers(min_value=-2, max_value=70),
    steps_taken=st.integers(min_value=0, max_value=3),
    approvals=st.sets(
        st.sampled_from(["handler", "supervisor", "superior_unit", "head_office_senior_manager", "auditor"])
    ),
)
def test_extensions_never_pass_the_step_cap(clock, extra, requested, steps_taken, approvals):
    current = clock.limit.value + extra
    try:
        new_total = clock.extend(current, requested, approvals, steps_taken=steps_taken)
    except ExtensionRefused:
        return
    step = clock.extensions[steps_taken]
    assert current < new_total <= step.to_total.value <= clock.max_total
    assert not step.approval or step.approval & approvals


def test_pure_and_deterministic():
    start = sh(2026, 9, 28, 9, 0)
    assert [CBRC.due_by(start, calendar=CAL) for _ in range(3)] == [eod(2026, 10, 23)] * 3
