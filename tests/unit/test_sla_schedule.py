"""The SLA clocks' schedule, without a database: points from the policy engine, the breach
just after due_by, fired marks kept or re-armed, calendar years the data does not know."""
from __future__ import annotations

from datetime import datetime, timedelta

import pytest

from services.common.policy import SHANGHAI, load_policies
from services.sla.clocks import BREACH, Clocks, _calendar_bound, point_event_id

BOOK = load_policies()


def at(*args) -> datetime:
    return datetime(*args, tzinfo=SHANGHAI)


@pytest.fixture
def clocks():
    return Clocks({"clocks": None, "organization": None, "approvals": None}, now=lambda: at(2026, 9, 20, 10, 0))


def new(clocks, policy="cbirc-2020", started=None, institution="BANKA"):
    rule = BOOK.get(policy).primary_clock
    started = started or at(2026, 9, 20, 10, 0)
    return clocks._new_clock("C-1", rule, started, institution=institution, unit="U", now=started)


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


def test_an_unknown_year_never_guesses_and_never_hides_the_breach(clocks):
    # Calendar days into 2027: the breach is known, the working-day warnings are not.
    doc = new(clocks, started=at(2026, 12, 28, 10, 0))
    assert doc["due_by"] == at(2027, 1, 12, 23, 59, 59)
    assert [p["label"] for p in doc["points"]] == [BREACH]
    assert "2027" in doc["calendar_error"]
    # Working days into 2027: no due date at all until the year is declared.
    doc = new(clocks, policy="cbrc-2012", started=at(2026, 12, 28, 10, 0))
    assert doc["due_by"] is None and doc["next_fire_at"] is None and "2027" in doc["calendar_error"]


def test_point_event_ids_are_stable_per_generation():
    doc = {"_id": "C-1/decision", "generation": 0}
    assert point_event_id(doc, BREACH) == point_event_id(dict(doc), BREACH)
    assert point_event_id(doc, BREACH) != point_event_id(dict(doc, generation=1), BREACH)
    assert point_event_id(doc, BREACH) != point_event_id(doc, "1_working_days_before")


def test_which_clocks_a_calendar_change_can_move():
    bound = {(p.code, c.name): _calendar_bound(c) for p in BOOK.policies.values() for c in p.clocks.values()}
    assert bound[("cbrc-2012", "decision")] and bound[("enterprise-3-7", "resolution")]
    assert bound[("same-day", "same_day")]
    assert bound[("cbirc-2020", "decision")]  # its warnings count working days
    assert not bound[("consultation-24h", "consultation_answer")]


def test_calendar_changes_name_the_days_and_the_hours():
    from datetime import date

    from services.common.policy import calendar_from_data, load_calendars
    from services.sla.clocks import calendar_changes

    base = load_calendars().for_institution("BANKA")
    holiday = calendar_from_data("BANKA", {"extra_holidays": [date(2026, 11, 26)]}, base=base)
    later = calendar_from_data("BANKA", {"business_hours": {"end": "18:00"}}, base=base)
    assert calendar_changes(base, base, date(2026, 11, 24)) == (False, [])
    assert calendar_changes(base, holiday, date(2026, 11, 24)) == (False, [date(2026, 11, 26)])
    assert calendar_changes(base, later, date(2026, 11, 24)) == (True, [])
