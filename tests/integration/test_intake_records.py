"""Intake's record after receipt: the actions it owns and the facts it follows."""
from datetime import timedelta

import pytest
from nameko.standalone.rpc import ClusterRpcProxy

from services.common import amqp, timeutil
from services.common.errors import Conflict, Forbidden, Invalid, NotFound
from services.intake.service import IntakeService
from tests.support.harness import accepted, listening, publish_fact, wait_until

pytestmark = pytest.mark.integration

HANDLER = {"sub": "sd-jn-001", "unit": "BANKA-SD", "roles": ["handler"]}







def test_facts_from_routing_and_sla_reach_the_record_and_the_center(settings, run_services, center):
    with listening(settings.amqp_uri, amqp.OUTBOUND_EXCHANGE) as outbound, \
            listening(settings.amqp_uri, amqp.NOTIFICATIONS_EXCHANGE) as notices, \
            run_services(settings, IntakeService), ClusterRpcProxy(settings.nameko_config()) as rpc:
        complaint_no = accepted(center, outbound, branch="BANKA-SD-JN")
        publish_fact(center, "complaint_assigned", complaint_no, "routing", unit="BANKA-SD-JN",
                     department="BANKA-SD-JN-RETAIL", office="front", handler="sd-jn-001", reason="routed",
                     flags=[])
        [assigned] = outbound.wait_for(lambda m: m["routing_key"] == "status.cc-shandong"
                                       and m["body"]["status"] == "assigned")
        assert assigned["body"]["complaint_no"] == complaint_no
        assert assigned["body"]["unit"] == "BANKA-SD-JN"

        later = (timeutil.now() + timedelta(days=15)).replace(microsecond=0)  # BSON keeps milliseconds
        publish_fact(center, "sla_extended", complaint_no, "sla", policy="cbirc-2020", clock="decision",
                     due_by=timeutil.iso(later), previous_due_by=None, total=30, reason="需要调取录音核实",
                     approved_by=["supervisor"])
        [extended] = outbound.wait_for(lambda m: m["body"].get("status") == "extended")
        assert extended["body"]["reason"] == "需要调取录音核实"
        [told] = notices.wait_for(lambda m: m["body"]["template"] == "extended")
        assert told["body"]["params"]["due_by"] == timeutil.iso(later)
        assert told["body"]["params"]["reason"] == "需要调取录音核实"

        view = rpc.intake.get(complaint_no, None)
        assert view["status"] == "assigned"
        assert view["assignment"] == {"unit": "BANKA-SD-JN", "department": "BANKA-SD-JN-RETAIL", "office": "front",
                                      "handler": "sd-jn-001"}
        assert view["sla"]["due_by"] == timeutil.iso(later)
        assert [h["type"] for h in view["history"]] == [
            "complaint_received", "notice_requested", "complaint_assigned", "sla_extended", "notice_requested"]
        assert [h["details"]["template"] for h in view["history"] if h["type"] == "notice_requested"] == [
            "acknowledged", "extended"]


def test_an_older_fact_arriving_late_changes_no_state(settings, run_services, center):
    with listening(settings.amqp_uri, amqp.OUTBOUND_EXCHANGE) as outbound, \
            run_services(settings, IntakeService), ClusterRpcProxy(settings.nameko_config()) as rpc:
        complaint_no = accepted(center, outbound)
        start = timeutil.now()
        publish_fact(center, "complaint_assigned", complaint_no, "routing", at=start, unit="BANKA-SD",
                     department=None, office=None, reason="routed", flags=[])
        wait_until(lambda: rpc.intake.get(complaint_no, None)["status"] == "assigned", "the assignment was applied")
        publish_fact(center, "complaint_transferred", complaint_no, "routing", at=start + timedelta(seconds=2),
                     from_unit="BANKA-SD", to_unit="BANKA-ZJ", transfers=1)
        wait_until(lambda: rpc.intake.get(complaint_no, None)["unit"] == "BANKA-ZJ", "the transfer was applied")
        # The request that preceded the transfer arrives after it: history keeps it, state does not move back.
        publish_fact(center, "complaint_transfer_requested", complaint_no, "routing", at=start + timedelta(seconds=1),
                     from_unit="BANKA-SD", to_unit="BANKA-ZJ", reason="账户开立在浙江分行")
        wait_until(lambda: "complaint_transfer_requested" in [
            entry["type"] for entry in rpc.intake.get(complaint_no, None)["history"]], "the late fact was recorded")
        view = rpc.intake.get(complaint_no, None)
        assert view["unit"] == "BANKA-ZJ"
        assert view["status"] == "in_progress"  # the accepted transfer; never back to transfer_pending


def test_decision_close_and_review(settings, run_services, center):
    with listening(settings.amqp_uri, amqp.OUTBOUND_EXCHANGE) as outbound, \
            listening(settings.amqp_uri, amqp.NOTIFICATIONS_EXCHANGE) as notices, \
            listening(settings.amqp_uri, "intake.events") as facts, \
            run_services(settings, IntakeService), ClusterRpcProxy(settings.nameko_config()) as rpc:
        complaint_no = accepted(center, outbound, branch="BANKA-SD")
        with pytest.raises(Conflict):
            rpc.intake.act(complaint_no, "close", {"satisfaction": "satisfied", "root_cause": "other"}, HANDLER, None)
        publish_fact(center, "complaint_assigned", complaint_no, "routing", unit="BANKA-SD", department=None,
                     office=None, reason="routed", flags=[])
        wait_until(lambda: rpc.intake.get(complaint_no, None)["status"] == "assigned", "assigned")

        with pytest.raises(Invalid) as invalid:
            rpc.intake.act(complaint_no, "decision", {"outcome": "maybe"}, HANDLER, None)
        assert set(invalid.value.details) == {"message"}
        with pytest.raises(NotFound):
            rpc.intake.act(complaint_no, "decision", {"outcome": "upheld", "message": "退还"}, HANDLER, ["BANKA-ZJ"])
        decided = rpc.intake.act(complaint_no, "decision", {"outcome": "upheld", "remedy": "refund", "amount": "300",
                                                            "message": "经核实，年费已退还。"}, HANDLER, ["BANKA-SD"])
        assert decided["status"] == "decided"
        [notice] = notices.wait_for(lambda m: m["body"]["template"] == "decided")
        assert notice["body"]["params"]["remedies"] == ["review", "mediation", "arbitration", "litigation"]
        assert notice["body"]["params"]["review_until"]  # how long the customer may ask for a review
        assert notice["body"]["params"]["amount"] == "300.00"
        [event] = facts.wait_for(lambda m: m["routing_key"] == "complaint_decided")
        assert event["body"]["body"]["outcome"] == "upheld"

        with pytest.raises(Invalid) as invalid:
            rpc.intake.act(complaint_no, "close", {"satisfaction": "satisfied"}, HANDLER, None)
        assert invalid.value.details == {"root_cause": ["is required"]}
        closed = rpc.intake.act(complaint_no, "close", {"satisfaction": "unsatisfied",
                                                        "root_cause": "fees_and_pricing"}, HANDLER, None)
        assert closed["status"] == "closed"
        review_request = {"reason": "客户对处理结果不满意，书面申请核查"}
        reopened = rpc.intake.act(complaint_no, "reopen", review_request, HANDLER, None)
        assert reopened["status"] == "reopened"
        [review] = facts.wait_for(lambda m: m["routing_key"] == "complaint_reopened")
        assert review["body"]["body"]["decided_by_unit"] == "BANKA-SD"
        told = outbound.wait_for(lambda m: m["routing_key"].startswith("status."), count=4)
        # Each change's message leaves when its own worker ends: their order on the wire is
        # not promised, each carries its time (`at`).
        assert sorted(m["body"]["status"] for m in told) == ["assigned", "closed", "decided", "reopened"]
        in_time_order = sorted(told, key=lambda m: timeutil.parse(m["body"]["at"]))
        assert [m["body"]["status"] for m in in_time_order] == ["assigned", "decided", "closed", "reopened"]


def test_recusal_and_roles(settings, run_services, center):
    with listening(settings.amqp_uri, amqp.OUTBOUND_EXCHANGE) as outbound, \
            run_services(settings, IntakeService), ClusterRpcProxy(settings.nameko_config()) as rpc:
        complaint_no = accepted(center, outbound, respondent_staff=["sd-jn-001"])
        publish_fact(center, "complaint_assigned", complaint_no, "routing", unit="BANKA", department=None,
                     office=None, reason="routed", flags=[])
        wait_until(lambda: rpc.intake.get(complaint_no, None)["status"] == "assigned", "assigned")
        with pytest.raises(Forbidden):
            rpc.intake.act(complaint_no, "decision", {"outcome": "rejected", "message": "无责"}, HANDLER, None)
        with pytest.raises(Forbidden):
            rpc.intake.act(complaint_no, "decision", {"outcome": "rejected", "message": "无责"},
                           {"sub": "audit-1", "unit": "BANKA", "roles": ["auditor"]}, None)
