"""A clock's schedule, from the shared policy engine: its due date, its points (the warnings
and the breach) with their fired marks, the next one to fire, whether the due date was
counted on a calendar year not published yet (``provisional``), and why none could be
computed (``calendar_error``).

Pure: no store, no broker, no clock of its own. The clock store (``clocks``) and the
recompute job (``rescheduling``) call :func:`compute` with the clock's rule, its calendar
and ``now``, and store what it returns.
"""
from __future__ import annotations

import logging
import uuid
from datetime import datetime, timedelta

from services.common import timeutil
from services.common.policy import CALENDAR_LIMIT_UNITS, BusinessCalendar, CalendarYearUnknown, ClockRule

log = logging.getLogger(__name__)

BREACH = "breach"
# In time means at or before due_by: the breach is the first instant after it (BSON dates
# keep milliseconds).
BREACH_AFTER = timedelta(milliseconds=1)
POINT_NAMESPACE = uuid.UUID("6f1c1a52-4f0e-4d53-9d0b-5a1c0c5e2b11")


def point_event_id(doc: dict, label: str) -> str:
    """The event id of a point: the same for the same (clock, generation, label), so a point
    staged twice collides on the outbox's ``_id``."""
    return str(uuid.uuid5(POINT_NAMESPACE, f"{doc['_id']}/{doc.get('generation', 0)}/{label}"))


def calendar_bound(rule: ClockRule) -> bool:
    """Whether a calendar change can move this clock's due date or its warnings."""
    return rule.limit.unit in CALENDAR_LIMIT_UNITS or any(w.unit == "working_days" for w in rule.warnings)


def _local(moment):
    return None if moment is None else timeutil.local(moment)


def pauses(doc: dict) -> list[tuple]:
    return [(_local(p["start"]), _local(p.get("end"))) for p in doc.get("pauses", [])]


def compute(doc: dict, rule: ClockRule, calendar: BusinessCalendar, now: datetime, *, rearm: bool = False) -> dict:
    """The fields a clock's due date determines: due_by, points, next_fire_at, next_label,
    calendar_error, provisional.

    A point already fired keeps its fired mark unless ``rearm`` (the limit was set anew)
    and its new moment lies in the future. A running clock fires its earliest unfired
    point; a paused or ended one fires nothing."""
    started = _local(doc["started_at"])
    fired = {p["label"]: p.get("fired_at") for p in doc.get("points", []) if p.get("fired_at")}
    error = None
    try:
        due = rule.due_by(started, calendar=calendar, paused=pauses(doc), extended_to=doc["total"])
    except CalendarYearUnknown as exc:
        due, error = None, str(exc)
    points = []
    if due is None:
        # Paused (or no calendar can count the year): nothing fires; the points keep their
        # fired marks for when the due date is known again.
        points = [dict(p) for p in doc.get("points", [])]
    else:
        try:
            warnings = rule.warning_points(due, calendar, not_before=started)
        except CalendarYearUnknown as exc:
            # The breach still fires on time; only the working-day warnings wait for a
            # calendar that counts their year (the recompute then places them).
            warnings, error = [], str(exc)
        for label, at in [*warnings, (BREACH, due + BREACH_AFTER)]:
            was = fired.get(label)
            if was is not None and rearm and at > now and label != BREACH:
                was = None
            points.append({"label": label, "at": at, "fired_at": was})
    if error:
        log.warning("clock %s: %s", doc["_id"], error)
    state = doc.get("state", "running")
    pending = [p for p in points if p["fired_at"] is None]
    upcoming = pending[0] if pending and state == "running" and due is not None else None
    return {
        "due_by": due,
        "points": points,
        "next_fire_at": upcoming["at"] if upcoming else None,
        "next_label": upcoming["label"] if upcoming else None,
        "calendar_error": error,
        "provisional": bool(rule.provisional_years(started, due, calendar)),
    }


def same_schedule(doc: dict, schedule: dict) -> bool:
    """Whether the stored clock already has this schedule (times compared as instants)."""
    stored = [dict(p, at=_local(p["at"]), fired_at=_local(p.get("fired_at"))) for p in doc.get("points", [])]
    computed = [dict(p, fired_at=_local(p.get("fired_at"))) for p in schedule["points"]]
    return (_local(doc.get("due_by")), stored, doc.get("calendar_error"), bool(doc.get("provisional"))) == (
        schedule["due_by"], computed, schedule["calendar_error"], schedule["provisional"])


def sla_state(doc: dict) -> str:
    """What intake shows of a running clock: ``warning`` once a warning fired, else on track."""
    warned = any(p.get("fired_at") and p["label"] != BREACH for p in doc.get("points", []))
    return "warning" if warned else "on_track"
