"""Calendar and policy files of a test, written beside it and named in its settings: the
services read them as they read the shipped ones, and reload them when a recompute starts."""
from __future__ import annotations

from datetime import date
from pathlib import Path

import yaml

from services.common.policy import load_calendars
from services.common.policy.calendar import DEFAULT_CALENDARS_PATH
from services.common.policy.engine import DEFAULT_POLICIES_PATH

SHIPPED = load_calendars()


def first_unpublished_year() -> int:
    """The first year the State Council has not published (as the shipped data knows it):
    2027 as of chinesecalendar 1.11.0. Tests counting on a provisional year use it."""
    return min(year for year in range(2025, 2200) if SHIPPED.default.is_provisional(year))


def first_working_day(year: int) -> date:
    """The first working day of ``year`` on the provisional calendar, after New Year's Day."""
    return SHIPPED.default.add_working_days(date(year, 1, 1), 1)


def write_calendars(path: Path | str, declared: dict[int, dict] | None = None) -> Path:
    """The shipped calendars with ``declared`` years under the default's ``years``."""
    raw = yaml.safe_load(DEFAULT_CALENDARS_PATH.read_text(encoding="utf-8"))
    raw["default"]["years"] = {year: {key: [d.isoformat() for d in days] for key, days in body.items()}
                               for year, body in (declared or {}).items()}
    path = Path(path)
    path.write_text(yaml.safe_dump(raw, allow_unicode=True), encoding="utf-8")
    return path


def declare_year(path: Path | str, year: int, also_off: list[date]) -> Path:
    """``year`` published: its statutory holidays and the days in ``also_off`` (bridging days)."""
    holidays = sorted({*SHIPPED.default.provisional.holidays_of(year), *also_off})
    return write_calendars(path, {year: {"holidays": holidays, "working_days": []}})


def write_policies(path: Path | str, selection: list[dict]) -> Path:
    """The shipped policies chosen by ``selection`` instead of the shipped rules."""
    raw = yaml.safe_load(DEFAULT_POLICIES_PATH.read_text(encoding="utf-8"))
    raw["selection"] = selection
    path = Path(path)
    path.write_text(yaml.safe_dump(raw, allow_unicode=True), encoding="utf-8")
    return path
