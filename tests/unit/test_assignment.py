"""Transfers, rejections, escalation, misconduct referrals and recusal of one assignment."""

import json

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from services.common import events as catalogue
from services.common.access import Caller
from services.common.errors import Conflict, Forbidden, Invalid, NotFound
from services.routing.assignment import AssignmentPolicy, from_document, to_document
from services.routing.organization import load_organization
from services.routing.rules import DEFAULT_PATH, load_rules

ORG = load_organization()
BOOK = load_rules(DEFAULT_PATH, ORG)
POLICY = AssignmentPolicy(ORG, BOOK.reasons)

ZF = "BANKA-SD-YT-ZF"  # outlets under Yantai city branch
LS = "BANKA-SD-YT-LS"
YT = "BANKA-SD-YT"
KW = "BANKA-SD-WF-KW"  # an outlet under Weifang
SD = "BANKA-SD"
REASON = "客户账户开立于该行，属地管理 (the account is held there)"


def assert_catalogue(events):
    """Every event is a catalogue event whose body validates, and one outcome has one `at`."""
    for e in events:
        catalogue.make_event(e["type"], e["body"]["complaint_no"], e["body"], "routing")
    assert len({e["body"]["at"] for e in events}) <= 1


def actor(unit, *roles, staff_id=None):
    return Caller(staff_id or f"u-{unit}", unit, frozenset(roles or ("handler",)))


def start(branch=ZF, **fields):
    complaint = {"institution": "BANKA", "branch": branch, "kind": "complaint",
                 "channel": "phone", "product": "deposit", **fields}
    return POLICY.assign(BOOK.route(complaint), complaint_no="C1").state


def transferred(state, to_unit):
    state = POLICY.request_transfer(state, actor(state.accountable_unit), to_unit, REASON).state
    return POLICY.accept_transfer(state, actor(to_unit)).state


def rejected(state, to_unit):
    state = POLICY.request_transfer(state, actor(state.accountable_unit), to_unit, REASON).state
    return POLICY.reject_transfer(state, actor(to_unit), "不属于本行业务范围")


# -- assign and accept ---------------------------------------------------------------


def test_assign_takes_the_routing_decision():
    decision = BOOK.route({"institution": "BANKA", "branch": ZF, "kind": "complaint",
                           "product": "deposit", "staff_id": "A0025",
                           "amount_in_dispute": "9000.00"})
    state, events = POLICY.assign(decision, complaint_no="C1")
    assert (state.accountable_unit, state.department, state.office) == (YT, "CPD", "back")
    assert state.first_responder == {"unit": ZF, "staff": "A0025"}
    assert [e.trigger for e in state.escalations] == ["on_arrival"]
    assert [e["type"] for e in events] == ["complaint_escalated", "complaint_assigned"]
    escalated, assigned = (e["body"] for e in events)
    assert (escalated["from_unit"], escalated["to_unit"], escalated["cause"]) == (ZF, YT, "authority")
    assert assigned["escalated_on_arrival"] and assigned["complaint_no"] == "C1"
    assert (assigned["unit"], assigned["reason"], assigned["first_responder"]) == (
        YT, "routed", {"unit": ZF, "staff": "A0025"})
    assert_catalogue(events)


def test_a_complaint_within_the_outlets_authority_is_assigned_there_alone():
    state, events = POLICY.assign(BOOK.route({"institution": "BANKA", "branch": ZF,
                                              "kind": "complaint", "product": "deposit",
                                              "staff_id": "A0025", "amount_in_dispute": "300"}),
                                  complaint_no="C1")
    assert [e["type"] for e in events] == ["complaint_assigned"]
    assert events[0]["body"]["unit"] == ZF and not state.escalations


def test_accept_by_the_accountable_unit():
    state = start()
    with pytest.raises(Forbidden):
        POLICY.accept(state, actor(YT))
    with pytest.raises(Forbidden):
        POLICY.accept(state, actor(ZF, "auditor"))
    state, events = POLICY.accept(state, actor(ZF, staff_id="A0027"))
    assert (state.status, state.handler) == ("accepted", "A0027")
    assert events[0]["type"] == "complaint_accepted"
    with pytest.raises(Conflict):
        POLICY.accept(state, actor(ZF))


# -- transfers -----------------------------------------------------------------------


def test_sender_stays_accountable_until_the_receiver_accepts():
    state = start()
    pending, events = POLICY.request_transfer(state, actor(ZF), KW, REASON)
    assert pending.accountable_unit == ZF and pending.pending_transfer.to_unit == KW
    assert events[0]["type"] == "complaint_transfer_requested"
    assert events[0]["body"]["reason"] == REASON and events[0]["body"]["actor"] == "u-" + ZF
    with pytest.raises(Conflict):
        POLICY.request_transfer(pending, actor(ZF), LS, REASON)
    with pytest.raises(NotFound):  # a unit beside both does not even see it
        POLICY.accept_transfer(pending, actor(LS))
    with pytest.raises(Conflict):
        POLICY.accept(pending, actor(ZF))
    moved, events = POLICY.accept_transfer(pending, actor(KW, staff_id="A0100"))
    assert (moved.accountable_unit, moved.department, moved.handler) == (KW, "CPC", "A0100")
    assert moved.transfer_count == 1 and moved.passed_on == {ZF}
    assert moved.first_responder["unit"] == ZF  # the record of who first received it stays
    assert [e["type"] for e in events] == ["complaint_transferred", "complaint_assigned"]
    assert events[0]["body"]["transfers"] == 1
    assert (events[1]["body"]["unit"], events[1]["body"]["reason"]) == (KW, "transfer_accepted")
    assert_catalogue(events)


def test_a_transfer_needs_a_reason():
    for blank in ("", "   ", None, {"code": None, "text": ""}):
        with pytest.raises(Invalid):
            POLICY.request_transfer(start(), actor(ZF), KW, blank)


@pytest.mark.parametrize("reason", [
    {"code": "designed_by_higher_department"},
    {"code": "sold_by_agent", "text": "see notes"},
    "该理财产品系上级部门开发设计",
    "sold by an agent, not our staff",
    "合作机构开展的业务，应由其处理",
    "It is run by a partner institution",
    "法院已判决，不再受理",
    "The court has ruled",
    "公安已立案",
    "the police have a case",
    "监管已答复",
    "the regulator has answered the customer",
])
def test_never_valid_reasons_are_refused(reason):
    with pytest.raises(Invalid, match="never a valid ground"):
        POLICY.request_transfer(start(), actor(ZF), KW, reason)
    pending = POLICY.request_transfer(start(), actor(ZF), KW, REASON).state
    with pytest.raises(Invalid, match="never a valid ground"):
        POLICY.reject_transfer(pending, actor(KW), reason)


def test_bad_targets_are_refused():
    state = start()
    with pytest.raises(Invalid, match="unknown unit"):
        POLICY.request_transfer(state, actor(ZF), "NOPE", REASON)
    with pytest.raises(Invalid, match="another institution"):
        POLICY.request_transfer(state, actor(ZF), "INSA-SC", REASON)
    with pytest.raises(Conflict, match="already with"):
        POLICY.request_transfer(state, actor(ZF), ZF, REASON)
    with pytest.raises(NotFound):  # beside it, not above it: out of reach
        POLICY.request_transfer(state, actor(LS), KW, REASON)
    # a unit above may redirect a complaint of its subtree
    assert POLICY.request_transfer(state, actor(SD, "consumer_protection"), KW, REASON).state


def test_never_back_to_a_unit_that_passed_it_on():
    state = transferred(start(), KW)
    with pytest.raises(Conflict, match="never back and forth"):
        POLICY.request_transfer(state, actor(KW), ZF, REASON)
    state = transferred(state, LS)
    with pytest.raises(Conflict, match="never back and forth"):
        POLICY.request_transfer(state, actor(LS), KW, REASON)


# -- rejections go up, never back ----------------------------------------------------


@pytest.mark.parametrize("sender, receiver, lands", [
    (ZF, LS, YT),  # siblings: their city branch
    (ZF, KW, SD),  # cousins: the tier-1 branch above both cities
    (ZF, "BANKA-ZJ-WZ-LC", "BANKA"),  # other provinces: the head office
    (ZF, YT, SD),  # the receiver is the sender's parent: above the receiver
    (YT, ZF, SD),  # the receiver is below the sender: above the sender
])
def test_a_rejected_transfer_lands_above_both(sender, receiver, lands):
    state = start(branch=sender)
    assert state.accountable_unit == sender
    state, events = rejected(state, receiver)
    assert state.accountable_unit == lands
    assert (state.department, state.office) == ("CPD", "back")
    assert state.accountable_unit not in (sender, receiver)
    assert [e["type"] for e in events] == ["complaint_transfer_rejected", "complaint_assigned"]
    assert events[0]["body"]["escalated_to"] == lands
    assert (events[1]["body"]["unit"], events[1]["body"]["reason"]) == (lands, "transfer_rejected")
    assert state.escalations[-1].trigger == "transfer_rejected"
    assert_catalogue(events)
    assert sender in state.passed_on and receiver in state.refused_by
    assert state.transfer_count == 0 and state.pending_transfer is None
    with pytest.raises(Conflict, match="refused it"):
        POLICY.request_transfer(state, actor(lands), receiver, REASON)


def test_at_the_top_the_head_office_keeps_it():
    state = start(branch="BANKA")
    state, events = rejected(state, SD)
    assert state.accountable_unit == "BANKA" and events[0]["body"]["at_top"] is True
    assert "BANKA" not in state.passed_on


def test_the_head_office_cannot_refuse_upward():
    state, events = rejected(start(branch=SD), "BANKA")
    assert state.accountable_unit == "BANKA" and events[0]["body"]["at_top"] is True
    assert SD in state.passed_on


def test_only_the_receiver_rejects_and_needs_a_reason():
    pending = POLICY.request_transfer(start(), actor(ZF), KW, REASON).state
    with pytest.raises(Forbidden):
        POLICY.reject_transfer(pending, actor(ZF), "no")
    with pytest.raises(Invalid):
        POLICY.reject_transfer(pending, actor(KW), "  ")
    with pytest.raises(Conflict):  # nothing pending: a unit that sees it is told so
        POLICY.reject_transfer(start(), actor(ZF), "no")
    with pytest.raises(NotFound):  # ... and a unit that does not is told nothing
        POLICY.reject_transfer(start(), actor(KW), "no")


# -- escalation ----------------------------------------------------------------------


def test_escalate_to_the_parent_lead_department():
    state, events = POLICY.escalate(start(), actor(ZF), "客户要求超出本网点权限")
    assert (state.accountable_unit, state.department, state.status) == (YT, "CPD", "assigned")
    assert state.handler is not None and ZF in state.passed_on
    assert [e["type"] for e in events] == ["complaint_escalated", "complaint_assigned"]
    assert events[0]["body"]["cause"] == "handler" and events[0]["body"]["to_unit"] == YT
    assert events[1]["body"]["reason"] == "escalated"
    assert_catalogue(events)
    with pytest.raises(Invalid):
        POLICY.escalate(start(), actor(ZF), "")


def test_escalation_may_return_to_a_unit_that_passed_it_on_from_below():
    state = transferred(start(branch=YT), ZF)  # the city passed it down to an outlet
    assert YT in state.passed_on
    state = POLICY.escalate(state, actor(ZF), "需上级协调").state
    assert state.accountable_unit == YT


def test_escalation_at_head_office_stays_but_is_recorded():
    state = start(branch="BANKA", product="credit_card")
    assert state.department == "CARD"
    state, events = POLICY.escalate(state, actor("BANKA"), "重大疑难")
    assert (state.accountable_unit, state.department) == ("BANKA", "CPD")
    assert events[0]["body"]["at_top"] is True and len(state.escalations) == 1


def test_manual_escalation_waits_for_a_pending_transfer():
    pending = POLICY.request_transfer(start(), actor(ZF), KW, REASON).state
    with pytest.raises(Conflict):
        POLICY.escalate(pending, actor(ZF), "up")


def test_breach_escalation_overtakes_a_pending_transfer_and_leaves_the_clock_alone():
    pending = POLICY.request_transfer(start(), actor(ZF), KW, REASON).state
    state, events = POLICY.escalate_for_breach(
        pending, {"type": "sla_breached", "policy": "cbirc-2020", "due_by": "2026-12-07"})
    assert state.accountable_unit == YT and state.pending_transfer is None
    assert [e["type"] for e in events] == [
        "complaint_transfer_cancelled", "complaint_escalated", "complaint_assigned"]
    escalated = events[1]["body"]
    assert escalated["cause"] == "sla_breach" and "cbirc-2020" in escalated["reason"]
    assert escalated["actor"] == "routing"
    for e in events:
        assert not {"due_by", "clock", "paused", "restarted"} & set(e["body"])
    assert_catalogue(events)


def test_mass_complaint_goes_up_and_is_reported():
    state, events = POLICY.escalate_for_mass_complaint(start(), "同一小区 30 户")
    assert state.accountable_unit == YT and "regulator_report" in state.flags
    assert events[0]["body"]["cause"] == "mass_complaint"


def test_a_review_goes_to_the_unit_above_the_one_that_decided():
    state = transferred(start(), KW)
    state, events = POLICY.review(state, KW, "客户申请核查")
    assert (state.accountable_unit, state.department) == ("BANKA-SD-WF", "CPD")
    assert [e["type"] for e in events] == ["complaint_assigned"]
    assert events[0]["body"]["reason"] == "review"
    assert events[0]["body"]["decided_by_unit"] == KW
    assert_catalogue(events)
    # a head office decision is reviewed by the head office's lead department
    state, _ = POLICY.review(start(branch="BANKA", product="credit_card"), "BANKA", "核查")
    assert (state.accountable_unit, state.department) == ("BANKA", "CPD")
    with pytest.raises(Invalid):
        POLICY.review(state, "NOPE", "核查")


def test_a_major_complaint_goes_to_head_office_as_an_escalation_with_its_flags():
    complaint = {"institution": "BANKA", "branch": ZF, "kind": "complaint", "channel": "visit",
                 "product": "deposit", "group_size": 25}
    state, events = POLICY.assign(BOOK.route(complaint), complaint_no="C1")
    assert (state.accountable_unit, state.department) == ("BANKA", "CPD")
    assert [e["type"] for e in events] == ["complaint_escalated", "complaint_assigned"]
    assert events[0]["body"]["cause"] == "major"
    assigned = events[1]["body"]
    assert assigned["flags"] == ["emergency_plan", "regulator_report"]
    assert assigned["priority"] == "first" and assigned["first_responder"]["unit"] == ZF
    assert_catalogue(events)


def test_a_direct_complaint_is_assigned_at_head_office_first():
    complaint = {"institution": "BANKA", "branch": ZF, "kind": "complaint", "channel": "phone",
                 "product": "deposit", "direct": True}
    state, events = POLICY.assign(BOOK.route(complaint), complaint_no="C1")
    assert [e["type"] for e in events] == ["complaint_assigned"]
    assert (events[0]["body"]["unit"], events[0]["body"]["department"]) == ("BANKA", "CPD")
    assert events[0]["body"]["priority"] == "first"


# -- misconduct and recusal ----------------------------------------------------------


def test_misconduct_goes_to_discipline_inspection_in_parallel():
    state = start()
    new, events = POLICY.flag_misconduct(state, actor(ZF), "collusion", "客户经理与中介串通")
    assert new.accountable_unit == state.accountable_unit == ZF
    assert (new.referrals[0].unit, new.referrals[0].department) == (YT, "DISC")
    assert events[0]["type"] == "misconduct_referred"
    assert (events[0]["body"]["unit"], events[0]["body"]["department"]) == (YT, "DISC")
    assert_catalogue(events)
    with pytest.raises(Invalid):
        POLICY.flag_misconduct(state, actor(ZF), "gossip", "x")
    with pytest.raises(Invalid):
        POLICY.flag_misconduct(state, actor(ZF), "threats", "")
    inspector = actor(YT, "inspector")
    assert POLICY.flag_misconduct(state, inspector, "threats", "威胁客户").state.referrals


def test_respondent_staff_may_not_act_nor_be_assigned():
    state = start(respondent_staff=["A0027", "A0025"])
    assert state.handler is None  # the outlet's only lead contact is named
    named = actor(ZF, staff_id="A0027")
    for act in (lambda: POLICY.accept(state, named),
                lambda: POLICY.request_transfer(state, named, KW, REASON),
                lambda: POLICY.escalate(state, named, "up"),
                lambda: POLICY.flag_misconduct(state, named, "threats", "x")):
        with pytest.raises(Forbidden, match="recuse"):
            act()
    up = POLICY.escalate(state, actor(ZF), "回避").state
    assert up.handler is not None and up.handler not in up.respondent_staff
    pending = POLICY.request_transfer(up, actor(YT), KW, REASON).state
    with pytest.raises(Forbidden, match="recuse"):
        POLICY.accept_transfer(pending, actor(KW, staff_id="A0025"))


# -- properties ----------------------------------------------------------------------

BANK_UNITS = sorted(u for u in ORG.units if ORG.unit(u).institution == "BANKA")
ANY_UNIT = st.sampled_from(BANK_UNITS + ["INSA-SC", "NOPE"])
# Transfers are listed twice: escalations alone soon carry everything to the head office.
STEP = st.one_of(
    st.tuples(st.just("transfer"), ANY_UNIT),
    st.tuples(st.just("transfer"), ANY_UNIT),
    st.tuples(st.just("accept_transfer"), st.booleans()),
    st.tuples(st.just("accept_transfer"), st.booleans()),
    st.tuples(st.just("reject_transfer"), st.booleans()),
    st.tuples(st.just("accept"), st.booleans()),
    st.tuples(st.just("escalate"), st.booleans()),
    st.tuples(st.just("breach"), st.booleans()),
    st.tuples(st.just("mass"), st.booleans()),
)
UPWARD = {"escalate", "breach", "mass", "reject_transfer"}


def apply(state, op, arg):
    here = state.accountable_unit
    receiver = state.pending_transfer.to_unit if state.pending_transfer else here
    if op == "transfer":
        return POLICY.request_transfer(state, actor(here), arg, REASON)
    if op == "accept_transfer":
        return POLICY.accept_transfer(state, actor(receiver if arg else here))
    if op == "reject_transfer":
        return POLICY.reject_transfer(state, actor(receiver if arg else here), "不属实")
    if op == "accept":
        return POLICY.accept(state, actor(here))
    if op == "escalate":
        return POLICY.escalate(state, actor(here), "需上级处理")
    if op == "breach":
        return POLICY.escalate_for_breach(state, {"policy": "cbirc-2020"})
    return POLICY.escalate_for_mass_complaint(state)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(branch=st.sampled_from(BANK_UNITS), steps=st.lists(STEP, max_size=25))
def test_no_sequence_sends_it_back_ping_pongs_or_loses_accountability(branch, steps):
    state = start(branch=branch)
    handed_away: set[str] = set()  # our own record of every unit it left
    accepted_transfers = 0
    for op, arg in steps:
        before = state
        try:
            state, events = apply(state, op, arg)
        except (Conflict, Invalid, Forbidden, NotFound):
            continue
        assert_catalogue(events)
        assert from_document(json.loads(json.dumps(to_document(state)))) == state
        old, new = before.accountable_unit, state.accountable_unit
        # exactly one accountable unit, in the organization and the same institution
        assert isinstance(new, str) and ORG.unit(new).institution == "BANKA"
        assert ORG.department(new, code=state.department) is not None
        if state.pending_transfer is not None:
            assert state.pending_transfer.from_unit == new
            assert state.pending_transfer.to_unit not in state.barred | {new}
        if op == "accept_transfer":
            accepted_transfers += 1
        assert state.transfer_count == accepted_transfers
        if new == old:
            continue
        if op == "accept_transfer":
            # sideways or down: never to a unit that passed it on or refused it
            assert new not in handed_away and new not in before.barred
        else:
            # the only other way to move is up, strictly above where it was
            assert op in UPWARD
            assert new in {u.code for u in ORG.ancestors(old)}
        if op == "reject_transfer":
            t = before.pending_transfer
            assert new != t.from_unit  # never back to the sender
            # the receiver keeps it only when it is the head office: nobody is above it
            assert new != t.to_unit or ORG.parent(new) is None
        handed_away.add(old)
        assert handed_away <= state.passed_on


@settings(max_examples=200, deadline=None)
@given(branch=st.sampled_from(BANK_UNITS), targets=st.lists(st.sampled_from(BANK_UNITS),
                                                            max_size=15))
def test_accepted_transfers_never_revisit_a_unit(branch, targets):
    state = start(branch=branch)
    visited = [state.accountable_unit]
    for to_unit in targets:
        try:
            state = transferred(state, to_unit)
        except Conflict:
            assert to_unit in visited
            continue
        visited.append(state.accountable_unit)
    assert len(visited) == len(set(visited))  # no A -> B -> A, ever
    assert state.transfer_count == len(visited) - 1
