"""Time in one place: the platform's clock zone is Asia/Shanghai, every stored time is aware."""
from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

SHANGHAI = ZoneInfo("Asia/Shanghai")
# A lower bound for "due before now" range queries: with both bounds, the store walks only
# the due part of the index (SecantusDB scans the whole index for a bare $lte).
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
# The years of the times the platform reads from text (query bounds, cursors, events), as
# written (in the time's own offset). Far enough from year 1 and 9999 that no conversion to
# another offset, and no day added, leaves the calendar (an OverflowError, not an answer).
YEARS = range(1900, 3000)
YEAR_PATTERN = "^(19|2[0-9])[0-9]{2}-"


def now() -> datetime:
    return datetime.now(SHANGHAI)


def local(moment: datetime) -> datetime:
    """The same instant in Asia/Shanghai; MongoDB returns naive UTC, which is read as UTC."""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(SHANGHAI)


def iso(moment: datetime | None) -> str | None:
    """ISO 8601 with the +08:00 offset, as the contracts write times."""
    return None if moment is None else local(moment).isoformat()


def parse(text: str) -> datetime:
    """An ISO 8601 (RFC 3339) time that must carry an offset (the contracts require one),
    written with a year of ``YEARS``; ValueError otherwise."""
    moment = datetime.fromisoformat(text.upper())  # RFC 3339 allows "t" and "z"
    if moment.tzinfo is None:
        raise ValueError("time must carry an offset, e.g. 2026-11-22T09:30:00+08:00")
    return _in_years(moment)


def parse_bound(text: str, upper: bool = False) -> datetime:
    """A range bound given as a time with offset, or as a date (a whole day in Shanghai):
    as a lower bound the day's start, as an upper bound the next day's start."""
    if len(text) == 10:
        day = _in_years(date.fromisoformat(text)) + timedelta(days=1 if upper else 0)
        return datetime.combine(day, time(0), SHANGHAI)
    return parse(text)


def _in_years(moment):
    if moment.year not in YEARS:
        raise ValueError(f"the year must be from {YEARS.start} to {YEARS.stop - 1}")
    return moment
