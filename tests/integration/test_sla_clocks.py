"""The SLA clock domain against a real SecantusDB, driven with an injected ``now``: start,
warnings in order, breach, met in time and late, extension steps, pause across a holiday,
restart on new facts, review, withdrawal, provisional calendar years, the recompute job
after a calendar change, two instances racing."""
from __future__ import annotations

import uuid
from datetime import date, datetime, timedelta

import eventlet
import pytest

from services.common import events, timeutil
from services.common.errors import Conflict, Forbidden, Invalid, NotFound
from services.common.policy import SHANGHAI, calendar_from_data, load_calendars, load_policies
from services.common.policy.calendar import CalendarBook
from services.common.store import client_for, ensure_indexes, in_transaction
from services.routing.organization import load_organization
from services.routing.routing import announcement
from services.sla.clocks import INDEXES, Clocks
from tests.support.harness import Now, StagingOutbox

pytestmark = pytest.mark.integration

BOOK = load_policies()
CALENDARS = load_calendars()
# People of Bank A; the complaints of these tests are Yantai's (BANKA-SD-YT).
HANDLER = {"sub": "yt-001", "name": "刘洋", "unit": "BANKA-SD-YT", "roles": ["handler"]}
YT_SUPERVISOR = {"sub": "yt-sup", "name": "张伟", "unit": "BANKA-SD-YT", "roles": ["supervisor"]}
SD_CPD = {"sub": "sd-cpd", "name": "李娜", "unit": "BANKA-SD", "roles": ["consumer_protection", "supervisor"]}
HO_SUPERVISOR = {"sub": "ho-sup", "name": "王敏", "unit": "BANKA", "roles": ["supervisor"]}


@pytest.fixture
def db(mongo_uri):
    database = client_for(mongo_uri)[f"t{uuid.uuid4().hex[:8]}_sla"]
    ensure_indexes(database, INDEXES)
    yield database
    database.client.drop_database(database.name)


def at(*args) -> datetime:
    return datetime(*args, tzinfo=SHANGHAI)


@pytest.fixture
def now():
    return Now(at(2026, 9, 20, 10, 0))


@pytest.fixture
def clocks(db, now):
    clocks = Clocks(db, now=now)
    clocks.organization.keep(events.make_event("organization_changed", None, announcement(load_organization()),
                                               "routing"))
    return clocks


def facts(no, **changes) -> dict:
    """Intake's facts of a complaint of Yantai (what sla judges who may act on)."""
    return {"complaint_no": no, "institution": "BANKA", "unit": "BANKA-SD-YT", "offered_unit": None,
            "respondent_staff": [], **changes}


def act(clocks, outbox, no, action, who=HANDLER, **data) -> dict:
    return clocks.act(no, action, data, who, facts(no), outbox)


def decide(clocks, outbox, approval_id, decision, who, note="核实后同意", **fact_changes) -> dict:
    no = clocks.approvals.complaint_of(approval_id)
    return clocks.decide_approval(approval_id, decision, note, who, facts(no, **fact_changes), outbox)


@pytest.fixture
def outbox(db):
    return StagingOutbox(db)


def received(clocks, outbox, no="BANKA-20260920-000001", received_at=None, policy="cbirc-2020",
             institution="BANKA", kind="complaint") -> dict:
    received_at = received_at or clocks.now()
    event = events.make_event("complaint_received", no, {
        "complaint_no": no, "institution": institution, "branch": "BANKA-SD-JN", "kind": kind, "channel": "phone",
        "product": "credit_card", "received_at": timeutil.iso(received_at), "policy": policy, "due_by": None,
        "direct": False, "respondent_staff": [], "group_size": 1, "app_id": "cc-shandong"}, "intake")
    clocks.on_received(event, outbox)
    return event


def fact(name, no, when, **body) -> dict:
    return events.make_event(name, no, {"complaint_no": no, "at": timeutil.iso(when), "actor": "sd-jn-001", **body},
                             "intake")


def sweep_all(clocks, outbox) -> list[dict]:
    fired = []
    while True:
        batch = clocks.sweep(outbox, limit=1000, budget=30)
        if not batch:
            return fired
        fired.extend(batch)


def test_received_starts_the_primary_clock_once(clocks, outbox, db, now):
    event = received(clocks, outbox)
    clocks.on_received(event, outbox)  # redelivered
    received(clocks, outbox)  # announced twice under another event id
    [doc] = db["clocks"].find({})
    rule = BOOK.get("cbirc-2020").clock("decision")
    due = rule.due_by(now(), calendar=CALENDARS.for_institution("BANKA"))
    assert doc["state"] == "running" and doc["clock"] == "decision"
    assert timeutil.local(doc["due_by"]) == due == at(2026, 10, 5, 23, 59, 59)
    points = rule.warning_points(due, CALENDARS.for_institution("BANKA"), not_before=now())
    assert [p["label"] for p in doc["points"]] == [label for label, _ in points] + ["breach"]
    assert timeutil.local(doc["next_fire_at"]) == points[0][1]
    [started] = outbox.events("sla_started")
    assert started["body"]["due_by"] == "2026-10-05T23:59:59+08:00"
    assert clocks.view("BANKA-20260920-000001") == [{
        "clock": "decision", "policy": "cbirc-2020", "state": "running", "due_by": "2026-10-05T23:59:59+08:00",
        "started_at": "2026-09-20T10:00:00+08:00", "warned": [], "breached": False, "paused": False,
        "extensions": 0, "provisional": False, "pauses": [], "paused_time": {"seconds": 0, "by_ground": {}},
        "pending_approvals": [], "promised_limit": None}]
    with pytest.raises(NotFound):
        clocks.view("BANKA-NONE")


def test_warnings_fire_in_order_then_the_breach_once(clocks, outbox, now):
    received(clocks, outbox)
    assert sweep_all(clocks, outbox) == []
    doc = clocks.clocks.find_one({})
    first, second, _ = [timeutil.local(p["at"]) for p in doc["points"]]
    breach = timeutil.local(doc["due_by"])
    now.set(first)
    assert [p["label"] for p in sweep_all(clocks, outbox)] == ["3_working_days_before"]
    now.set(second + timedelta(seconds=1))
    assert [p["label"] for p in sweep_all(clocks, outbox)] == ["1_working_days_before"]
    now.set(breach)
    assert sweep_all(clocks, outbox) == []  # due_by itself is still in time
    now.set(breach + timedelta(seconds=1))
    assert [p["label"] for p in sweep_all(clocks, outbox)] == ["breach"]
    now.set(breach + timedelta(days=30))
    assert sweep_all(clocks, outbox) == []
    warnings = outbox.events("sla_warning")
    assert [w["body"]["label"] for w in warnings] == ["3_working_days_before", "1_working_days_before"]
    [breached] = outbox.events("sla_breached")
    assert breached["body"]["unit"] == "BANKA-SD-JN" and breached["body"]["point_at"] == timeutil.iso(breach)
    [view] = clocks.view("BANKA-20260920-000001")
    assert view["state"] == "breached_open" and view["breached"] is True
    assert view["warned"] == ["1_working_days_before", "3_working_days_before"]


def test_what_fell_due_meanwhile_fires_in_order_at_once(clocks, outbox, now):
    received(clocks, outbox, received_at=now() - timedelta(days=20))
    fired = sweep_all(clocks, outbox)
    assert [p["label"] for p in fired] == ["3_working_days_before", "1_working_days_before", "breach"]
    assert len({p["event_id"] for p in fired}) == 3


def test_decided_in_time_is_met_and_late_is_breached(clocks, outbox, now):
    received(clocks, outbox, no="C-IN-TIME")
    received(clocks, outbox, no="C-LATE")
    received(clocks, outbox, no="C-LATE-UNSWEPT")
    clocks.on_decided(fact("complaint_decided", "C-IN-TIME", now() + timedelta(days=10), outcome="upheld",
                           unit="BANKA-SD-JN"), outbox)
    now.set(at(2026, 10, 6, 9, 0))
    sweep_all(clocks, outbox)
    clocks.on_decided(fact("complaint_decided", "C-LATE", now(), outcome="rejected", unit="BANKA-SD-JN"), outbox)
    clocks.on_decided(fact("complaint_decided", "C-LATE-UNSWEPT", at(2026, 10, 6, 0, 0, 1), outcome="rejected",
                           unit="BANKA-SD-JN"), outbox)
    met = {e["complaint_no"]: e["body"]["state"] for e in outbox.events("sla_met")}
    assert met == {"C-IN-TIME": "met", "C-LATE": "breached", "C-LATE-UNSWEPT": "breached"}
    assert {e["complaint_no"] for e in outbox.events("sla_breached")} == {"C-LATE", "C-LATE-UNSWEPT"}
    assert clocks.view("C-IN-TIME")[0]["state"] == "met"
    assert clocks.view("C-LATE")[0]["state"] == "breached"
    # A decision for a complaint whose receipt has not arrived yet is retried, not lost.
    with pytest.raises(NotFound):
        clocks.on_decided(fact("complaint_decided", "C-UNKNOWN", now(), outcome="upheld", unit="X"), outbox)


def test_extension_steps_at_and_past_their_caps(clocks, outbox, now):
    no = "BANKA-EXT"
    received(clocks, outbox, no=no)
    with pytest.raises(Invalid) as missing:
        act(clocks, outbox, no, "extend", days=15, reason="  ")
    assert set(missing.value.details) == {"reason"}
    with pytest.raises(Invalid) as over:
        act(clocks, outbox, no, "extend", days=16, reason="需调取录音")  # 31 > 30
    assert set(over.value.details) == {"days"} and "over_cap" in over.value.details["days"][0]
    # Step 1 names handler or supervisor: the handler's own role approves it.
    done = act(clocks, outbox, no, "extend", days=15, reason="需调取录音核实")  # at the cap: 30
    [view] = done["clocks"]
    assert view["due_by"] == "2026-10-20T23:59:59+08:00" and view["extensions"] == 1
    with pytest.raises(Invalid) as past_60:
        act(clocks, outbox, no, "extend", days=31, reason="需外部鉴定")
    assert set(past_60.value.details) == {"days"}
    # Step 2 names the superior unit or a head-office senior manager: it waits for one of them.
    pending = act(clocks, outbox, no, "extend", days=30, reason="需外部鉴定")["approval"]
    assert (pending["action"], pending["state"], pending["of_unit"]) == ("extend", "pending", "BANKA-SD")
    assert pending["needs"] == ["consumer_protection", "supervisor"]
    assert pending["positions"] == ["superior_unit", "head_office_senior_manager"]
    [view] = clocks.view(no)
    assert view["extensions"] == 1 and view["state"] == "running"  # the clock runs on meanwhile
    assert [a["approval_id"] for a in view["pending_approvals"]] == [pending["approval_id"]]
    with pytest.raises(Conflict):  # one request at a time
        act(clocks, outbox, no, "extend", days=30, reason="再次申请")
    with pytest.raises(Forbidden, match="their own request"):
        decide(clocks, outbox, pending["approval_id"], "approve", HANDLER)
    with pytest.raises(Forbidden, match="needs"):  # Yantai's supervisor is not its superior unit
        decide(clocks, outbox, pending["approval_id"], "approve", YT_SUPERVISOR)
    with pytest.raises(Invalid):
        decide(clocks, outbox, pending["approval_id"], "approve", SD_CPD, note=" ")
    decided = decide(clocks, outbox, pending["approval_id"], "approve", SD_CPD, note="案情复杂，同意延至60日")
    assert decided["approval"]["state"] == "approved" and decided["approval"]["decided_by"]["sub"] == "sd-cpd"
    [view] = clocks.view(no)
    assert view["due_by"] == "2026-11-19T23:59:59+08:00" and view["extensions"] == 2
    assert view["pending_approvals"] == []
    with pytest.raises(Conflict):  # decided once
        decide(clocks, outbox, pending["approval_id"], "refuse", HO_SUPERVISOR)
    with pytest.raises(Invalid) as third:
        act(clocks, outbox, no, "extend", who=HO_SUPERVISOR, days=1, reason="再延")
    assert "steps_exhausted" in third.value.details["days"][0]
    extended = outbox.events("sla_extended")
    assert [(e["body"]["total"], e["body"]["previous_due_by"], e["body"]["due_by"]) for e in extended] == [
        (30, "2026-10-05T23:59:59+08:00", "2026-10-20T23:59:59+08:00"),
        (60, "2026-10-20T23:59:59+08:00", "2026-11-19T23:59:59+08:00")]
    assert extended[0]["body"]["approved_by"] == ["handler"]
    assert extended[1]["body"]["approved_by"] == ["superior_unit"] and extended[1]["body"]["actor"] == "yt-001"
    assert extended[1]["body"]["approvers"] == [
        {"sub": "sd-cpd", "name": "李娜", "unit": "BANKA-SD", "positions": ["superior_unit"]}]
    assert extended[1]["body"]["approval_id"] == pending["approval_id"]
    [requested] = outbox.events("approval_requested")
    [approved] = outbox.events("approval_decided")
    assert (requested["body"]["actor"], approved["body"]["actor"]) == ("yt-001", "sd-cpd")
    assert approved["body"]["decision"] == "approved" and approved["body"]["note"] == "案情复杂，同意延至60日"
    # The warnings are those of the new limit.
    doc = clocks.clocks.find_one({"complaint_no": no})
    assert timeutil.local(doc["points"][-1]["at"]) == at(2026, 11, 19, 23, 59, 59, 1000)


def test_a_refused_step_changes_nothing_and_a_decider_must_stand_where_the_step_names(clocks, outbox, now):
    no = "BANKA-EXT-REFUSED"
    received(clocks, outbox, no=no)
    act(clocks, outbox, no, "extend", who=YT_SUPERVISOR, days=15, reason="复杂")  # the supervisor's own step 1
    pending = act(clocks, outbox, no, "extend", days=30, reason="需外部鉴定")["approval"]
    # Listed for the superior unit's consumer protection and head office, not for Yantai.
    assert [a["approval_id"] for a in clocks.approvals_for(SD_CPD)] == [pending["approval_id"]]
    assert [a["approval_id"] for a in clocks.approvals_for(HO_SUPERVISOR)] == [pending["approval_id"]]
    assert clocks.approvals_for(YT_SUPERVISOR) == [] and clocks.approvals_for(HANDLER) == []
    assert [a["approval_id"] for a in clocks.approvals_for(HANDLER, pending=False)] == [pending["approval_id"]]
    # A person the complaint names holds no position on it.
    with pytest.raises(Forbidden):
        decide(clocks, outbox, pending["approval_id"], "approve", SD_CPD, respondent_staff=["sd-cpd"])
    refused = decide(clocks, outbox, pending["approval_id"], "refuse", HO_SUPERVISOR, note="理由不充分")
    assert refused["approval"]["state"] == "refused" and refused["approval"]["note"] == "理由不充分"
    [view] = clocks.view(no)
    assert view["extensions"] == 1 and view["due_by"] == "2026-10-20T23:59:59+08:00"
    assert len(outbox.events("sla_extended")) == 1
    assert clocks.approvals_for(SD_CPD) == []


def test_a_request_still_pending_when_the_limit_runs_out_is_shown_as_such(clocks, outbox, now):
    no = "BANKA-EXT-LATE"
    received(clocks, outbox, no=no)
    act(clocks, outbox, no, "extend", days=15, reason="复杂")
    pending = act(clocks, outbox, no, "extend", days=30, reason="需外部鉴定")["approval"]
    assert pending["past_limit"] is False and pending["limit_due_by"] == "2026-10-20T23:59:59+08:00"
    now.set(at(2026, 10, 21, 9, 0))
    [listed] = clocks.approvals_for(SD_CPD)
    assert listed["state"] == "pending" and listed["past_limit"] is True
    with pytest.raises(Conflict, match="ran out"):  # too late to extend a limit that passed
        decide(clocks, outbox, pending["approval_id"], "approve", SD_CPD)
    sweep_all(clocks, outbox)  # the breach fires: the clock runs on while the request waits
    [view] = clocks.view(no)
    assert view["state"] == "breached_open" and view["pending_approvals"][0]["past_limit"] is True


def test_extension_after_a_warning_rearms_the_future_warnings_only(clocks, outbox, now):
    no = "BANKA-EXT-WARNED"
    received(clocks, outbox, no=no)
    doc = clocks.clocks.find_one({})
    now.set(timeutil.local(doc["points"][0]["at"]) + timedelta(minutes=1))
    assert len(sweep_all(clocks, outbox)) == 1
    act(clocks, outbox, no, "extend", days=15, reason="复杂")
    assert sweep_all(clocks, outbox) == []
    now.set(at(2026, 10, 21, 0, 0, 1))
    labels = [p["label"] for p in sweep_all(clocks, outbox)]
    assert labels == ["3_working_days_before", "1_working_days_before", "breach"]
    assert len({e["event_id"] for e in outbox.events()}) == len(outbox.events())


APPRAISAL = {"reason": "委托第三方鉴定", "ground": "third_party_appraisal",
             "evidence": "司法鉴定委托书 鲁鉴(2026)118号"}


def test_pause_across_a_holiday_resumes_where_it_stopped(clocks, outbox, now):
    # cbrc-2012 counts working days: paused Sep 30 .. Oct 9 gives back Oct 8 and 9.
    no = "BANKA-PAUSE"
    now.set(at(2026, 9, 28, 10, 0))
    received(clocks, outbox, no=no, policy="cbrc-2012")
    rule = BOOK.get("cbrc-2012").clock("decision")
    calendar = CALENDARS.for_institution("BANKA")
    before = rule.due_by(at(2026, 9, 28, 10, 0), calendar=calendar)
    now.set(at(2026, 9, 30, 11, 0))
    with pytest.raises(Conflict):
        act(clocks, outbox, no, "resume", reason="鉴定完成")
    act(clocks, outbox, no, "pause", who=YT_SUPERVISOR, **APPRAISAL)
    [view] = clocks.view(no)
    assert view["state"] == "paused" and view["paused"] and view["due_by"] is None
    with pytest.raises(Conflict):
        act(clocks, outbox, no, "pause", who=YT_SUPERVISOR, **APPRAISAL)
    now.set(at(2026, 11, 30, 0, 0))  # paused: nothing fires however late it gets
    assert sweep_all(clocks, outbox) == []
    now.set(at(2026, 10, 9, 15, 0))
    act(clocks, outbox, no, "resume", reason="鉴定完成")
    [view] = clocks.view(no)
    expected = rule.due_by(at(2026, 9, 28, 10, 0), calendar=calendar,
                           paused=[(at(2026, 9, 30, 11, 0), at(2026, 10, 9, 15, 0))])
    assert calendar.working_days_between(before.date(), expected.date()) == 2
    assert view["state"] == "running" and view["due_by"] == timeutil.iso(expected)
    assert view["paused_time"] == {"seconds": 9 * 86400 + 4 * 3600, "by_ground": {
        "third_party_appraisal": 9 * 86400 + 4 * 3600}}
    assert view["pauses"][0]["evidence"] == APPRAISAL["evidence"] and view["pauses"][0]["by"] == "yt-sup"
    assert [e["type"] for e in outbox.events() if e["type"] != "sla_started"] == ["sla_paused", "sla_resumed"]
    assert outbox.events("sla_resumed")[0]["body"]["due_by"] == timeutil.iso(expected)


def test_a_clock_pauses_only_on_a_ground_with_its_evidence_approved_like_an_extension(clocks, outbox, now):
    no = "BANKA-PAUSE-GROUNDS"
    received(clocks, outbox, no=no)
    with pytest.raises(Invalid) as refused:
        act(clocks, outbox, no, "pause", reason="客户出差", ground="customer_travelling")
    assert set(refused.value.details) == {"ground", "evidence"}
    now.set(at(2026, 9, 22, 10, 0))
    pending = act(clocks, outbox, no, "pause", **APPRAISAL)["approval"]  # a handler's pause waits
    assert (pending["action"], pending["needs"], pending["of_unit"]) == ("pause", ["supervisor"], "BANKA-SD-YT")
    assert clocks.view(no)[0]["state"] == "running"
    now.set(at(2026, 9, 23, 10, 0))
    decide(clocks, outbox, pending["approval_id"], "approve", YT_SUPERVISOR, note="已核对委托书")
    [view] = clocks.view(no)
    assert view["state"] == "paused" and view["pauses"][0]["approvers"][0]["sub"] == "yt-sup"
    now.set(at(2026, 9, 24, 16, 0))
    assert clocks.view(no)[0]["paused_time"] == {"seconds": 30 * 3600, "by_ground": {
        "third_party_appraisal": 30 * 3600}}
    [paused] = outbox.events("sla_paused")
    assert paused["body"]["ground"] == "third_party_appraisal" and paused["body"]["actor"] == "yt-001"
    assert paused["body"]["approval_id"] == pending["approval_id"]
    with pytest.raises(Invalid) as other_ground:  # a resume that names a ground names the pause's
        act(clocks, outbox, no, "resume", reason="调解结束", ground="mediation")
    assert set(other_ground.value.details) == {"ground"}
    act(clocks, outbox, no, "resume", reason="鉴定完成", ground="third_party_appraisal")
    assert clocks.view(no)[0]["state"] == "running"


def test_a_decision_while_paused_is_in_time(clocks, outbox, now):
    no = "BANKA-MEDIATION"
    received(clocks, outbox, no=no)
    now.set(at(2026, 9, 25, 10, 0))
    act(clocks, outbox, no, "pause", who=YT_SUPERVISOR, reason="调解中", ground="mediation",
        evidence="山东银行业保险业纠纷调解中心 受理号 2026-0457")
    clocks.on_decided(fact("complaint_decided", no, at(2026, 11, 1, 10, 0), outcome="partially_upheld",
                           unit="BANKA-SD-YT"), outbox)
    assert outbox.events("sla_met")[0]["body"]["state"] == "met"


def test_who_may_act_on_the_clocks_is_judged_on_intakes_facts(clocks, outbox, now):
    no = "BANKA-WHO"
    received(clocks, outbox, no=no)
    with pytest.raises(NotFound):  # a unit beside it
        clocks.act(no, "extend", {"days": 5, "reason": "x"}, dict(HANDLER, unit="BANKA-SD-WF"), facts(no), outbox)
    with pytest.raises(Forbidden, match="recuse"):
        clocks.act(no, "extend", {"days": 5, "reason": "x"}, HANDLER, facts(no, respondent_staff=["yt-001"]), outbox)
    with pytest.raises(Forbidden, match="stays accountable"):  # offered a transfer, not yet accepted
        clocks.act(no, "resume", {"reason": "x"}, dict(HANDLER, unit="BANKA-ZJ-SX"),
                   facts(no, offered_unit="BANKA-ZJ-SX"), outbox)
    assert outbox.events("sla_extended") == []


def test_repeat_with_new_facts_restarts_without_changes_nothing(clocks, outbox, now):
    no = "BANKA-REPEAT"
    received(clocks, outbox, no=no)
    clocks.on_repeated(fact("complaint_repeated", no, at(2026, 9, 25, 9, 0), repeat_of=no, new_facts=False),
                       outbox)
    assert clocks.view(no)[0]["due_by"] == "2026-10-05T23:59:59+08:00"
    doc = clocks.clocks.find_one({})
    now.set(timeutil.local(doc["points"][0]["at"]))
    assert len(sweep_all(clocks, outbox)) == 1  # the first warning of the old limit
    new_material = at(2026, 10, 1, 9, 0)
    now.set(new_material)
    clocks.on_repeated(fact("complaint_repeated", no, new_material, repeat_of=no, new_facts=True), outbox)
    rule = BOOK.get("cbirc-2020").clock("decision")
    expected = rule.restart(new_material, calendar=CALENDARS.for_institution("BANKA"))
    [view] = clocks.view(no)
    assert view["started_at"] == timeutil.iso(new_material) and view["due_by"] == timeutil.iso(expected)
    restarted = outbox.events("sla_started")[-1]
    assert restarted["body"]["restarted"] is True and restarted["body"]["due_by"] == timeutil.iso(expected)
    now.set(expected + timedelta(seconds=1))
    assert [p["label"] for p in sweep_all(clocks, outbox)] == [
        "3_working_days_before", "1_working_days_before", "breach"]


def test_withdrawal_ends_the_clock(clocks, outbox, now):
    no = "BANKA-WITHDRAWN"
    received(clocks, outbox, no=no)
    clocks.on_withdrawn(fact("complaint_withdrawn", no, at(2026, 9, 22, 9, 0), reason="客户撤诉"), outbox)
    now.set(at(2026, 12, 1, 0, 0))
    assert sweep_all(clocks, outbox) == []
    assert clocks.view(no)[0]["state"] == "stopped"
    with pytest.raises(Conflict):
        act(clocks, outbox, no, "extend", days=5, reason="x")


def test_reopen_starts_the_review_clock_beside_the_decision_clock(clocks, outbox, now):
    no = "BANKA-REVIEW"
    received(clocks, outbox, no=no)
    decided = at(2026, 9, 30, 10, 0)
    clocks.on_decided(fact("complaint_decided", no, decided, outcome="rejected", unit="BANKA-SD-JN"), outbox)
    requested = at(2026, 10, 20, 10, 0)
    now.set(requested)
    clocks.on_reopened(fact("complaint_reopened", no, requested, reason="对结果不满意",
                            decided_at=timeutil.iso(decided), decided_by_unit="BANKA-SD-JN"), outbox)
    expected = BOOK.get("cbirc-2020").review_due_by(decided, requested, calendar=CALENDARS.for_institution("BANKA"))
    views = {v["clock"]: v for v in clocks.view(no)}
    assert views["decision"]["state"] == "met"
    assert views["review"]["state"] == "running" and views["review"]["due_by"] == timeutil.iso(expected)
    assert outbox.events("sla_started")[-1]["body"]["clock"] == "review"
    clocks.on_decided(fact("complaint_decided", no, at(2026, 11, 5, 10, 0), outcome="upheld", unit="BANKA-SD"),
                      outbox)
    assert [(e["body"]["clock"], e["body"]["state"]) for e in outbox.events("sla_met")] == [
        ("decision", "met"), ("review", "met")]


def run_job(clocks, outbox, institution=None) -> dict:
    """Start a recompute job and work it to the end, as the SLA service's timer does."""
    job = clocks.rescheduling.start(institution)
    for _ in range(100):
        worked = clocks.rescheduling.work(outbox)
        if worked is not None and worked["state"] == "done":
            break
    done = clocks.rescheduling.view(job["job_id"])
    assert done["state"] == "done", done
    return done


def test_a_calendar_change_recomputes_the_open_working_day_clocks_it_moves(db, now, outbox):
    books = {"calendars": CALENDARS}
    clocks = Clocks(db, now=now, load_calendar_book=lambda: books["calendars"])
    now.set(at(2026, 11, 24, 10, 0))  # Tuesday
    received(clocks, outbox, no="A-ENTERPRISE", policy="enterprise-3-7")        # 3 working days: Fri 27
    received(clocks, outbox, no="A-CBIRC", policy="cbirc-2020")                 # calendar days
    received(clocks, outbox, no="B-ENTERPRISE", policy="enterprise-3-7", institution="INSA")
    received(clocks, outbox, no="A-CONSULT", policy="consultation-24h", kind="consultation")  # hours
    before = {no: clocks.view(no)[0]["due_by"] for no in ("A-ENTERPRISE", "A-CBIRC", "B-ENTERPRISE")}
    assert before["A-ENTERPRISE"] == "2026-11-27T23:59:59+08:00"
    # BANKA declares a local holiday on Thursday 26 November.
    default = CALENDARS.default
    banka = calendar_from_data("BANKA", {"extra_holidays": [date(2026, 11, 26)]}, base=default)
    books["calendars"] = CalendarBook(default=default, institutions={**CALENDARS.institutions, "BANKA": banka})
    other_instance = Clocks(db, now=now, load_calendar_book=lambda: books["calendars"])
    other_instance.loaded_at = now() - timedelta(minutes=1)
    job = run_job(clocks, outbox, "BANKA")
    # Both open BANKA clocks a calendar can move are examined (not the hour clock, not INSA's);
    # the cbirc clock (calendar days, warnings on Dec 4 and 8) does not move.
    assert {k: job[k] for k in ("institution", "total", "examined", "rescheduled", "confirmed", "updated")} == {
        "institution": "BANKA", "total": 2, "examined": 2, "rescheduled": 1, "confirmed": 0, "updated": 0}
    after = {no: clocks.view(no)[0]["due_by"] for no in before}
    assert after["A-ENTERPRISE"] == "2026-11-30T23:59:59+08:00"
    assert after["A-CBIRC"] == before["A-CBIRC"]
    assert after["B-ENTERPRISE"] == before["B-ENTERPRISE"]
    [moved] = outbox.events("sla_rescheduled")
    assert moved["complaint_no"] == "A-ENTERPRISE"
    assert moved["body"]["previous_due_by"] == "2026-11-27T23:59:59+08:00"
    assert moved["body"]["due_by"] == "2026-11-30T23:59:59+08:00"
    assert (moved["body"]["reason"], moved["body"]["moved"], moved["body"]["state"]) == (
        "calendar_changed", True, "on_track")
    assert not [e for e in outbox.events("sla_started") if e["body"].get("recomputed")]
    # The other instance picks up the reloaded books at its next sweep.
    other_instance.sweep(outbox)
    assert other_instance.calendars is books["calendars"]
    # Run again over the same books, nothing moves.
    again = run_job(clocks, outbox, "BANKA")
    assert (again["examined"], again["rescheduled"]) == (2, 0)
    assert len(outbox.events("sla_rescheduled")) == 1


DECLARED_2027 = """
timezone: Asia/Shanghai
default:
  years:
    2027:
      # As if the State Council gave Monday January 4 off as well, worked on Saturday February 13.
      holidays: [2027-01-01, 2027-01-04, 2027-02-05, 2027-02-08, 2027-02-09, 2027-02-10, 2027-02-11]
      working_days: [2027-02-13]
"""


def declared_2027(tmp_path):
    """The shipped calendars with 2027 published (the provisional rule kept for 2028 on)."""
    shipped = load_calendars()
    declared = load_calendars(write(tmp_path, DECLARED_2027))
    default = calendar_from_data("default", {}, base=declared.default, provisional=shipped.default.provisional)
    institutions = {code: calendar_from_data(code, {"business_hours": {
        "start": cal.business_start.strftime("%H:%M"), "end": cal.business_end.strftime("%H:%M")}}, base=default)
        for code, cal in shipped.institutions.items()}
    return CalendarBook(default=default, institutions=institutions)


def write(tmp_path, text: str):
    path = tmp_path / "calendars.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def test_a_clock_into_a_year_not_published_warns_provisionally_then_moves_when_it_is(db, now, outbox, tmp_path):
    books = {"calendars": CALENDARS}
    clocks = Clocks(db, now=now, load_calendar_book=lambda: books["calendars"])
    now.set(at(2026, 12, 20, 10, 0))
    received(clocks, outbox, no="BANKA-WORKING", policy="cbrc-2012")        # Dec 21 .. Jan 11 2027
    received(clocks, outbox, no="BANKA-EARLY", policy="cbrc-2012", received_at=at(2026, 11, 23, 10, 0))
    now.set(at(2027, 1, 5, 10, 0))
    received(clocks, outbox, no="BANKA-JANUARY", policy="cbrc-2012")        # Jan 6 .. Jan 26
    [view] = clocks.view("BANKA-WORKING")
    assert view["due_by"] == "2027-01-11T23:59:59+08:00" and view["provisional"] is True
    assert clocks.view("BANKA-EARLY")[0]["provisional"] is False
    started = {e["complaint_no"]: e["body"] for e in outbox.events("sla_started")}
    assert started["BANKA-WORKING"]["provisional"] is True and started["BANKA-EARLY"]["provisional"] is False
    # The clock warns on its provisional schedule: 3 working days before Jan 11 is Jan 6.
    now.set(at(2027, 1, 6, 23, 59, 59))
    fired = [p for p in sweep_all(clocks, outbox) if p["clock"] == "BANKA-WORKING/decision"]
    assert [p["label"] for p in fired] == ["3_working_days_before"]
    [warning] = [e for e in outbox.events("sla_warning") if e["complaint_no"] == "BANKA-WORKING"]
    assert warning["body"]["provisional"] is True
    # The State Council publishes 2027 with Monday January 4 off.
    books["calendars"] = declared_2027(tmp_path)
    job = run_job(clocks, outbox)
    assert (job["examined"], job["rescheduled"], job["confirmed"]) == (2, 1, 1)
    [view] = clocks.view("BANKA-WORKING")
    assert view["due_by"] == "2027-01-12T23:59:59+08:00" and view["provisional"] is False
    assert clocks.view("BANKA-JANUARY")[0] == dict(clocks.view("BANKA-JANUARY")[0], provisional=False,
                                                   due_by="2027-01-26T23:59:59+08:00")
    rescheduled = {e["complaint_no"]: e["body"] for e in outbox.events("sla_rescheduled")}
    assert rescheduled["BANKA-WORKING"] == dict(rescheduled["BANKA-WORKING"], previous_due_by=(
        "2027-01-11T23:59:59+08:00"), due_by="2027-01-12T23:59:59+08:00", moved=True, provisional=False,
        previous_provisional=True, reason="year_published", state="warning")
    assert rescheduled["BANKA-JANUARY"] == dict(rescheduled["BANKA-JANUARY"], moved=False, provisional=False,
                                                previous_due_by="2027-01-26T23:59:59+08:00",
                                                reason="year_published", state="on_track")
    # The warning that fired stays fired; the next one counts on the published year.
    doc = clocks.clocks.find_one({"_id": "BANKA-WORKING/decision"})
    assert [(p["label"], timeutil.local(p["at"]).date(), p["fired_at"] is not None) for p in doc["points"]] == [
        ("3_working_days_before", date(2027, 1, 7), True), ("1_working_days_before", date(2027, 1, 11), False),
        ("breach", date(2027, 1, 12), False)]


def test_no_due_date_is_an_alert_until_the_data_counts_it_and_a_job_starts_or_moves_it(db, now, outbox):
    from services.common.policy import BusinessCalendar, policies_from_data

    no_rule = CalendarBook(default=BusinessCalendar(code="default"))  # no provisional calendar
    complaints_only = policies_from_data({"policies": [{"code": "cbrc-2012", "clocks": [
        {"name": "decision", "limit": {"value": 15, "unit": "working_days"}}]}],
        "selection": [{"when": {"kind": "complaint"}, "policy": "cbrc-2012"}]})
    books = {"calendars": no_rule, "policies": complaints_only}
    clocks = Clocks(db, now=now, load_calendar_book=lambda: books["calendars"],
                    load_policy_book=lambda: books["policies"])
    now.set(at(2026, 12, 20, 10, 0))
    received(clocks, outbox, no="BANKA-NO-CALENDAR", policy="cbrc-2012")
    # A suggestion intake could find no policy for: it names none, and this data has none either.
    event = events.make_event("complaint_received", "BANKA-NO-POLICY", {
        "complaint_no": "BANKA-NO-POLICY", "institution": "BANKA", "branch": None, "kind": "suggestion",
        "channel": "web", "product": "credit_card", "received_at": timeutil.iso(now()), "policy": None,
        "due_by": None, "direct": False, "respondent_staff": [], "group_size": 1, "app_id": "cc-shandong"}, "intake")
    clocks.on_received(event, outbox)
    clocks.on_received(event, outbox)  # redelivered: kept once
    [view] = clocks.view("BANKA-NO-CALENDAR")
    assert view["due_by"] is None and view["state"] == "running"
    with pytest.raises(NotFound):
        clocks.view("BANKA-NO-POLICY")
    health = clocks.health()
    assert (health["clocks_without_due_date"], health["complaints_without_clock"]) == (1, 1)
    from prometheus_client import REGISTRY
    assert REGISTRY.get_sample_value("complaints_without_due_date", {"service": "sla"}) == 2
    # The operator fixes the data and runs the recompute.
    books["calendars"] = CALENDARS
    books["policies"] = BOOK
    job = run_job(clocks, outbox)
    assert (job["total"], job["started"], job["rescheduled"]) == (2, 1, 1)
    assert clocks.view("BANKA-NO-CALENDAR")[0]["due_by"] == "2027-01-11T23:59:59+08:00"
    [started] = [e for e in outbox.events("sla_started") if e["complaint_no"] == "BANKA-NO-POLICY"]
    assert started["body"]["policy"] == "suggestion" and started["body"]["due_by"] == "2027-01-04T23:59:59+08:00"
    [moved] = outbox.events("sla_rescheduled")
    assert moved["body"]["previous_due_by"] is None and moved["body"]["provisional"] is True
    health = clocks.health()
    assert (health["clocks_without_due_date"], health["complaints_without_clock"]) == (0, 0)
    assert REGISTRY.get_sample_value("complaints_without_due_date", {"service": "sla"}) == 0


def test_a_job_resumes_where_a_killed_instance_left_it_one_instance_at_a_time(db, now, outbox, monkeypatch,
                                                                                tmp_path):
    from services.sla import rescheduling

    monkeypatch.setattr(rescheduling, "BATCH", 3)
    books = {"calendars": CALENDARS}
    first = Clocks(db, now=now, load_calendar_book=lambda: books["calendars"])
    second = Clocks(db, now=now, load_calendar_book=lambda: books["calendars"])
    now.set(at(2026, 12, 20, 10, 0))
    for n in range(8):
        received(first, outbox, no=f"BANKA-MANY-{n}", policy="cbrc-2012")
    books["calendars"] = declared_2027(tmp_path)
    job = first.rescheduling.start()
    second.reload_if_changed()
    # The first instance works the (empty) unscheduled phase and one batch of clocks, then
    # dies holding the lease.
    claimed = first.rescheduling._claim()
    first.rescheduling._batch(first.rescheduling._batch(claimed, outbox), outbox)
    assert first.rescheduling.view(job["job_id"])["examined"] == 3
    assert second.rescheduling.work(outbox) is None  # the lease is the first's
    now.set(now() + rescheduling.LEASE + timedelta(seconds=1))
    done = second.rescheduling.work(outbox, budget=30)
    assert done["state"] == "done" and (done["examined"], done["rescheduled"]) == (8, 8)
    moved = [e["complaint_no"] for e in outbox.events("sla_rescheduled")]
    assert sorted(moved) == [f"BANKA-MANY-{n}" for n in range(8)]
    assert first.rescheduling.work(outbox) is None  # nothing left to do


def test_two_instances_sweeping_together_fire_each_point_once(db, now, outbox):
    first, second = Clocks(db, now=now), Clocks(db, now=now)
    now.set(at(2026, 9, 1, 10, 0))
    for n in range(40):
        received(first, outbox, no=f"RACE-{n:03d}", received_at=at(2026, 8, 1, 10, 0) + timedelta(hours=n))
    now.set(at(2026, 9, 20, 10, 0))
    pool = eventlet.GreenPool()
    results = [pool.spawn(sweep_all, instance, outbox) for instance in (first, second, first, second)]
    fired = [point for result in results for point in result.wait()]
    keys = [(p["clock"], p["label"]) for p in fired]
    assert len(keys) == len(set(keys)) == 40 * 3
    published = [e for e in outbox.events() if e["type"] in ("sla_warning", "sla_breached")]
    per_point = {(e["complaint_no"], e["body"]["clock"], e["body"].get("label", "breach")) for e in published}
    assert len(published) == len(per_point) == 120


def test_in_transaction_is_what_the_domain_uses(db):
    # The staging outbox above only sees committed transactions: an aborted one leaves nothing.
    outbox = StagingOutbox(db)

    def work(session):
        outbox.stage(session, {"_id": "x", "body": {}})
        raise RuntimeError("abort")

    with pytest.raises(RuntimeError):
        in_transaction(db, work)
    assert db["staged"].count_documents({}) == 0


def test_the_review_window_counts_from_the_decision_s_delivery_when_intake_had_it(clocks, outbox, now, caplog):
    """complaint_reopened's optional delivered_at: SLA checks the window from it, as intake did."""
    decided, delivered, requested = at(2026, 9, 1, 10, 0), at(2026, 9, 25, 10, 0), at(2026, 10, 10, 10, 0)
    for no, delivery in (("BANKA-DELIVERED", {"delivered_at": timeutil.iso(delivered)}), ("BANKA-UNSAID", {})):
        received(clocks, outbox, no=no, received_at=at(2026, 8, 25, 10, 0))
        now.set(requested)
        clocks.on_reopened(fact("complaint_reopened", no, requested, reason="对结果不满意",
                                decided_at=timeutil.iso(decided), decided_by_unit="BANKA-SD-JN", **delivery), outbox)
    out_of_window = [r.getMessage() for r in caplog.records if "out of the window" in r.getMessage()]
    # 39 days after the decision was recorded, 15 after it was delivered.
    assert [message.split()[2] for message in out_of_window] == ["BANKA-UNSAID"]
    started = {e["complaint_no"]: e["body"] for e in outbox.events("sla_started") if e["body"]["clock"] == "review"}
    assert set(started) == {"BANKA-DELIVERED", "BANKA-UNSAID"}
