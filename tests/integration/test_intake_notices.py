"""Proof of every notice (Order 3/2020 Art. 21) over the real broker and store: each notice to
the customer on the complaint's history, the notification gateway's delivery reports
(``notification.report/1`` on ``complaints.inbound``) beside it, a notice not delivered sent
again on another medium, and the review window counted from the decision's delivery."""
import json
from datetime import timedelta
from functools import partial

import pytest
from kombu import Connection
from nameko.standalone.rpc import ClusterRpcProxy

from services.common import amqp, timeutil
from services.common.errors import Conflict
from services.common.policy import book_loaders
from services.common.store import Domain, database
from services.intake.intake import INDEXES, Intake
from services.intake.notices import NoticePolicy
from services.intake.service import IntakeService
from tests.support.harness import accepted, announce_organization, listening, publish_fact, wait_until
from tests.support.infra import queue_counts

pytestmark = pytest.mark.integration

HANDLER = {"sub": "sd-jn-001", "unit": "BANKA-SD", "roles": ["handler"]}
DECISION = {"outcome": "upheld", "remedy": "refund", "message": "经核实，年费已退还。"}


def report(center, notice: dict, status: str = "delivered", at=None, medium: str | None = None, **extra) -> None:
    """The notification gateway's answer to a request (CONTRACTS.md §2)."""
    body = {"notification_id": notice["notification_id"], "status": status,
            "at": timeutil.iso(at or timeutil.now()), "detail": extra.pop("detail", None), **extra}
    center.publisher.publish(amqp.INBOUND_EXCHANGE, f"notification.report.{medium or notice['medium']}", body)


def notices_of(rpc, complaint_no: str) -> list[dict]:
    return [entry["details"] for entry in rpc.intake.get(complaint_no, None)["history"]
            if entry["type"] == "notice_requested"]


def handled(amqp_uri: str) -> bool:
    """Every message on intake's queue taken and acked (none ready, none being handled)."""
    return queue_counts(amqp_uri, amqp.INBOUND_QUEUE) == (0, 0)


def queue_depth(amqp_uri: str, name: str) -> int:
    with Connection(amqp_uri) as connection:
        return connection.default_channel.queue_declare(queue=name, passive=True).message_count


def assign(center, rpc, complaint_no: str) -> None:
    publish_fact(center, "complaint_assigned", complaint_no, "routing", unit="BANKA-SD", department=None,
                 office=None, reason="routed", flags=[])
    wait_until(lambda: rpc.intake.get(complaint_no, None)["status"] == "assigned", "assigned")


def test_every_notice_is_on_the_history_with_template_medium_and_time(settings, run_services, center):
    with listening(settings.amqp_uri, amqp.OUTBOUND_EXCHANGE) as outbound, \
            listening(settings.amqp_uri, amqp.NOTIFICATIONS_EXCHANGE) as sent, \
            run_services(settings, IntakeService), ClusterRpcProxy(settings.nameko_config()) as rpc:
        announce_organization(center, settings, "intake")
        complaint_no = accepted(center, outbound, branch="BANKA-SD")
        assign(center, rpc, complaint_no)
        publish_fact(center, "sla_paused", complaint_no, "sla", policy="cbirc-2020", clock="decision", due_by=None,
                     reason="外部鉴定")
        # Facts of one owner older than the last applied change no state: one after the other.
        wait_until(lambda: len(notices_of(rpc, complaint_no)) == 2, "the pause was told")
        publish_fact(center, "sla_resumed", complaint_no, "sla", policy="cbirc-2020", clock="decision",
                     due_by=timeutil.iso(timeutil.now() + timedelta(days=10)), reason="鉴定完成")
        wait_until(lambda: len(notices_of(rpc, complaint_no)) == 3, "the pause and resumption were told")
        rpc.intake.act(complaint_no, "decision", DECISION, HANDLER)
        rpc.intake.act(complaint_no, "close", {"satisfaction": "satisfied", "root_cause": "fees_and_pricing"},
                       HANDLER)

        requests = {m["body"]["notification_id"]: m["body"]
                    for m in sent.wait_for(lambda m: m["body"]["complaint_no"] == complaint_no, count=5)}
        kept = notices_of(rpc, complaint_no)
        assert sorted(n["template"] for n in kept) == ["acknowledged", "closed", "decided", "paused", "resumed"]
        for notice in kept:
            asked = requests[notice["notification_id"]]  # each notice is the request that left
            assert (notice["template"], notice["medium"], notice["to"]) == (asked["template"], "sms", "13800138000")
            assert notice["requested_at"] == asked["requested_at"]
            assert notice["state"] == "requested" and notice["reports"] == [] and notice["report_due_by"]
        history = rpc.intake.get(complaint_no, None)["history"]
        # Each notice names the change it tells of, and follows it in the history.
        for n, entry in enumerate(history):
            if entry["type"] == "notice_requested":
                told = entry["details"]["tells_of"]
                assert any(e["type"] == told["type"] and e["at"] == told["at"] for e in history[:n]), entry
        assert {entry["details"]["tells_of"]["type"] for entry in history if entry["type"] == "notice_requested"} \
            == {"complaint_received", "sla_paused", "sla_resumed", "complaint_decided", "complaint_closed"}


def test_a_delivery_report_is_recorded_beside_its_notice_once(settings, run_services, center):
    with listening(settings.amqp_uri, amqp.OUTBOUND_EXCHANGE) as outbound, \
            listening(settings.amqp_uri, amqp.NOTIFICATIONS_EXCHANGE) as sent, \
            run_services(settings, IntakeService), ClusterRpcProxy(settings.nameko_config()) as rpc:
        complaint_no = accepted(center, outbound)
        [ack] = sent.wait_for(lambda m: m["body"]["complaint_no"] == complaint_no)
        delivered_at = (timeutil.now() - timedelta(seconds=5)).replace(microsecond=0)
        report(center, ack["body"], at=delivered_at, detail="运营商回执", carrier="CMCC")  # unknown fields ignored
        report(center, ack["body"], at=delivered_at, detail="运营商回执")  # the gateway sends it again

        [notice] = wait_until(lambda: [n for n in notices_of(rpc, complaint_no) if n["reports"]], "the report")
        assert notice["notification_id"] == ack["body"]["notification_id"]
        assert notice["state"] == "delivered" and notice["report_due_by"] is None
        wait_until(lambda: handled(settings.amqp_uri), "both reports handled", interval=0.5)
        [recorded] = notices_of(rpc, complaint_no)[0]["reports"]
        assert recorded["status"] == "delivered" and recorded["at"] == timeutil.iso(delivered_at)
        assert recorded["detail"] == "运营商回执" and recorded["medium"] == "sms" and recorded["received_at"]
        # A report is not a submission: no receipt answers it, nothing was rejected or parked.
        assert [m["routing_key"] for m in outbound.drain() if m["routing_key"].startswith("receipt.")] \
            == ["receipt.cc-shandong"]
        health = rpc.intake.health()
        assert health["rejections_kept"] == 0 and health["reports_unmatched"] == 0
        assert queue_depth(settings.amqp_uri, amqp.parked_queue_name(amqp.INBOUND_QUEUE)) == 0


def test_a_report_for_no_notice_is_kept_for_an_operator_not_retried(settings, run_services, center):
    with listening(settings.amqp_uri, amqp.OUTBOUND_EXCHANGE) as outbound, \
            run_services(settings, IntakeService), ClusterRpcProxy(settings.nameko_config()) as rpc:
        unknown = {"notification_id": "no-such-notice", "medium": "email"}
        bounced = timeutil.now()
        report(center, unknown, status="failed", at=bounced, detail="mailbox full")
        report(center, unknown, status="failed", at=bounced, detail="mailbox full")  # again: kept once
        center.publisher.publish(amqp.INBOUND_EXCHANGE, "notification.report.sms", b"\xff not json")
        center.publisher.publish(amqp.INBOUND_EXCHANGE, "notification.report.sms", {"status": "lost"})
        center.publisher.publish(amqp.INBOUND_EXCHANGE, "notification.report.sms", b"x" * (2 << 20))  # 2 MiB
        wait_until(lambda: handled(settings.amqp_uri), "all five handled", interval=0.5)
        wait_until(lambda: rpc.intake.health()["reports_unmatched"] == 4, "four messages kept")

        rows = Intake(database(settings, "intake")).notices.unmatched_reports()
        [large] = [row for row in rows if row["body_bytes"] == 2 << 20]
        assert large["body"] == "x" * (1 << 20)  # its first MiB: no report is that long
        kept = {json.dumps(row["errors"], sort_keys=True): row for row in rows if row is not large}
        assert len(kept) == 3
        by_error = {next(iter(row["errors"])): row for row in kept.values()}
        assert by_error["notification_id"]["errors"] == {"notification_id": ["no notice no-such-notice was requested"]}
        assert by_error["notification_id"]["routing_key"] == "notification.report.email"
        assert "mailbox full" in by_error["notification_id"]["body"]
        assert by_error["body"]["errors"] == {"body": ["is not a JSON report: UnicodeDecodeError"]}
        invalid = [row for row in kept.values() if "status" in row["errors"]]
        assert invalid and {"notification_id", "at", "status"} <= set(invalid[0]["errors"])
        # Done with, not retried nor parked; no receipt answers a report; nothing taken for a complaint.
        delay_queues = [amqp.delay_queue_name(amqp.INBOUND_QUEUE, delay) for delay in settings.retry_delays]
        for queue in (*delay_queues, amqp.parked_queue_name(amqp.INBOUND_QUEUE)):
            assert queue_depth(settings.amqp_uri, queue) == 0
        assert [m for m in outbound.drain() if m["routing_key"].startswith("receipt.")] == []
        assert rpc.intake.health()["rejections_kept"] == 0


# Reports late within seconds, not hours: the same service with a notice policy of its own.
QUICK = NoticePolicy.from_data({"media": [
    {"medium": "sms", "address": "phone", "report_within": {"value": 1, "unit": "seconds"}},
    {"medium": "email", "address": "email", "report_within": {"value": 1, "unit": "hours"}},
    {"medium": "letter", "address": "address", "report_within": {"value": 1, "unit": "hours"}},
    {"medium": "phone", "address": "phone", "report_within": {"value": 1, "unit": "hours"}},
]})


class QuickChaseIntake(IntakeService):
    desk = Domain(partial(Intake, notice_policy=QUICK), indexes=INDEXES, options=book_loaders)


def test_a_notice_not_reported_delivered_is_flagged_and_sent_on_the_next_medium(settings, run_services, center):
    customer = {"name": "李娜", "phone": "13900139000", "email": "lina@example.cn"}  # no postal address
    with listening(settings.amqp_uri, amqp.OUTBOUND_EXCHANGE) as outbound, \
            listening(settings.amqp_uri, amqp.NOTIFICATIONS_EXCHANGE) as sent, \
            run_services(settings, QuickChaseIntake), ClusterRpcProxy(settings.nameko_config()) as rpc:
        complaint_no = accepted(center, outbound, customer=customer)
        [sms] = sent.wait_for(lambda m: m["routing_key"] == "notify.sms")
        # No report within a second: flagged, and the same notice goes by email.
        [email] = sent.wait_for(lambda m: m["routing_key"] == "notify.email")
        assert email["body"]["to"] == "lina@example.cn"
        assert (email["body"]["template"], email["body"]["params"]) == (sms["body"]["template"], sms["body"]["params"])
        first, second = notices_of(rpc, complaint_no)
        assert first["notification_id"] == sms["body"]["notification_id"]
        assert first["state"] == "overdue" and first["flagged_at"] and first["report_due_by"] is None
        assert first["retried_by"] == second["notification_id"] == email["body"]["notification_id"]
        assert (second["medium"], second["attempt"], second["retry_of"]) == ("email", 2, first["notification_id"])
        assert second["state"] == "requested"

        # The mail bounces: at once by phone (no address for a letter), then nothing is left.
        report(center, email["body"], status="failed", detail="550 mailbox unavailable")
        [call] = sent.wait_for(lambda m: m["routing_key"] == "notify.phone")
        assert call["body"]["to"] == "13900139000"
        report(center, call["body"], status="failed", detail="无人接听")
        wait_until(lambda: rpc.intake.health()["notices_needing_operator"] == 1, "the last attempt waits for people")
        chain = notices_of(rpc, complaint_no)
        assert [(n["medium"], n["state"], n["needs_operator"]) for n in chain] == [
            ("sms", "overdue", False), ("email", "failed", False), ("phone", "failed", True)]
        assert chain[1]["reports"][0]["detail"] == "550 mailbox unavailable"
        assert len([m for m in sent.drain() if m["body"]["complaint_no"] == complaint_no]) == 3  # once each

        # A late report still proves the first notice reached the customer: nothing waits for people.
        report(center, sms["body"], at=timeutil.now())
        wait_until(lambda: notices_of(rpc, complaint_no)[0]["state"] == "delivered", "the late report")
        assert [n["needs_operator"] for n in notices_of(rpc, complaint_no)] == [False, False, False]
        assert rpc.intake.health()["notices_needing_operator"] == 0


def backdate_decision(settings, complaint_no: str, days: int) -> None:
    """The decision recorded ``days`` ago: its record and the notice that tells of it."""
    db = database(settings, "intake")
    complaint = db["complaints"].find_one({"_id": complaint_no})
    then = complaint["decision"]["at"] - timedelta(days=days)
    db["complaints"].update_one({"_id": complaint_no}, {"$set": {"decision.at": then}})
    db["notices"].update_many({"complaint_no": complaint_no, "template": "decided"},
                              {"$set": {"tells_of.at": then, "requested_at": then}})


def review(rpc, complaint_no: str) -> str:
    """The customer asks for a review (核查) of the decision; the status after it."""
    return rpc.intake.act(complaint_no, "reopen", {"reason": "客户书面申请核查"}, HANDLER)["status"]


def test_the_review_window_runs_from_the_decision_s_delivery(settings, run_services, center):
    with listening(settings.amqp_uri, amqp.OUTBOUND_EXCHANGE) as outbound, \
            listening(settings.amqp_uri, amqp.NOTIFICATIONS_EXCHANGE) as sent, \
            listening(settings.amqp_uri, "intake.events", "complaint_reopened") as reopened, \
            run_services(settings, IntakeService), ClusterRpcProxy(settings.nameko_config()) as rpc:
        announce_organization(center, settings, "intake")
        def decided_days_ago(days, delivered_days_ago):
            complaint_no = accepted(center, outbound, branch="BANKA-SD")
            assign(center, rpc, complaint_no)
            rpc.intake.act(complaint_no, "decision", DECISION, HANDLER)
            [notice] = sent.wait_for(lambda m: m["body"]["complaint_no"] == complaint_no
                                     and m["body"]["template"] == "decided")
            backdate_decision(settings, complaint_no, days)
            if delivered_days_ago is not None:
                delivered = (timeutil.now() - timedelta(days=delivered_days_ago)).replace(microsecond=0)
                report(center, notice["body"], at=delivered)
                wait_until(lambda: rpc.intake.get(complaint_no, None)["decision"]["delivered_at"], "delivered")
            return complaint_no

        # Recorded 25 days ago, delivered 10 days ago: 20 days of the window are left.
        in_window = decided_days_ago(25, 10)
        decision = rpc.intake.get(in_window, None)["decision"]
        delivered_at = timeutil.parse(decision["delivered_at"])
        assert abs(timeutil.now() - delivered_at - timedelta(days=10)) < timedelta(minutes=1)
        assert timeutil.parse(decision["review_until"]) > timeutil.now() + timedelta(days=19)
        assert review(rpc, in_window) == "reopened"
        [event] = reopened.wait_for(lambda m: m["body"]["complaint_no"] == in_window)
        assert event["body"]["body"]["delivered_at"] == decision["delivered_at"]
        assert event["body"]["body"]["decided_at"] == decision["at"]

        # Recorded 35 days ago, delivered 10 days ago: counted from the record it would have ended.
        late_delivery = decided_days_ago(35, 10)
        assert review(rpc, late_delivery) == "reopened"
        # Delivered 31 days ago: the window has passed.
        with pytest.raises(Conflict):
            review(rpc, decided_days_ago(31, 31))
        # Never reported delivered: the window has not started, so it has not ended.
        undelivered = decided_days_ago(40, None)
        assert review(rpc, undelivered) == "reopened"
