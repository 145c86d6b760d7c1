"""Business calendars: which days are working days, and when the business day ends.

A :class:`BusinessCalendar` answers for one institution. The base is the State Council's
calendar as shipped by the ``chinese_calendar`` package (public holidays are not working
days; the make-up weekend working days, 调休, are), for the years that package knows.
Data (``data/calendars.yaml``) may add, per institution:

- ``extra_holidays`` / ``extra_working_days``: single dates that override the base;
- ``years``: whole years declared in data (``{2027: {holidays: [...], working_days: [...]}}``).
  In a declared year a day is a working day when it is listed in ``working_days``, or it is
  Monday to Friday and not listed in ``holidays``. A declared year replaces the package's
  data for that year.
- ``business_hours``: ``{start: "09:00", end: "17:30"}``; the end is used by the
  ``end_of_business_day`` limit.

A year is *known* when the package covers it or the calendar declares it under ``years``.
Asking about any other year raises :class:`CalendarYearUnknown` naming the year: the
calendar never guesses. Single extra dates do not make their year known (a year needs its
whole holiday list).

Times: every datetime argument must be timezone-aware (``ValueError`` otherwise); every
datetime returned is aware, in Asia/Shanghai.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import chinese_calendar
import yaml

SHANGHAI = ZoneInfo("Asia/Shanghai")
DEFAULT_CALENDARS_PATH = Path(__file__).with_name("data") / "calendars.yaml"

_PACKAGE_YEARS = frozenset(d.year for d in chinese_calendar.holidays) | frozenset(
    d.year for d in chinese_calendar.workdays
)


class CalendarYearUnknown(LookupError):
    """The calendar has no data for ``year`` (neither the package nor the data declares it)."""

    def __init__(self, year: int, calendar: str = "default"):
        self.year = year
        self.calendar = calendar
        super().__init__(
            f"no working-day calendar for year {year} (calendar {calendar!r}); "
            f"declare the year under 'years:' in calendars.yaml"
        )


def to_shanghai(moment: datetime) -> datetime:
    """The same instant in Asia/Shanghai; a naive datetime raises ValueError."""
    if not isinstance(moment, datetime):
        raise TypeError(f"expected a datetime, got {type(moment).__name__}")
    if moment.tzinfo is None or moment.tzinfo.utcoffset(moment) is None:
        raise ValueError(f"naive datetime {moment.isoformat()}: times must be timezone-aware")
    return moment.astimezone(SHANGHAI)


def end_of_day(day: date) -> datetime:
    """The last second of ``day`` in Asia/Shanghai (23:59:59), the convention for day limits."""
    return datetime.combine(day, time(23, 59, 59), tzinfo=SHANGHAI)


def _as_date(value: Any) -> date:
    if isinstance(value, datetime):
        return to_shanghai(value).date()
    if isinstance(value, date):
        return value
    if isinstance(value, str):
        return date.fromisoformat(value)
    raise TypeError(f"expected a date, got {value!r}")


def _as_time(value: Any) -> time:
    if isinstance(value, time):
        return value
    if isinstance(value, int):  # YAML 1.1 reads 17:30 unquoted as sexagesimal minutes
        return time(value // 60, value % 60)
    return time.fromisoformat(str(value))


@dataclass(frozen=True)
class DeclaredYear:
    """A whole year of calendar data declared in data rather than taken from the package."""

    holidays: frozenset[date] = frozenset()
    working_days: frozenset[date] = frozenset()


@dataclass(frozen=True)
class BusinessCalendar:
    """Working days and business hours of one institution (see the module docstring)."""

    code: str = "default"
    extra_holidays: frozenset[date] = frozenset()
    extra_working_days: frozenset[date] = frozenset()
    years: Mapping[int, DeclaredYear] = field(default_factory=dict)
    business_start: time = time(9, 0)
    business_end: time = time(17, 30)

    def __post_init__(self) -> None:
        both = self.extra_holidays & self.extra_working_days
        if both:
            raise ValueError(f"calendar {self.code!r}: dates both holiday and working day: {sorted(both)}")
        if self.business_start >= self.business_end:
            raise ValueError(f"calendar {self.code!r}: business hours end before they start")

    # -- queries -------------------------------------------------------------------------

    @property
    def known_years(self) -> frozenset[int]:
        """Years this calendar can answer for."""
        return _PACKAGE_YEARS | frozenset(self.years)

    def is_working_day(self, day: date | datetime) -> bool:
        """Whether ``day`` (a date, or an aware datetime read in Asia/Shanghai) is a working day.

        Raises :class:`CalendarYearUnknown` for a year the calendar does not know.
        """
        d = _as_date(day)
        declared = self.years.get(d.year)
        if declared is None and d.year not in _PACKAGE_YEARS:
            raise CalendarYearUnknown(d.year, self.code)
        if d in self.extra_holidays:
            return False
        if d in self.extra_working_days:
            return True
        if declared is not None:
            if d in declared.working_days:
                return True
            return d.weekday() < 5 and d not in declared.holidays
        return chinese_calendar.is_workday(d)

    def add_working_days(self, day: date, n: int) -> date:
        """The ``n``-th working day after ``day`` (``n`` >= 0; ``n == 0`` returns ``day``)."""
        if n < 0:
            raise ValueError("n must be >= 0; use previous_working_day to go back")
        d = _as_date(day)
        while n:
            d += timedelta(days=1)
            if self.is_working_day(d):
                n -= 1
        return d

    def previous_working_day(self, day: date, n: int = 1) -> date:
        """The ``n``-th working day before ``day`` (``n`` >= 1)."""
        if n < 1:
            raise ValueError("n must be >= 1")
        d = _as_date(day)
        while n:
            d -= timedelta(days=1)
            if self.is_working_day(d):
                n -= 1
        return d

    def last_working_day_on_or_before(self, day: date) -> date:
        """``day`` itself if it is a working day, else the working day before it."""
        d = _as_date(day)
        return d if self.is_working_day(d) else self.previous_working_day(d)

    def working_days_between(self, start: date, end: date) -> int:
        """How many working days lie in the half-open range (start, end]; 0 if end <= start."""
        s, e = _as_date(start), _as_date(end)
        count = 0
        d = s + timedelta(days=1)
        while d <= e:
            if self.is_working_day(d):
                count += 1
            d += timedelta(days=1)
        return count

    def end_of_business(self, day: date) -> datetime:
        """When the business day ``day`` ends (``business_end`` on that date, Asia/Shanghai)."""
        return datetime.combine(_as_date(day), self.business_end, tzinfo=SHANGHAI)

    def end_of_business_day(self, moment: datetime, extra_working_days: int = 0) -> datetime:
        """The end of the business day on which something received at ``moment`` must be done.

        That is the business end of ``moment``'s date if that date is a working day and
        ``moment`` is before its business end; otherwise the business end of the next working
        day. ``extra_working_days`` moves it that many working days further.
        """
        local = to_shanghai(moment)
        d = local.date()
        if not (self.is_working_day(d) and local < self.end_of_business(d)):
            d = self.add_working_days(d, 1)
        return self.end_of_business(self.add_working_days(d, extra_working_days))


@dataclass(frozen=True)
class CalendarBook:
    """The calendars of every institution; an institution without its own gets ``default``."""

    default: BusinessCalendar
    institutions: Mapping[str, BusinessCalendar] = field(default_factory=dict)

    def for_institution(self, institution: str | None) -> BusinessCalendar:
        """The calendar of ``institution``, or the default one."""
        if institution is None:
            return self.default
        return self.institutions.get(institution, self.default)


def _dates(values: Iterable[Any] | None) -> frozenset[date]:
    return frozenset(_as_date(v) for v in (values or ()))


def _declared_years(raw: Mapping[Any, Any] | None, code: str) -> dict[int, DeclaredYear]:
    years: dict[int, DeclaredYear] = {}
    for key, body in (raw or {}).items():
        year = int(key)
        body = body or {}
        hol, work = _dates(body.get("holidays")), _dates(body.get("working_days"))
        stray = sorted(d for d in hol | work if d.year != year)
        if stray:
            raise ValueError(f"calendar {code!r}, year {year}: dates from another year {stray}")
        years[year] = DeclaredYear(holidays=hol, working_days=work)
    return years


def calendar_from_data(code: str, data: Mapping[str, Any], base: BusinessCalendar | None = None) -> BusinessCalendar:
    """A calendar from one entry of calendars.yaml, layered on ``base`` (the default)."""
    data = data or {}
    hours = data.get("business_hours") or {}
    years = dict(base.years) if base else {}
    years.update(_declared_years(data.get("years"), code))
    hol = (base.extra_holidays if base else frozenset()) | _dates(data.get("extra_holidays"))
    work = (base.extra_working_days if base else frozenset()) | _dates(data.get("extra_working_days"))
    # An institution's own list wins over the default's for the same date.
    own_hol, own_work = _dates(data.get("extra_holidays")), _dates(data.get("extra_working_days"))
    hol, work = hol - own_work, work - own_hol
    return BusinessCalendar(
        code=code,
        extra_holidays=hol,
        extra_working_days=work,
        years=years,
        business_start=_as_time(hours["start"]) if "start" in hours else (base.business_start if base else time(9, 0)),
        business_end=_as_time(hours["end"]) if "end" in hours else (base.business_end if base else time(17, 30)),
    )


def load_calendars(path: str | Path | None = None) -> CalendarBook:
    """Read calendars.yaml (default: the shipped ``data/calendars.yaml``)."""
    raw = yaml.safe_load(Path(path or DEFAULT_CALENDARS_PATH).read_text(encoding="utf-8")) or {}
    zone = raw.get("timezone", "Asia/Shanghai")
    if zone != "Asia/Shanghai":
        raise ValueError(f"calendars are in Asia/Shanghai, not {zone!r}")
    default = calendar_from_data("default", raw.get("default") or {})
    institutions = {
        str(code): calendar_from_data(str(code), body or {}, base=default)
        for code, body in (raw.get("institutions") or {}).items()
    }
    return CalendarBook(default=default, institutions=institutions)
