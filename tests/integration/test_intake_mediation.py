"""Intake follows a referral to mediation: the status moves to ``referred``, the call center
hears it, the customer is told the organization and its contact, and the complaint shows the
referral as it stands, whatever order its facts arrive in."""
from datetime import timedelta

import pytest
from nameko.standalone.rpc import ClusterRpcProxy

from services.common import amqp, timeutil
from services.intake.service import IntakeService
from tests.support.harness import accepted, listening, publish_fact, wait_until

pytestmark = pytest.mark.integration

ORGANIZATION = {"organization": "SD-BIMC", "organization_name": "山东省银行业保险业纠纷调解中心",
                "contact": {"phone": "0531-12345678", "address": "济南市历下区"}}


def snapshot(referral_id, status, as_of, **extra):
    return {"referral_id": referral_id, "status": status, "as_of": timeutil.iso(as_of),
            "organization": {"code": "SD-BIMC", "name": ORGANIZATION["organization_name"],
                             "contact": ORGANIZATION["contact"]}, **extra}


def referred(center, complaint_no, at):
    referral_id = f"{complaint_no}-M1"
    publish_fact(center, "complaint_referred", complaint_no, "mediation", at=at, referral_id=referral_id,
                 reason="协商未果", mediation=snapshot(referral_id, "referred", at), **ORGANIZATION)
    return referral_id


def accepted_by_mediator(center, complaint_no, at):
    referral_id = f"{complaint_no}-M1"
    publish_fact(center, "mediation_status_changed", complaint_no, "mediation", at=at, referral_id=referral_id,
                 organization="SD-BIMC", status="accepted", previous="referred", callback_id="evt-1",
                 occurred_at=timeutil.iso(at), ended=False, agreement=None,
                 mediation=snapshot(referral_id, "accepted", at))


@pytest.fixture
def intake(settings, run_services, center):
    with listening(settings.amqp_uri, amqp.OUTBOUND_EXCHANGE) as outbound, \
            listening(settings.amqp_uri, amqp.NOTIFICATIONS_EXCHANGE) as notices, \
            run_services(settings, IntakeService), ClusterRpcProxy(settings.nameko_config()) as rpc:
        complaint_no = accepted(center, outbound, branch="BANKA-SD-YT")
        publish_fact(center, "complaint_assigned", complaint_no, "routing", unit="BANKA-SD-YT", department=None,
                     office=None, reason="routed", flags=[])
        wait_until(lambda: rpc.intake.get(complaint_no, None)["status"] == "assigned", "assigned")
        yield complaint_no, outbound, notices, rpc


def test_a_referral_is_heard_by_the_call_center_and_told_to_the_customer(intake, center):
    complaint_no, outbound, notices, rpc = intake
    assert "mediation" in rpc.intake.get(complaint_no, None)["allowed_actions"]
    referral_id = referred(center, complaint_no, timeutil.now())
    [status] = outbound.wait_for(lambda m: m["routing_key"] == "status.cc-shandong"
                                 and m["body"]["status"] == "referred")
    assert status["body"]["complaint_no"] == complaint_no
    assert status["body"]["organization"] == "SD-BIMC" and status["body"]["referral_id"] == referral_id
    [notice] = notices.wait_for(lambda m: m["body"]["template"] == "referred")
    assert notice["body"]["to"] == "13800138000"
    assert notice["body"]["params"]["organization_name"] == ORGANIZATION["organization_name"]
    assert notice["body"]["params"]["contact"]["phone"] == "0531-12345678"
    view = wait_until(lambda: (v := rpc.intake.get(complaint_no, None))["status"] == "referred" and v, "referred")
    assert view["mediation"]["referral_id"] == referral_id and view["mediation"]["status"] == "referred"
    assert "mediation" not in view["allowed_actions"] and "decision" in view["allowed_actions"]
    referral_entries = [h for h in view["history"] if h["type"] == "complaint_referred"]
    assert len(referral_entries) == 1
    # The proof of the notice, beside the fact it tells of.
    [told] = [h for h in view["history"] if h["type"] == "notice_requested" and h["details"]["template"] == "referred"]
    assert told["details"]["tells_of"]["type"] == "complaint_referred"


def test_the_referral_moves_the_status_even_after_a_later_fact_of_it(intake, center):
    complaint_no, outbound, notices, rpc = intake
    referred_at = timeutil.now()
    accepted_by_mediator(center, complaint_no, referred_at + timedelta(seconds=5))
    wait_until(lambda: rpc.intake.get(complaint_no, None)["mediation"], "the later fact was applied first")
    referred(center, complaint_no, referred_at)
    view = wait_until(lambda: (v := rpc.intake.get(complaint_no, None))["status"] == "referred" and v, "referred")
    assert view["mediation"]["status"] == "accepted"  # the newer state of the referral stays
    facts = [h["type"] for h in view["history"] if h["type"] != "notice_requested"]
    assert facts[-2:] == ["complaint_referred", "mediation_status_changed"]
