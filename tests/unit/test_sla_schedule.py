"""The SLA clocks' schedule (``services.sla.schedule``), without a database: points from the
policy engine, the breach just after due_by, fired marks kept or re-armed, provisional
calendar years, and years no calendar can count."""
from __future__ import annotations

from datetime import datetime, timedelta

import pytest

from services.common.policy import SHANGHAI, BusinessCalendar, load_calendars, load_policies
from services.sla import schedule
from services.sla.schedule import BREACH, calendar_bound, point_event_id

BOOK = load_policies()
CALENDARS = load_calendars()


def at(*args) -> datetime:
    return datetime(*args, tzinfo=SHANGHAI)


class Clocks:
    """A clock document's schedule as the clock store computes it, on the shipped books."""

    def __init__(self, calendar=None):
        self.calendar = calendar or CALENDARS.for_institution("BANKA")

    def _schedule(self, doc, now, *, rearm=False):
        rule = BOOK.get(doc["policy"]).clock(doc["clock"])
        return schedule.compute(doc, rule, self.calendar, now, rearm=rearm)


@pytest.fixture
def clocks():
    return Clocks()


def new(clocks, policy="cbirc-2020", started=None):
    rule = BOOK.get(policy).primary_clock
    started = started or at(2026, 9, 20, 10, 0)
    doc = {"_id": f"C-1/{rule.name}", "policy": policy, "clock": rule.name, "state": "running",
           "started_at": started, "pauses": [], "total": rule.limit.value, "points": []}
    doc.update(clocks._schedule(doc, started))
    return doc


def test_a_new_clock_runs_towards_its_first_warning(clocks):
    doc = new(clocks)
    assert doc["_id"] == "C-1/decision" and doc["state"] == "running" and doc["total"] == 15
    assert doc["due_by"] == at(2026, 10, 5, 23, 59, 59)
    labels = [p["label"] for p in doc["points"]]
    assert labels == ["3_working_days_before", "1_working_days_before", BREACH]
    assert doc["next_fire_at"] == doc["points"][0]["at"] and doc["next_label"] == "3_working_days_before"
    assert [p["at"] for p in doc["points"]] == sorted(p["at"] for p in doc["points"])


def test_the_breach_is_the_first_instant_after_due_by(clocks):
    doc = new(clocks)
    assert doc["points"][-1]["at"] == doc["due_by"] + timedelta(milliseconds=1)


def test_a_consultation_at_23_30_breaches_after_23_30_next_day(clocks):
    doc = new(clocks, policy="consultation-24h", started=at(2026, 11, 20, 23, 30))
    assert doc["due_by"] == at(2026, 11, 21, 23, 30)
    assert [(p["label"], p["at"]) for p in doc["points"]][0] == ("4_hours_before", at(2026, 11, 21, 19, 30))


def test_fired_marks_survive_a_pause_and_rearm_only_in_the_future(clocks):
    doc = new(clocks)
    fired_at = doc["points"][0]["at"]
    doc["points"][0]["fired_at"] = fired_at
    paused = dict(doc, state="paused", pauses=[{"start": at(2026, 9, 25, 9, 0), "end": None}])
    schedule = clocks._schedule(paused, at(2026, 9, 26, 9, 0))
    assert schedule["due_by"] is None and schedule["next_fire_at"] is None
    assert schedule["points"][0]["fired_at"] == fired_at
    # After an extension the first warning lies in the future again: it re-arms.
    extended = dict(doc, total=30)
    rearmed = clocks._schedule(extended, fired_at + timedelta(hours=1), rearm=True)
    assert rearmed["points"][0]["fired_at"] is None and rearmed["next_label"] == "3_working_days_before"
    kept = clocks._schedule(extended, fired_at + timedelta(hours=1), rearm=False)
    assert kept["points"][0]["fired_at"] == fired_at and kept["next_label"] == "1_working_days_before"


def test_a_year_not_published_counts_provisionally_and_says_so(clocks):
    # Working days into 2027: Dec 21-25, 28-31, [Jan 1 statutory], Jan 4-8, Mon Jan 11.
    doc = new(clocks, policy="cbrc-2012", started=at(2026, 12, 20, 10, 0))
    assert doc["due_by"] == at(2027, 1, 11, 23, 59, 59) and doc["provisional"] is True
    assert doc["calendar_error"] is None
    assert [p["label"] for p in doc["points"]] == ["3_working_days_before", "1_working_days_before", BREACH]
    assert doc["points"][0]["at"] == at(2027, 1, 6, 23, 59, 59)
    # Calendar days into 2027: the due date is no calendar's; only its warnings are provisional.
    doc = new(clocks, started=at(2026, 12, 28, 10, 0))
    assert doc["due_by"] == at(2027, 1, 12, 23, 59, 59) and doc["provisional"] is False
    assert [p["label"] for p in doc["points"]] == ["3_working_days_before", "1_working_days_before", BREACH]
    # Within a published year nothing is provisional.
    assert new(clocks, policy="cbrc-2012", started=at(2026, 11, 2, 10, 0))["provisional"] is False


def test_a_year_no_calendar_counts_never_guesses_and_never_hides_the_breach():
    clocks = Clocks(BusinessCalendar(code="BANKA"))  # no provisional rule
    # Calendar days into 2027: the breach is known, the working-day warnings are not.
    doc = new(clocks, started=at(2026, 12, 28, 10, 0))
    assert doc["due_by"] == at(2027, 1, 12, 23, 59, 59)
    assert [p["label"] for p in doc["points"]] == [BREACH]
    assert "2027" in doc["calendar_error"]
    # Working days into 2027: no due date at all until the year is declared.
    doc = new(clocks, policy="cbrc-2012", started=at(2026, 12, 28, 10, 0))
    assert doc["due_by"] is None and doc["next_fire_at"] is None and "2027" in doc["calendar_error"]
    assert doc["provisional"] is False


def test_the_state_intake_shows_and_whether_a_schedule_changed(clocks):
    doc = new(clocks)
    assert schedule.sla_state(doc) == "on_track"
    assert schedule.same_schedule(doc, clocks._schedule(doc, at(2026, 9, 21, 10, 0)))
    doc["points"][0]["fired_at"] = doc["points"][0]["at"]
    assert schedule.sla_state(doc) == "warning"
    extended = dict(doc, total=30)
    assert not schedule.same_schedule(extended, clocks._schedule(extended, doc["points"][0]["at"]))


def test_point_event_ids_are_stable_per_generation():
    doc = {"_id": "C-1/decision", "generation": 0}
    assert point_event_id(doc, BREACH) == point_event_id(dict(doc), BREACH)
    assert point_event_id(doc, BREACH) != point_event_id(dict(doc, generation=1), BREACH)
    assert point_event_id(doc, BREACH) != point_event_id(doc, "1_working_days_before")


def test_which_clocks_a_calendar_change_can_move():
    bound = {(p.code, c.name): calendar_bound(c) for p in BOOK.policies.values() for c in p.clocks.values()}
    assert bound[("cbrc-2012", "decision")] and bound[("enterprise-3-7", "resolution")]
    assert bound[("same-day", "same_day")]
    assert bound[("cbirc-2020", "decision")]  # its warnings count working days
    assert not bound[("consultation-24h", "consultation_answer")]
