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

See ``engine`` for the due-date conventions and ``calendar`` for working days.
"""

from services.common.policy.calendar import (
    SHANGHAI,
    BusinessCalendar,
    CalendarBook,
    CalendarYearUnknown,
    DeclaredYear,
    calendar_from_data,
    end_of_day,
    load_calendars,
    to_shanghai,
)
from services.common.policy.engine import (
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

__all__ = [
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
    "Policy",
    "PolicyBook",
    "PolicyError",
    "ReviewWindowClosed",
    "SelectionRule",
    "UnknownClock",
    "UnknownPolicy",
    "WarningOffset",
    "calendar_from_data",
    "end_of_day",
    "load_calendars",
    "load_policies",
    "policies_from_data",
    "to_shanghai",
]
