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

A year is *published* when the package covers it or the calendar declares it under
``years``. A year not published yet, from the first year of the current national holiday
regulations on (``provisional.since``), is counted on a *provisional* calendar
(:class:`ProvisionalRule`, data in calendars.yaml): the statutory holidays of those
regulations, computed for the year, and weekends otherwise. Bridging days and make-up
working days are only known when the State Council publishes the year, and are not guessed:
whoever counts on a provisional year says so (``provisional_years``), and counts again when
the year is declared. Any other year (before the regulations, or beyond what the lunar
calendar computes) raises :class:`CalendarYearUnknown` naming the year. Single extra dates do
not make their year published (a year needs its whole holiday list).

Times: every datetime argument must be timezone-aware (``ValueError`` otherwise); every
datetime returned is aware, in Asia/Shanghai.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from functools import lru_cache
from pathlib import Path
from types import MappingProxyType
from typing import Any
from zoneinfo import ZoneInfo

import chinese_calendar
import yaml

# tyme4py computes the lunar calendar and the solar terms (Qingming is one) for any year, in
# pure Python, and is kept up by the author of lunar-python as its successor; lunardate
# knows no solar terms.
from tyme4py.lunar import LunarDay
from tyme4py.solar import SolarDay, SolarTerm

from services.common.policy.errors import NoDueDate

SHANGHAI = ZoneInfo("Asia/Shanghai")
DEFAULT_CALENDARS_PATH = Path(__file__).with_name("data") / "calendars.yaml"

_PACKAGE_YEARS = frozenset(d.year for d in chinese_calendar.holidays) | frozenset(
    d.year for d in chinese_calendar.workdays
)


class CalendarYearUnknown(NoDueDate):
    """The calendar cannot count ``year``: not published, and no provisional rule covers it."""

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


def _solar_date(day: SolarDay) -> date:
    return date(day.get_year(), day.get_month(), day.get_day())


def _month_day(value: Any) -> tuple[int, int]:
    month, day = (int(part) for part in str(value).split("-"))
    return month, day


def _gregorian_anchor(year: int, value: Any) -> date:
    return date(year, *_month_day(value))


def _lunar_anchor(year: int, value: Any) -> date:
    """A day of the (non-leap) lunar month ``MM-DD`` of the lunar year that begins in ``year``."""
    return _solar_date(LunarDay.from_ymd(year, *_month_day(value)).get_solar_day())


def _solar_term_anchor(year: int, value: Any) -> date:
    return _solar_date(SolarTerm.from_name(year, str(value)).get_solar_day())


# How a statutory holiday is placed in a year: a Gregorian date, a lunar date, a solar term.
ANCHORS: Mapping[str, Callable[[int, Any], date]] = MappingProxyType({
    "gregorian": _gregorian_anchor,
    "lunar": _lunar_anchor,
    "solar_term": _solar_term_anchor,
})


@dataclass(frozen=True)
class StatutoryHoliday:
    """One holiday of the national regulations: ``offsets`` days around an anchor day."""

    name: str
    anchor: str
    value: str
    offsets: tuple[int, ...] = (0,)

    def days(self, year: int) -> list[date]:
        first = ANCHORS[self.anchor](year, self.value)
        return [first + timedelta(days=offset) for offset in self.offsets]


@dataclass(frozen=True)
class ProvisionalRule:
    """How a year not published yet is counted: the statutory holidays, weekends otherwise,
    for every year from ``since`` (the first year of the regulations the holidays are from)."""

    since: int
    holidays: tuple[StatutoryHoliday, ...]
    source: str = ""

    def covers(self, year: int) -> bool:
        return self.since <= year < 9999

    def holidays_of(self, year: int) -> Mapping[date, str]:
        """The statutory holidays of ``year``: date -> holiday name."""
        return _statutory_days(self, year)


@lru_cache(maxsize=256)
def _statutory_days(rule: ProvisionalRule, year: int) -> Mapping[date, str]:
    if not rule.covers(year):
        raise CalendarYearUnknown(year)
    days: dict[date, str] = {}
    try:
        for holiday in rule.holidays:
            for day in holiday.days(year):
                days[day] = holiday.name
    except ValueError as exc:  # beyond what the lunar calendar computes
        raise CalendarYearUnknown(year) from exc
    stray = sorted(d for d in days if d.year != year)
    if stray:
        raise ValueError(f"provisional calendar {year}: holidays fall in another year {stray}")
    return MappingProxyType(days)


def provisional_rule_from_data(raw: Mapping[str, Any] | None) -> ProvisionalRule | None:
    """The ``provisional`` section of calendars.yaml (None when there is none: no year is
    counted that is not published)."""
    if not raw:
        return None
    holidays = []
    for i, entry in enumerate(raw.get("holidays") or ()):
        where = f"provisional.holidays[{i}]"
        anchors = [key for key in ANCHORS if key in entry]
        if not entry.get("name") or len(anchors) != 1:
            raise ValueError(f"{where}: needs a name and exactly one of {sorted(ANCHORS)}, got {entry!r}")
        offsets = tuple(int(o) for o in entry.get("offsets", (0,)))
        holidays.append(StatutoryHoliday(str(entry["name"]), anchors[0], str(entry[anchors[0]]), offsets))
    if not holidays:
        raise ValueError("provisional: no holidays")
    rule = ProvisionalRule(since=int(raw["since"]), holidays=tuple(holidays), source=str(raw.get("source", "")))
    for holiday in rule.holidays:
        try:
            holiday.days(rule.since)  # a misspelt solar term or an impossible date fails at load
        except ValueError as exc:
            raise ValueError(f"provisional holiday {holiday.name!r}: {exc}") from exc
    return rule


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
    provisional: ProvisionalRule | None = None

    def __post_init__(self) -> None:
        both = self.extra_holidays & self.extra_working_days
        if both:
            raise ValueError(f"calendar {self.code!r}: dates both holiday and working day: {sorted(both)}")
        if self.business_start >= self.business_end:
            raise ValueError(f"calendar {self.code!r}: business hours end before they start")

    # -- queries -------------------------------------------------------------------------

    @property
    def known_years(self) -> frozenset[int]:
        """Years published: the package's and those declared in data."""
        return _PACKAGE_YEARS | frozenset(self.years)

    def is_provisional(self, year: int) -> bool:
        """Whether ``year`` is counted on the provisional calendar (not published yet)."""
        return year not in self.known_years and self.provisional is not None and self.provisional.covers(year)

    def provisional_years(self, start: date | datetime, end: date | datetime) -> tuple[int, ...]:
        """The provisional years among those from ``start``'s to ``end``'s."""
        return tuple(y for y in range(_as_date(start).year, _as_date(end).year + 1) if self.is_provisional(y))

    def is_working_day(self, day: date | datetime) -> bool:
        """Whether ``day`` (a date, or an aware datetime read in Asia/Shanghai) is a working day.

        Raises :class:`CalendarYearUnknown` for a year neither published nor provisional.
        """
        d = _as_date(day)
        declared = self.years.get(d.year)
        published = declared is not None or d.year in _PACKAGE_YEARS
        if not published and not self.is_provisional(d.year):
            raise CalendarYearUnknown(d.year, self.code)
        if d in self.extra_holidays:
            return False
        if d in self.extra_working_days:
            return True
        if declared is not None:
            if d in declared.working_days:
                return True
            return d.weekday() < 5 and d not in declared.holidays
        if published:
            return chinese_calendar.is_workday(d)
        return d.weekday() < 5 and d not in self.provisional.holidays_of(d.year)

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


def calendar_from_data(code: str, data: Mapping[str, Any], base: BusinessCalendar | None = None,
                       provisional: ProvisionalRule | None = None) -> BusinessCalendar:
    """A calendar from one entry of calendars.yaml, layered on ``base`` (the default); the
    provisional rule is ``provisional``, else the base's."""
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
        provisional=provisional or (base.provisional if base else None),
    )


def load_calendars(path: str | Path | None = None) -> CalendarBook:
    """Read calendars.yaml (default: the shipped ``data/calendars.yaml``)."""
    raw = yaml.safe_load(Path(path or DEFAULT_CALENDARS_PATH).read_text(encoding="utf-8")) or {}
    zone = raw.get("timezone", "Asia/Shanghai")
    if zone != "Asia/Shanghai":
        raise ValueError(f"calendars are in Asia/Shanghai, not {zone!r}")
    default = calendar_from_data("default", raw.get("default") or {},
                                 provisional=provisional_rule_from_data(raw.get("provisional")))
    institutions = {
        str(code): calendar_from_data(str(code), body or {}, base=default)
        for code, body in (raw.get("institutions") or {}).items()
    }
    return CalendarBook(default=default, institutions=institutions)
