"""Business calendars against the real State Council calendar (chinese_calendar 1.11.0).

2026, as the package has it (checked by hand against the published arrangement):
holidays Jan 1-3, Feb 15-23 (Spring Festival), Apr 4-6, May 1-5, Jun 19-21, Sep 25-27
(Mid-autumn), Oct 1-7 (National Day); make-up working days Sun Jan 4, Sat Feb 14,
Sat Feb 28, Sat May 9, Sun Sep 20, Sat Oct 10.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path

import chinese_calendar
import pytest

from services.common.policy import (
    SHANGHAI,
    BusinessCalendar,
    CalendarYearUnknown,
    DeclaredYear,
    load_calendars,
    provisional_rule_from_data,
)

CAL = BusinessCalendar()


def sh(*args: int) -> datetime:
    return datetime(*args, tzinfo=SHANGHAI)


@pytest.mark.parametrize("day", [date(2026, 10, d) for d in range(1, 8)])
def test_national_day_2026_is_off(day):
    assert not CAL.is_working_day(day)


@pytest.mark.parametrize("day", [date(2026, 2, d) for d in range(15, 24)])
def test_spring_festival_2026_is_off(day):
    assert not CAL.is_working_day(day)


@pytest.mark.parametrize(
    "day",
    [date(2026, 1, 4), date(2026, 2, 14), date(2026, 2, 28), date(2026, 5, 9), date(2026, 9, 20), date(2026, 10, 10)],
)
def test_make_up_weekend_days_work(day):
    assert day.weekday() >= 5
    assert CAL.is_working_day(day)


def test_ordinary_days():
    assert CAL.is_working_day(date(2026, 10, 8))  # Thursday after National Day
    assert CAL.is_working_day(date(2026, 2, 24))  # Tuesday after Spring Festival
    assert not CAL.is_working_day(date(2026, 10, 11))  # plain Sunday
    assert not CAL.is_working_day(date(2026, 3, 1))  # plain Sunday
    assert not CAL.is_working_day(date(2026, 9, 25))  # Mid-autumn, a Friday


def test_add_working_days_across_national_day():
    assert CAL.add_working_days(date(2026, 9, 30), 1) == date(2026, 10, 8)
    assert CAL.add_working_days(date(2026, 9, 30), 3) == date(2026, 10, 10)  # 8, 9, Sat 10
    assert CAL.add_working_days(date(2026, 9, 30), 4) == date(2026, 10, 12)
    assert CAL.add_working_days(date(2026, 9, 30), 0) == date(2026, 9, 30)


def test_add_working_days_across_spring_festival():
    # Fri Feb 13 -> Sat Feb 14 (make-up) -> Feb 15-23 off -> Tue Feb 24
    assert CAL.add_working_days(date(2026, 2, 13), 1) == date(2026, 2, 14)
    assert CAL.add_working_days(date(2026, 2, 13), 2) == date(2026, 2, 24)


def test_previous_and_between():
    assert CAL.previous_working_day(date(2026, 10, 8)) == date(2026, 9, 30)
    assert CAL.previous_working_day(date(2026, 9, 30), 3) == date(2026, 9, 24)  # 29, 28, (25-27 off), 24
    assert CAL.last_working_day_on_or_before(date(2026, 10, 5)) == date(2026, 9, 30)
    assert CAL.last_working_day_on_or_before(date(2026, 10, 9)) == date(2026, 10, 9)
    assert CAL.working_days_between(date(2026, 9, 30), date(2026, 10, 9)) == 2
    assert CAL.working_days_between(date(2026, 10, 9), date(2026, 9, 30)) == 0
    with pytest.raises(ValueError):
        CAL.add_working_days(date(2026, 1, 5), -1)


def test_datetime_is_read_in_shanghai():
    # 2026-09-30T17:00Z is 2026-10-01 01:00 in Shanghai: a holiday
    assert not CAL.is_working_day(datetime(2026, 9, 30, 17, 0, tzinfo=UTC))
    assert CAL.is_working_day(datetime(2026, 9, 30, 15, 0, tzinfo=UTC))


def test_naive_datetimes_are_rejected():
    with pytest.raises(ValueError, match="naive"):
        CAL.is_working_day(datetime(2026, 10, 8, 10, 0))
    with pytest.raises(ValueError):
        CAL.end_of_business_day(datetime(2026, 10, 8, 10, 0))


def test_end_of_business_day():
    assert CAL.end_of_business_day(sh(2026, 10, 9, 10, 0)) == sh(2026, 10, 9, 17, 30)
    assert CAL.end_of_business_day(sh(2026, 10, 9, 18, 0)) == sh(2026, 10, 10, 17, 30)  # make-up Saturday
    assert CAL.end_of_business_day(sh(2026, 10, 3, 9, 0)) == sh(2026, 10, 8, 17, 30)  # holiday
    assert CAL.end_of_business_day(sh(2026, 10, 9, 10, 0), 1) == sh(2026, 10, 10, 17, 30)
    out = CAL.end_of_business_day(datetime(2026, 10, 9, 1, 0, tzinfo=UTC))
    assert out.tzinfo == SHANGHAI and out.utcoffset() == timedelta(hours=8)


@pytest.mark.parametrize("day", [date(2027, 1, 4), date(2003, 6, 2)])
def test_without_a_provisional_rule_an_unpublished_year_raises_naming_it(day):
    with pytest.raises(CalendarYearUnknown, match=str(day.year)) as info:
        CAL.is_working_day(day)
    assert info.value.year == day.year


def test_declared_year_in_data():
    cal = BusinessCalendar(
        code="X",
        years={2027: DeclaredYear(holidays=frozenset({date(2027, 1, 1)}), working_days=frozenset({date(2027, 1, 9)}))},
    )
    assert 2027 in cal.known_years
    assert not cal.is_working_day(date(2027, 1, 1))  # Friday, declared holiday
    assert cal.is_working_day(date(2027, 1, 4))  # Monday
    assert cal.is_working_day(date(2027, 1, 9))  # Saturday, declared working day
    assert not cal.is_working_day(date(2027, 1, 10))  # Sunday
    with pytest.raises(CalendarYearUnknown, match="2028"):
        cal.is_working_day(date(2028, 1, 3))


def test_single_extra_date_does_not_make_a_year_known():
    cal = BusinessCalendar(extra_holidays=frozenset({date(2027, 5, 3)}))
    with pytest.raises(CalendarYearUnknown):
        cal.is_working_day(date(2027, 5, 4))


def test_shipped_calendars():
    book = load_calendars()
    assert book.for_institution("BANKA").business_end == time(17, 30)
    assert book.for_institution("INSA").business_end == time(17, 0)
    assert book.for_institution("NOBODY") is book.default
    assert book.for_institution(None) is book.default
    assert book.for_institution("INSA").end_of_business_day(sh(2026, 10, 9, 17, 10)) == sh(2026, 10, 10, 17, 0)


def test_institution_overrides_from_data(tmp_path):
    path = tmp_path / "calendars.yaml"
    path.write_text(
        """
timezone: Asia/Shanghai
default:
  business_hours: {start: "09:00", end: "17:30"}
  extra_holidays: [2026-06-01]
institutions:
  LOCAL:
    business_hours: {end: "16:00"}
    extra_holidays: [2026-10-09]
    extra_working_days: [2026-10-11, 2026-06-01]
    years:
      2027:
        holidays: [2027-01-01]
        working_days: []
""",
        encoding="utf-8",
    )
    book = load_calendars(path)
    local, default = book.for_institution("LOCAL"), book.default
    assert not default.is_working_day(date(2026, 6, 1))  # Monday, default extra holiday
    assert local.is_working_day(date(2026, 6, 1))  # the institution's own list wins
    assert not local.is_working_day(date(2026, 10, 9))  # Friday made a holiday
    assert local.is_working_day(date(2026, 10, 11))  # Sunday made a working day
    assert local.business_end == time(16, 0) and local.business_start == time(9, 0)
    assert local.add_working_days(date(2026, 9, 30), 2) == date(2026, 10, 10)  # 8, (9 off), Sat 10
    assert not local.is_working_day(date(2027, 1, 1))
    with pytest.raises(CalendarYearUnknown):
        default.is_working_day(date(2027, 1, 4))


def test_conflicting_dates_rejected():
    with pytest.raises(ValueError):
        BusinessCalendar(extra_holidays=frozenset({date(2026, 1, 5)}), extra_working_days=frozenset({date(2026, 1, 5)}))


# -- years not published yet: the provisional calendar --------------------------------------

SHIPPED = load_calendars().for_institution("BANKA")
RULE = SHIPPED.provisional


def test_statutory_holidays_of_2027_from_the_lunar_calendar():
    assert RULE.since == 2025
    assert dict(RULE.holidays_of(2027)) == {
        date(2027, 1, 1): "new_years_day",
        # Spring Festival eve (Thu Feb 5) and the first three days of the first lunar month
        date(2027, 2, 5): "spring_festival", date(2027, 2, 6): "spring_festival",
        date(2027, 2, 7): "spring_festival", date(2027, 2, 8): "spring_festival",
        date(2027, 4, 5): "tomb_sweeping_day",
        date(2027, 5, 1): "labour_day", date(2027, 5, 2): "labour_day",
        date(2027, 6, 9): "dragon_boat_festival",
        date(2027, 9, 15): "mid_autumn_festival",
        date(2027, 10, 1): "national_day", date(2027, 10, 2): "national_day", date(2027, 10, 3): "national_day",
    }


@pytest.mark.parametrize("year", [2025, 2026])
def test_the_provisional_rule_finds_every_statutory_day_of_a_published_year(year):
    """Computed for a year the State Council published, each statutory day is one of its
    holidays, under the same name; the published year differs only by bridging days off and
    make-up weekend days worked, which the provisional calendar does not guess."""
    statutory = RULE.holidays_of(year)
    assert len(statutory) == 13
    for day, name in statutory.items():
        assert chinese_calendar.holidays.get(day) == chinese_calendar.Holiday[name].value, (day, name)
    day = date(year, 1, 1)
    while day.year == year:
        provisional = day.weekday() < 5 and day not in statutory
        if provisional and not chinese_calendar.is_workday(day):
            assert day in chinese_calendar.holidays  # a bridging day
        if not provisional and chinese_calendar.is_workday(day):
            assert day.weekday() >= 5 and day in chinese_calendar.workdays  # a make-up working day
        day += timedelta(days=1)


def test_an_unpublished_year_counts_on_the_provisional_calendar():
    assert SHIPPED.is_provisional(2027) and not SHIPPED.is_provisional(2026)
    assert not SHIPPED.is_working_day(date(2027, 2, 5))  # Spring Festival eve, a Friday
    assert not SHIPPED.is_working_day(date(2027, 2, 8))  # the third day, a Monday
    assert SHIPPED.is_working_day(date(2027, 2, 9))
    assert not SHIPPED.is_working_day(date(2027, 2, 13))  # a Saturday: no make-up day is guessed
    assert SHIPPED.provisional_years(date(2026, 12, 20), date(2028, 1, 5)) == (2027, 2028)
    assert SHIPPED.provisional_years(date(2026, 1, 5), date(2026, 12, 31)) == ()
    # Before the regulations of the provisional rule, nothing is counted.
    with pytest.raises(CalendarYearUnknown, match="2003"):
        SHIPPED.is_working_day(date(2003, 6, 2))
    assert SHIPPED.provisional_years(date(2003, 6, 2), date(2003, 7, 2)) == ()


def test_a_declared_year_is_no_longer_provisional(tmp_path):
    path = tmp_path / "calendars.yaml"
    shipped = (Path(__file__).parents[2] / "services/common/policy/data/calendars.yaml").read_text(encoding="utf-8")
    path.write_text(shipped.replace("  years: {}", """  years:
    2027:
      holidays: [2027-01-01, 2027-02-05, 2027-02-08, 2027-02-09, 2027-02-10, 2027-02-11]
      working_days: [2027-02-13]"""), encoding="utf-8")
    banka = load_calendars(path).for_institution("BANKA")
    assert not banka.is_provisional(2027) and banka.provisional_years(date(2027, 1, 1), date(2027, 12, 31)) == ()
    assert not banka.is_working_day(date(2027, 2, 9)) and banka.is_working_day(date(2027, 2, 13))
    assert banka.is_provisional(2028)


@pytest.mark.parametrize("raw", [
    {"since": 2025, "holidays": [{"name": "x", "solar_term": "清名"}]},
    {"since": 2025, "holidays": [{"name": "x", "gregorian": "01-01", "lunar": "01-01"}]},
    {"since": 2025, "holidays": [{"name": "x", "gregorian": "02-30"}]},
    {"since": 2025, "holidays": [{"gregorian": "01-01"}]},
    {"since": 2025, "holidays": []},
])
def test_a_broken_provisional_rule_is_refused_at_load(raw):
    with pytest.raises(ValueError):
        provisional_rule_from_data(raw)
