"""A customer calls back about an earlier complaint (complaint.submit/1 ``repeat_of``): a
repeat of an open complaint within its limit is merged into it, and new facts restart its
clock in the real SLA service (Order 3/2020 Art. 18); any other repeat is a complaint of
its own, or rejected when it names no complaint of the institution."""
import time
from datetime import timedelta

import pytest
from nameko.standalone.rpc import ClusterRpcProxy

from services.common import amqp, ids, timeutil
from services.common.store import database
from services.intake.service import IntakeService
from services.sla.service import SlaService
from tests.support.harness import listening, publish_fact, submission, wait_until

pytestmark = pytest.mark.integration

HANDLER = {"sub": "sd-jn-001", "unit": "BANKA-SD", "roles": ["handler"]}



def ago(**delta) -> str:
    return (timeutil.now() - timedelta(**delta)).replace(microsecond=0).isoformat()


def answer(receipts, message_id, count=1) -> dict:
    return receipts.wait_for(lambda m: m["body"].get("message_id") == message_id, count=count)[-1]["body"]


def complain(center, receipts, **changes) -> dict:
    receipt = answer(receipts, center.send(submission(**changes)))
    assert receipt["status"] == "accepted"
    return receipt


def repeat_of(complaint_no, new_facts=None, **changes) -> dict:
    body = submission(**{"repeat_of": complaint_no, "received_at": ago(minutes=1),
                         "description": "客户再次来电：补充提供了扣费当日的短信截图，称从未收到激活短信。", **changes})
    if new_facts is not None:
        body["new_facts"] = new_facts
    return body




def test_repeats_of_an_open_complaint_are_merged_and_new_facts_restart_its_clock(settings, run_services, center):
    with listening(settings.amqp_uri, amqp.OUTBOUND_EXCHANGE, "receipt.#") as receipts, \
            listening(settings.amqp_uri, "intake.events", "complaint_repeated") as repeated, \
            listening(settings.amqp_uri, "sla.events", "sla_started") as started, \
            run_services(settings, IntakeService, SlaService):
        first = complain(center, receipts, received_at=ago(days=3))
        number = first["complaint_no"]
        started.wait_for(lambda m: m["body"]["complaint_no"] == number)  # the clock runs from receipt

        # Without new facts: merged, the limit stays.
        plain = center.send(repeat_of(number, external_id="CC-again-1"), channel="wechat")
        merged = answer(receipts, plain)
        assert merged["status"] == "accepted"
        assert merged["complaint_no"] == number and merged["due_by"] == first["due_by"]
        assert merged["external_id"] == "CC-again-1"
        assert merged["merged_into"] == number

        # With new facts: merged, and SLA counts the limit again from the new material.
        body = repeat_of(number, new_facts=True)
        fresh = center.send(body)
        merged = answer(receipts, fresh)
        assert merged["status"] == "accepted" and merged["complaint_no"] == number
        facts = repeated.wait_for(lambda m: m["body"]["complaint_no"] == number, count=2)
        assert sorted(f["body"]["body"]["new_facts"] for f in facts) == [False, True]
        assert all(f["body"]["body"]["repeat_of"] == number for f in facts)
        [restart] = started.wait_for(lambda m: m["body"]["body"].get("restarted") is True)
        assert restart["body"]["complaint_no"] == number
        assert restart["body"]["body"]["started_at"] == timeutil.iso(timeutil.parse(body["received_at"]))
        assert timeutil.parse(restart["body"]["body"]["due_by"]) > timeutil.parse(first["due_by"])

        # The same message again: a duplicate of the merge, never merged twice.
        center.send(body, message_id=fresh)
        again = answer(receipts, fresh, count=2)
        assert again["status"] == "duplicate" and again["complaint_no"] == number

        db = database(settings, "intake")
        wait_until(lambda: timeutil.iso(db["complaints"].find_one({"_id": number})["due_by"])
                   == restart["body"]["body"]["due_by"], "intake followed the restarted clock")
        time.sleep(0.5)  # room for a wrong second restart or merge to show
        assert db["complaints"].count_documents({}) == 1
        stored = db["complaints"].find_one({"_id": number})
        assert [(r["message_id"], r["channel"], r["new_facts"]) for r in stored["repeats"]] == [
            (plain, "wechat", False), (fresh, "phone", True)]
        assert stored["repeats"][1]["description"] == body["description"]
        assert [h["type"] for h in stored["history"]].count("complaint_repeated") == 2
        assert db["merged_messages"].count_documents({}) == 2
        assert db["merged_messages"].index_information()["one_per_message"]["unique"] is True
        [clock] = database(settings, "sla")["clocks"].find({"complaint_no": number})
        assert len(clock["restarts"]) == 1
        assert len([e for e in started.drain() if e["body"]["body"].get("restarted")]) == 1


def test_repeats_that_are_not_merged(settings, run_services, center):
    with listening(settings.amqp_uri, amqp.OUTBOUND_EXCHANGE, "receipt.#") as receipts, \
            run_services(settings, IntakeService), ClusterRpcProxy(settings.nameko_config()) as rpc:
        closed = complain(center, receipts, branch="BANKA-SD", received_at=ago(days=2))["complaint_no"]
        late = complain(center, receipts, received_at=ago(days=20))["complaint_no"]  # 15 days ran out
        open_no = complain(center, receipts, received_at=ago(days=1))["complaint_no"]

        publish_fact(center, "complaint_assigned", closed, "routing", unit="BANKA-SD", department=None,
                     office=None, reason="routed", flags=[])
        wait_until(lambda: rpc.intake.get(closed, None)["status"] == "assigned", "assigned")
        rpc.intake.act(closed, "decision", {"outcome": "upheld", "message": "经核实，年费已退还。"}, HANDLER, None)
        rpc.intake.act(closed, "close", {"satisfaction": "satisfied", "root_cause": "fees_and_pricing"}, HANDLER,
                       None)

        # Closed, or after the limit: the customer complains again, a complaint of its own.
        for earlier, why in ((closed, "closed"), (late, "after_limit")):
            receipt = answer(receipts, center.send(repeat_of(earlier, new_facts=True)))
            assert receipt["status"] == "accepted"
            assert receipt["complaint_no"] != earlier and ids.is_valid_complaint_no(receipt["complaint_no"])
            view = rpc.intake.get(receipt["complaint_no"], None)
            assert view["status"] == "received"
            assert view["history"][0]["details"]["repeat_of"] == earlier
            assert view["history"][0]["details"]["not_merged"] == why

        # No complaint of this institution by that number: rejected, with the field path.
        unknown = ids.format_complaint_no("BANKA", timeutil.now(), 999999)
        rejected = answer(receipts, center.send(repeat_of(unknown)))
        assert rejected["status"] == "rejected" and rejected["complaint_no"] is None
        assert rejected["errors"] == {"repeat_of": [f"no complaint {unknown} of BANKA to repeat"]}
        other = answer(receipts, center.send(repeat_of(open_no, institution="INSA")))
        assert other["errors"] == {"repeat_of": [f"no complaint {open_no} of INSA to repeat"]}
        before = answer(receipts, center.send(repeat_of(open_no, received_at=ago(days=2))))
        assert set(before["errors"]) == {"received_at"}

        # Over HTTP (intake.submit RPC): merged, answered with the open complaint's receipt.
        body = {k: v for k, v in repeat_of(open_no).items() if k != "channel"}
        result = rpc.intake.submit(body, "web", "agent-7:k-1", "http")
        assert result["outcome"] == "accepted"
        assert set(result["complaint"]) == {"complaint_no", "status", "due_by"}
        assert result["complaint"]["complaint_no"] == open_no
        assert rpc.intake.submit(body, "web", "agent-7:k-1", "http")["outcome"] == "duplicate"

        db = database(settings, "intake")
        assert db["complaints"].count_documents({}) == 5
        assert len(db["complaints"].find_one({"_id": open_no})["repeats"]) == 1
        assert db["rejections"].count_documents({"kind": "invalid"}) == 3
