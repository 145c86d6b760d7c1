"""The services together over the real broker and store, as a call center sees them."""
from datetime import timedelta

import pytest
from nameko.standalone.rpc import ClusterRpcProxy

from services.common import amqp, timeutil
from services.intake.service import IntakeService
from services.routing.service import RoutingService
from services.sla.service import SlaService
from tests.support.harness import listening, publish_fact, submission, wait_until

pytestmark = pytest.mark.integration


def statuses_of(listener, complaint_no):
    return [m["body"]["status"] for m in listener.drain()
            if m["routing_key"].startswith("status.") and m["body"]["complaint_no"] == complaint_no]


@pytest.fixture
def platform(settings, run_services, center):
    """Intake, routing and SLA running; a call center and what it hears; RPC."""
    with listening(settings.amqp_uri, amqp.OUTBOUND_EXCHANGE) as outbound, \
            run_services(settings, IntakeService, RoutingService, SlaService), \
            ClusterRpcProxy(settings.nameko_config()) as rpc:
        yield center, outbound, rpc


def received_days_ago(center, outbound, days: int) -> dict:
    """The receipt of a complaint received at a Yantai branch ``days`` ago."""
    received_at = (timeutil.now() - timedelta(days=days)).replace(microsecond=0)
    message_id = center.send(submission(branch="BANKA-SD-YT", received_at=received_at.isoformat()))
    [receipt] = outbound.wait_for(lambda m: m["body"].get("message_id") == message_id)
    return receipt["body"]


def test_a_complaint_received_20_days_ago_breaches_and_is_escalated(platform):
    center, outbound, rpc = platform
    receipt = received_days_ago(center, outbound, 20)
    number = receipt["complaint_no"]
    # 15 calendar days after the day of receipt: long past.
    assert timeutil.parse(receipt["due_by"]) < timeutil.now()

    def escalated():
        view = rpc.intake.get(number, None)
        # The escalation and the assignment it brings are two facts that may arrive in
        # either order: wait for both.
        done = (view["sla"]["state"] == "breached" and view["unit"] == "BANKA-SD" and view["status"] == "escalated"
                and (view["assignment"] or {}).get("unit") == "BANKA-SD")
        return view if done else None

    view = wait_until(escalated, "the breach escalated the complaint to the tier-1 branch", timeout=60)
    assert view["first_responder"]["unit"] == "BANKA-SD-YT"  # accountable first, on record
    assert view["assignment"]["unit"] == "BANKA-SD"
    assert view["assignment"]["office"] == "back"  # the consumer-protection department
    types = [entry["type"] for entry in view["history"]]
    assert types.index("sla_breached") < types.index("complaint_escalated")
    wait_until(lambda: "escalated" in statuses_of(outbound, number), "the call center heard of the escalation")


def test_a_complaint_received_13_days_ago_warns_and_a_decision_in_time_is_met(platform):
    center, outbound, rpc = platform
    number = received_days_ago(center, outbound, 13)["complaint_no"]
    warned = wait_until(lambda: rpc.intake.get(number, None)["sla"]["state"] == "warning", "the clock warned")
    assert warned
    handler = {"sub": "banka-sd-yt-handler", "unit": "BANKA-SD-YT", "roles": ["handler"]}
    wait_until(lambda: rpc.intake.get(number, None)["assignment"], "routed")
    rpc.intake.act(number, "decision", {"outcome": "partially_upheld", "message": "部分退还"}, handler, None)
    wait_until(lambda: rpc.intake.get(number, None)["sla"]["state"] == "met", "the decision met the clock")
    assert "escalated" not in statuses_of(outbound, number)


def test_a_mass_complaint_goes_up_flagged_for_the_regulator(platform):
    center, outbound, rpc = platform
    message_id = center.send(submission(branch="BANKA-SD-YT-ZF"))
    [receipt] = outbound.wait_for(lambda m: m["body"].get("message_id") == message_id)
    number = receipt["body"]["complaint_no"]
    wait_until(lambda: rpc.intake.get(number, None)["assignment"], "routed")
    publish_fact(center, "mass_complaint_detected", number, "reporting", group_id="G-2026-11-credit-card-fee",
                 group_size=37, note="信用卡年费集中投诉")
    view = wait_until(lambda: (v := rpc.intake.get(number, None))["unit"] == "BANKA-SD-YT"
                      and v["status"] == "escalated" and v, "the mass complaint went up a level")
    assert view["assignment"]["unit"] == "BANKA-SD-YT"
    assert "regulator_report" in rpc.routing.assignment(number, None)["flags"]
