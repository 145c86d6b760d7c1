"""Time limits the data and the call center set, over the real broker and store with intake
and SLA: the reply time promised for a suggestion is its limit (receipt, acknowledgement,
view, clock, and a restart on new facts); an institution in same-day mode for a period gets
the same-day policy for what it received on those days, and the default outside them."""
import dataclasses
from contextlib import contextmanager
from datetime import datetime, time, timedelta

import pytest
from nameko.standalone.rpc import ClusterRpcProxy

from services.common import amqp, timeutil
from services.common.policy import SHANGHAI, end_of_day, load_calendars
from services.common.store import database
from services.intake.service import IntakeService
from services.sla.service import SlaService
from tests.support.calendars import write_policies
from tests.support.harness import listening, submission, wait_until

pytestmark = pytest.mark.integration

DEFAULTS = [{"when": {"kind": "consultation"}, "policy": "consultation-24h"},
            {"when": {"kind": "suggestion"}, "policy": "suggestion"},
            {"when": {"kind": "complaint"}, "policy": "cbirc-2020"}]
BANKA = load_calendars().for_institution("BANKA")


@contextmanager
def platform(settings, run_services):
    """Intake and SLA; what the call center and the customer hear; RPC."""
    with listening(settings.amqp_uri, amqp.OUTBOUND_EXCHANGE) as outbound, \
            listening(settings.amqp_uri, amqp.NOTIFICATIONS_EXCHANGE) as notices, \
            run_services(settings, IntakeService, SlaService), \
            ClusterRpcProxy(settings.nameko_config()) as rpc:
        yield outbound, notices, rpc


def answered(center, outbound, body: dict, channel: str = "web") -> dict:
    message_id = center.send(body, channel=channel)
    [receipt] = outbound.wait_for(lambda m: m["body"].get("message_id") == message_id)
    return receipt["body"]


def clock_of(rpc, number: str, due_by: datetime | None = None) -> dict:
    """The complaint's only clock, once SLA started it (with ``due_by`` when given)."""
    def started():
        try:
            [clock] = rpc.sla.clocks(number)
        except Exception:  # noqa: BLE001 - NotFound until the receipt's event arrived
            return None
        return clock if due_by is None or timeutil.parse(clock["due_by"]) == due_by else None
    return wait_until(started, f"the clock of {number} runs{f' to {due_by}' if due_by else ''}")


# -- a suggestion's promised reply time (seed 003 §3.2) ----------------------------------------

def test_the_reply_time_promised_for_a_suggestion_is_its_limit(settings, run_services, center):
    received = (timeutil.now() - timedelta(hours=2)).replace(microsecond=0)
    promised = end_of_day(received.date() + timedelta(days=10))
    with platform(settings, run_services) as (outbound, notices, rpc):
        receipt = answered(center, outbound, submission(kind="suggestion", reply_within_days=10,
                                                        received_at=received.isoformat()))
        assert receipt["status"] == "accepted", receipt
        number = receipt["complaint_no"]
        assert timeutil.parse(receipt["due_by"]) == promised  # not the policy's 15 days
        [acknowledged] = notices.wait_for(lambda m: m["body"]["complaint_no"] == number)
        params = acknowledged["body"]["params"]
        assert acknowledged["body"]["template"] == "acknowledged"
        assert params["reply_within_days"] == 10 and timeutil.parse(params["due_by"]) == promised
        assert params["time_limit"] == "10 calendar_days"
        view = rpc.intake.get(number, None)
        assert view["reply_within_days"] == 10 and view["sla"]["policy"] == "suggestion"
        assert timeutil.parse(view["due_by"]) == promised
        clock = clock_of(rpc, number)
        assert (clock["clock"], clock["promised_limit"]) == ("reply", 10)
        assert timeutil.parse(clock["due_by"]) == promised

        # The customer comes back with new facts: the promised limit counts again from them.
        again = (timeutil.now() - timedelta(minutes=5)).replace(microsecond=0)
        repeat = answered(center, outbound, submission(kind="suggestion", repeat_of=number, new_facts=True,
                                                       received_at=again.isoformat()))
        assert repeat["merged_into"] == number
        clock_of(rpc, number, end_of_day(again.date() + timedelta(days=10)))

        # Without a promise, the policy's limit.
        plain = answered(center, outbound, submission(kind="suggestion", received_at=received.isoformat()))
        assert timeutil.parse(plain["due_by"]) == end_of_day(received.date() + timedelta(days=15))
        assert clock_of(rpc, plain["complaint_no"])["promised_limit"] is None
        assert rpc.intake.get(plain["complaint_no"], None)["reply_within_days"] is None


def test_a_promise_beyond_the_policy_is_refused_and_kept(settings, run_services, center):
    with platform(settings, run_services) as (outbound, notices, rpc):
        refused = answered(center, outbound, submission(kind="suggestion", reply_within_days=61))
        assert refused["status"] == "rejected" and refused["complaint_no"] is None
        assert refused["errors"] == {"reply_within_days": [
            "suggestion/reply takes a promise of 1 to 60 calendar_days, not 61"]}
        complaint = answered(center, outbound, submission(kind="complaint", reply_within_days=10))
        assert complaint["errors"] == {"reply_within_days": ["is promised for a suggestion only"]}
        kept = database(settings, "intake")["rejections"].find({"errors.field": "reply_within_days"})
        assert {row["message_id"] for row in kept} == {refused["message_id"], complaint["message_id"]}
        assert database(settings, "intake")["complaints"].count_documents({}) == 0


# -- same-day mode for an institution and a period (seed 001) -----------------------------------

def test_an_institution_in_same_day_mode_for_a_period_gets_same_day_for_what_it_received_then(
        settings, run_services, center, tmp_path):
    # The period: the last three days up to the last working day before today.
    last = BANKA.last_working_day_on_or_before(timeutil.now().date() - timedelta(days=1))
    period = {"from": last - timedelta(days=2), "to": last}
    same_day_mode = [{"when": {"institution": "BANKA", "kind": "complaint", "received": period},
                      "policy": "same-day"}, *DEFAULTS]
    settings = dataclasses.replace(settings, policies_path=str(write_policies(tmp_path / "p.yaml", same_day_mode)))
    morning = datetime.combine(last, time(10, 0), SHANGHAI)
    evening = datetime.combine(last, time(19, 0), SHANGHAI)
    before = morning - timedelta(days=3)
    today = datetime.combine(timeutil.now().date(), time(0, 0), SHANGHAI)
    after = max(timeutil.now() - timedelta(minutes=5), today).replace(microsecond=0)
    with platform(settings, run_services) as (outbound, notices, rpc):
        def due(institution: str, received: datetime) -> tuple[str, datetime]:
            receipt = answered(center, outbound, submission(institution=institution,
                                                            received_at=received.isoformat()))
            assert receipt["status"] == "accepted", receipt
            number = receipt["complaint_no"]
            clock = clock_of(rpc, number)
            assert timeutil.parse(clock["due_by"]) == timeutil.parse(receipt["due_by"])
            assert rpc.intake.get(number, None)["sla"]["policy"] == clock["policy"]
            return clock["policy"], timeutil.parse(receipt["due_by"])

        # Received in the period, in business hours: handled by the end of that business day.
        assert due("BANKA", morning) == ("same-day", datetime.combine(last, time(17, 30), SHANGHAI))
        # After business hours: by the end of the next working day, no overnight backlog beyond it.
        assert due("BANKA", evening) == ("same-day", datetime.combine(BANKA.add_working_days(last, 1),
                                                                      time(17, 30), SHANGHAI))
        # Before and after the period, and another institution in it: the default, 15 days.
        assert due("BANKA", before) == ("cbirc-2020", end_of_day(before.date() + timedelta(days=15)))
        assert due("BANKA", after) == ("cbirc-2020", end_of_day(after.date() + timedelta(days=15)))
        assert due("INSA", morning) == ("cbirc-2020", end_of_day(last + timedelta(days=15)))
