"""Approvals and pause grounds without a broker: the grounds in the policy data, an event
type several services publish, the report of paused time."""
from copy import copy
from datetime import datetime, timedelta

import pytest
import yaml

from services.common import amqp, approvals, events
from services.common.config import Settings
from services.common.policy import SHANGHAI, PolicyError
from services.common.policy.engine import DEFAULT_POLICIES_PATH
from services.common.policy.grounds import load_pause_grounds, pause_grounds_from_data
from services.sla.clocks import books, paused_time


def test_the_shipped_pause_grounds_are_the_regulations_each_with_evidence_and_approvers():
    grounds = load_pause_grounds()
    assert set(grounds) == {"third_party_appraisal", "mediation"}
    assert all(ground.evidence and ground.approval == ("supervisor",) for ground in grounds.values())
    assert grounds["mediation"].source == "Order 3/2020 Art. 23"


def test_a_ground_may_waive_its_evidence_in_the_data():
    [ground] = pause_grounds_from_data({"pause_grounds": [
        {"code": "customer_unreachable", "evidence": "通话记录", "evidence_required": False, "approval": "none"}]}
    ).values()
    assert (ground.evidence_required, ground.approval) == (False, ())


def test_the_clocks_read_the_pause_grounds_of_the_policies_file_the_settings_name(tmp_path):
    raw = yaml.safe_load(DEFAULT_POLICIES_PATH.read_text(encoding="utf-8"))
    raw["pause_grounds"] = [{"code": "customer_abroad", "evidence": "出境记录", "approval": ["supervisor"]}]
    path = tmp_path / "policies.yaml"
    path.write_text(yaml.safe_dump(raw, allow_unicode=True), encoding="utf-8")
    assert set(books(Settings(policies_path=str(path)))["load_grounds"]()) == {"customer_abroad"}
    assert set(books(Settings())["load_grounds"]()) == {"third_party_appraisal", "mediation"}


@pytest.mark.parametrize("ground,problem", [
    ({"code": "customer_abroad", "evidence": "机票", "approval": ["chairman"]}, "chairman"),
    ({"code": "customer_abroad", "approval": ["supervisor"]}, "evidence"),
    ({"evidence": "x"}, "code"),
])
def test_a_broken_ground_is_refused(ground, problem):
    with pytest.raises(PolicyError, match=problem):
        pause_grounds_from_data({"pause_grounds": [ground]})


def test_an_event_type_several_services_publish_reaches_one_queue_of_each_subscriber(monkeypatch):
    shared = events.EventType("approval_decided", ("sla", "mediation"), events.ApprovalDecided, ("intake",))
    monkeypatch.setitem(events.CATALOGUE, "approval_decided", shared)
    body = {"complaint_no": "C1", "at": "2026-11-24T09:00:00+08:00", "actor": "sd-cpd", "approval_id": "mediation-1",
            "action": "raise_authority", "decision": "approved", "note": "同意", "requested_by": "yt-001"}
    assert events.make_event("approval_decided", "C1", body, "mediation")["producer"] == "mediation"
    assert events.make_event("approval_decided", "C1", body, "sla")["producer"] == "sla"
    with pytest.raises(events.UnknownEvent):
        events.make_event("approval_decided", "C1", body, "routing")
    work = amqp.subscriber_queues("intake", "approval_decided", (1.0,))[0]
    # What is declared and consumed is a copy of the queue: it must keep every exchange.
    declared = copy(work)
    bound = {binding.exchange.name for binding in declared.bindings}
    assert declared.name == "intake.approval_decided" and bound == {"sla.events", "mediation.events"}
    assert "mediation.events" in {exchange.name for exchange in amqp.all_exchanges()}


def test_an_approval_names_the_service_that_keeps_it():
    assert approvals.owner_of("sla-0f6c2d0e8f6a4f0e9b1d2c3a4b5c6d7e") == "sla"
    assert approvals.owner_of("mediation-0f6c") == "mediation"


def at(*args):
    return datetime(*args, tzinfo=SHANGHAI)


def test_paused_time_is_reported_in_all_and_by_ground():
    pauses = [
        {"start": at(2026, 9, 21, 9, 0), "end": at(2026, 9, 22, 9, 0), "ground": "third_party_appraisal"},
        {"start": at(2026, 9, 23, 9, 0), "end": None, "ground": "mediation"},
        {"start": at(2026, 9, 1, 9, 0), "end": at(2026, 9, 1, 10, 0)},  # from before grounds were asked for
    ]
    now = at(2026, 9, 23, 9, 0) + timedelta(hours=5)
    assert paused_time(pauses, now) == {"seconds": 86400 + 5 * 3600 + 3600, "by_ground": {
        "third_party_appraisal": 86400, "mediation": 5 * 3600, "unstated": 3600}}
