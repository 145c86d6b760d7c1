"""The SLA clocks and mediation, against a real SecantusDB with an injected ``now``: the time
in mediation is not counted (the clock pauses at the referral and resumes where it stopped
when the mediation ends without an agreement), and an agreement is carried out in time (its
own clock, from the day it was signed to the day it names, warned and breached)."""
from __future__ import annotations

import uuid
from datetime import datetime, timedelta

import pytest

from services.common import events, timeutil
from services.common.policy import SHANGHAI
from services.common.store import client_for, ensure_indexes
from services.sla.clocks import INDEXES, Clocks
from tests.support.harness import Now, StagingOutbox, organization_event

pytestmark = pytest.mark.integration

NO = "BANKA-260920-0000013"
YT_SUPERVISOR = {"sub": "yt-sup", "name": "赵磊", "unit": "BANKA-SD-YT", "roles": ["supervisor"]}
FACTS = {"complaint_no": NO, "institution": "BANKA", "unit": "BANKA-SD-YT", "offered_unit": None,
         "respondent_staff": []}


def at(*args) -> datetime:
    return datetime(*args, tzinfo=SHANGHAI)


@pytest.fixture
def db(mongo_uri):
    database = client_for(mongo_uri)[f"t{uuid.uuid4().hex[:8]}_sla"]
    ensure_indexes(database, INDEXES)
    yield database
    database.client.drop_database(database.name)


@pytest.fixture
def now():
    return Now(at(2026, 9, 20, 10, 0))


@pytest.fixture
def clocks(db, now):
    keeper = Clocks(db, now=now)
    keeper.organization.keep(organization_event())
    keeper.on_received(events.make_event("complaint_received", NO, {
        "complaint_no": NO, "institution": "BANKA", "branch": "BANKA-SD-YT", "kind": "complaint", "channel": "phone",
        "product": "credit_card", "received_at": timeutil.iso(now()), "policy": "cbirc-2020", "due_by": None,
        "direct": False, "respondent_staff": [], "group_size": 1, "app_id": "cc-shandong"}, "intake"),
        StagingOutbox(db))
    return keeper


@pytest.fixture
def outbox(db):
    return StagingOutbox(db)


def mediation_fact(name, when, referral_id=f"{NO}-M1", **body) -> dict:
    snapshot = {"referral_id": referral_id, "status": body.get("status", "referred"), "as_of": timeutil.iso(when)}
    return events.make_event(name, NO, {"complaint_no": NO, "at": timeutil.iso(when), "actor": "supervisor-1",
                                        "referral_id": referral_id, "organization": "SD-BIMC",
                                        "mediation": snapshot, **body}, "mediation")


APPROVER = {"sub": "yt-sup", "name": "赵磊", "unit": "BANKA-SD-YT", "positions": ["supervisor"]}


def referred(when, referral_id=f"{NO}-M1", **approval):
    return mediation_fact("complaint_referred", when, referral_id, organization_name="山东调解中心",
                          contact={"phone": "0531-1"}, reason="协商未果", **approval)


def status(when, new, previous, referral_id=f"{NO}-M1", agreement=None, ended=False):
    return mediation_fact("mediation_status_changed", when, referral_id, status=new, previous=previous,
                          callback_id=uuid.uuid4().hex, occurred_at=timeutil.iso(when), ended=ended,
                          agreement=agreement)


def clock(clocks, name="decision") -> dict:
    return next(c for c in clocks.view(NO) if c["clock"] == name)


def test_the_clock_pauses_at_the_referral_and_resumes_where_it_stopped(clocks, outbox, now):
    assert clock(clocks)["due_by"] == "2026-10-05T23:59:59+08:00"
    clocks.on_referred(referred(at(2026, 9, 25, 10, 0), approvers=[APPROVER], approval_id="mediation-1"), outbox)
    paused = clock(clocks)
    assert paused["state"] == "paused" and paused["due_by"] is None
    [event] = outbox.events("sla_paused")
    assert event["body"]["ground"] == "mediation" and event["body"]["referral_id"] == f"{NO}-M1"
    # A pause on the policy's mediation ground, the referral its evidence, approved with the referral
    # by whoever approved its authority.
    [pause] = paused["pauses"]
    assert pause["ground"] == "mediation" and pause["start"] == "2026-09-25T10:00:00+08:00"
    assert pause["evidence"] == f"山东调解中心, referral {NO}-M1" and pause["approvers"] == [APPROVER]
    assert event["body"]["approval_id"] == "mediation-1"
    now.set(at(2026, 10, 20, 10, 0))  # long past the limit it would have had: nothing fires while paused
    assert clocks.sweep(outbox) == []
    clocks.on_mediation_status_changed(status(at(2026, 9, 28, 10, 0), "accepted", "referred"), outbox)
    assert clock(clocks)["state"] == "paused"
    ended = status(at(2026, 10, 5, 10, 0), "failed", "accepted", ended=True)
    clocks.on_mediation_status_changed(ended, outbox)
    clocks.on_mediation_status_changed(ended, outbox)  # redelivered: applied once
    resumed = clock(clocks)
    # Paused for exactly ten days: the limit moves ten days on.
    assert resumed["state"] == "running" and resumed["due_by"] == "2026-10-15T23:59:59+08:00"
    assert len(outbox.events("sla_resumed")) == 1
    assert resumed["paused_time"] == {"seconds": 10 * 86400, "by_ground": {"mediation": 10 * 86400}}


def test_a_mediation_ending_resumes_only_what_its_referral_paused(clocks, outbox, now):
    clocks.act(NO, "pause", {"reason": "委托第三方鉴定", "ground": "third_party_appraisal",  # another ground first
                             "evidence": "司法鉴定所 委托书 2026-17"}, YT_SUPERVISOR, FACTS, outbox)
    clocks.on_referred(referred(at(2026, 9, 21, 10, 0)), outbox)  # nothing running: nothing to pause
    clocks.on_mediation_status_changed(status(at(2026, 9, 22, 10, 0), "declined", "referred", ended=True), outbox)
    assert clock(clocks)["state"] == "paused"
    assert outbox.events("sla_resumed") == []


def test_an_agreement_is_timed_from_its_signing_to_its_date_and_breaches_when_not_carried_out(clocks, outbox, now):
    clocks.on_referred(referred(at(2026, 9, 25, 10, 0)), outbox)
    agreement = {"terms": "退还年费300元", "signed_on": "2026-10-08", "carry_out_by": "2026-10-15",
                 "amount": "300.00", "currency": "CNY"}
    clocks.on_mediation_status_changed(status(at(2026, 10, 8, 16, 0), "agreement_reached", "hearing_scheduled",
                                              agreement=agreement), outbox)
    timed = clock(clocks, "agreement_performance")
    assert timed["state"] == "running" and timed["started_at"] == "2026-10-08T00:00:00+08:00"
    assert timed["due_by"] == "2026-10-15T23:59:59+08:00"
    assert clock(clocks)["state"] == "paused"  # the decision clock waits for the complaint's closing
    [started] = [e for e in outbox.events("sla_started") if e["body"]["clock"] == "agreement_performance"]
    assert started["body"]["reason"] == "agreement_reached"
    now.set(at(2026, 10, 16, 0, 0, 1))
    fired = clocks.sweep(outbox, limit=100, budget=10)
    assert [p["label"] for p in fired if p["clock"].endswith("agreement_performance")][-1] == "breach"
    [breached] = outbox.events("sla_breached")
    assert breached["body"]["clock"] == "agreement_performance"
    clocks.on_agreement_carried_out(mediation_fact("agreement_carried_out", at(2026, 10, 17, 9, 0),
                                                   status="carried_out", note="已退还"), outbox)
    late = clock(clocks, "agreement_performance")
    assert late["state"] == "breached"
    assert clock(clocks)["state"] == "paused"


def test_an_agreement_carried_out_in_time_is_met_and_without_a_date_takes_the_policys_limit(clocks, outbox, now):
    agreement = {"terms": "道歉并补偿100元", "signed_on": "2026-09-30", "carry_out_by": None, "amount": None,
                 "currency": None}
    clocks.on_mediation_status_changed(status(at(2026, 9, 30, 16, 0), "agreement_reached", "accepted",
                                              agreement=agreement), outbox)
    assert clock(clocks, "agreement_performance")["due_by"] == "2026-10-30T23:59:59+08:00"  # 30 calendar days
    now.set(at(2026, 10, 9, 10, 0))
    clocks.on_agreement_carried_out(mediation_fact("agreement_carried_out", now() - timedelta(hours=1),
                                                   status="carried_out", note=None), outbox)
    assert clock(clocks, "agreement_performance")["state"] == "met"
    [met] = outbox.events("sla_met")
    assert met["body"]["clock"] == "agreement_performance" and met["body"]["state"] == "met"
    assert clock(clocks)["state"] == "running"  # carrying out an agreement stops no other clock


def intake_fact(name, when, **body) -> dict:
    return events.make_event(name, NO, {"complaint_no": NO, "at": timeutil.iso(when), "actor": "yt-001", **body},
                             "intake")


def test_an_agreement_is_tracked_to_completion_whatever_happens_to_the_decision_clock(clocks, outbox, now):
    clocks.on_referred(referred(at(2026, 9, 25, 10, 0)), outbox)
    agreement = {"terms": "退还年费300元", "signed_on": "2026-10-08", "carry_out_by": "2026-10-20",
                 "amount": "300.00", "currency": "CNY"}
    clocks.on_mediation_status_changed(status(at(2026, 10, 8, 16, 0), "agreement_reached", "accepted",
                                              agreement=agreement), outbox)
    now.set(at(2026, 10, 9, 10, 0))
    clocks.on_decided(intake_fact("complaint_decided", now(), outcome="partially_upheld", unit="BANKA-SD-YT"),
                      outbox)
    assert clock(clocks)["state"] == "met"
    assert clock(clocks, "agreement_performance")["state"] == "running"
    clocks.on_closed(intake_fact("complaint_closed", now(), satisfaction="satisfied", root_cause="fees_and_pricing"),
                     outbox)
    timed = clock(clocks, "agreement_performance")
    assert timed["state"] == "running" and timed["due_by"] == "2026-10-20T23:59:59+08:00"
    assert [e["body"]["clock"] for e in outbox.events("sla_met")] == ["decision"]
    now.set(at(2026, 10, 21, 0, 0, 1))  # still not carried out: it breaches, closed complaint or not
    assert [p["label"] for p in clocks.sweep(outbox, limit=100, budget=10)][-1] == "breach"
    clocks.on_agreement_carried_out(mediation_fact("agreement_carried_out", at(2026, 10, 22, 9, 0),
                                                   status="carried_out", note="已退还"), outbox)
    assert clock(clocks, "agreement_performance")["state"] == "breached"
