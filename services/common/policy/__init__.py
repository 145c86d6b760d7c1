"""The SLA policy engine shared by intake (``due_by`` on receipt) and sla (the clocks).

Pure Python: policies and calendars are data (``data/policies.yaml``,
``data/calendars.yaml``) read at load time; no broker, no database, no ``datetime.now()``.

    book = load_policies()
    calendars = load_calendars()
    policy = book.select("BANKA", "complaint", "phone")          # cbirc-2020
    clock = policy.clock("decision")
    due = clock.due_by(received_at, calendar=calendars.for_institution("BANKA"))
    clock.warning_points(due, calendar)                            # [(label, when), ...]
    clock.extend(15, 15, {"supervisor"})                          # -> 30, or ExtensionRefused
    clock.provisional_years(received_at, due, calendar)             # (2027,): counted provisionally

See ``engine`` for the due-date conventions and ``calendar`` for working days and the
provisional calendar of years not published yet. Every "no due date can be computed" error
(a calendar year, a policy, a clock the data lacks) is a ``NoDueDate``.
"""

from functools import partial

from services.common.policy.calendar import (
    SHANGHAI,
    BusinessCalendar,
    CalendarBook,
    CalendarYearUnknown,
    DeclaredYear,
    ProvisionalRule,
    StatutoryHoliday,
    calendar_from_data,
    end_of_day,
    load_calendars,
    provisional_rule_from_data,
    to_shanghai,
)
from services.common.policy.engine import (
    CALENDAR_LIMIT_UNITS,
    KINDS,
    LIMIT_UNITS,
    ClockRule,
    ExtensionRefused,
    ExtensionStep,
    Limit,
    Policy,
    PolicyBook,
    PolicyError,
    ReviewWindowClosed,
    SelectionRule,
    UnknownClock,
    UnknownPolicy,
    WarningOffset,
    load_policies,
    policies_from_data,
)
from services.common.policy.errors import NoDueDate


def book_loaders(settings) -> dict:
    """How a service loads its policies and calendars: from the files its settings name
    (``policies_path``, ``calendars_path``), else the shipped data. Keyword arguments of
    the domains that count due dates."""
    return {
        "load_policy_book": partial(load_policies, settings.policies_path),
        "load_calendar_book": partial(load_calendars, settings.calendars_path),
    }


__all__ = [
    "CALENDAR_LIMIT_UNITS",
    "KINDS",
    "LIMIT_UNITS",
    "SHANGHAI",
    "BusinessCalendar",
    "CalendarBook",
    "CalendarYearUnknown",
    "ClockRule",
    "DeclaredYear",
    "ExtensionRefused",
    "ExtensionStep",
    "Limit",
    "NoDueDate",
    "Policy",
    "PolicyBook",
    "PolicyError",
    "ProvisionalRule",
    "ReviewWindowClosed",
    "SelectionRule",
    "StatutoryHoliday",
    "UnknownClock",
    "UnknownPolicy",
    "WarningOffset",
    "book_loaders",
    "calendar_from_data",
    "end_of_day",
    "load_calendars",
    "load_policies",
    "policies_from_data",
    "provisional_rule_from_data",
    "to_shanghai",
]
