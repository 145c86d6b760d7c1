"""The SLA service over the real broker and store: complaint facts in on ``intake.events``,
clock facts out on ``sla.events``; two instances and a kill -9 give one event per point."""
from __future__ import annotations

import dataclasses
import time
from collections import defaultdict
from datetime import timedelta

import pytest
from kombu import Connection
from nameko.standalone.rpc import ClusterRpcProxy

from services.common import amqp, events, timeutil
from services.common.errors import Conflict, Invalid
from services.common.outbox import event_message
from services.common.store import database, ensure_indexes
from services.sla.clocks import INDEXES, Clocks
from services.sla.service import SlaService
from tests.support.harness import ServiceProcess, listening, wait_until

pytestmark = pytest.mark.integration

HANDLER = {"sub": "sd-jn-001", "unit": "BANKA-SD-JN", "roles": ["handler"]}


@pytest.fixture
def publisher(settings):
    publisher = amqp.Publisher(settings.amqp_uri)
    yield publisher
    publisher.close()


def publish(publisher, event: dict) -> dict:
    message = event_message(event)
    publisher.publish(message["exchange"], message["routing_key"], message["body"], message_id=message["_id"])
    return event


def receive(publisher, no: str, received_at, policy: str = "cbirc-2020") -> dict:
    return publish(publisher, events.make_event("complaint_received", no, {
        "complaint_no": no, "institution": "BANKA", "branch": "BANKA-SD-JN", "kind": "complaint",
        "channel": "phone", "product": "credit_card", "received_at": timeutil.iso(received_at), "policy": policy,
        "due_by": None, "direct": False, "respondent_staff": [], "group_size": 1, "app_id": "cc-shandong"},
        "intake"))


def of(no: str, type_: str):
    return lambda m: m["routing_key"] == type_ and m["body"]["complaint_no"] == no


def point_key(message: dict) -> tuple:
    body = message["body"]["body"]
    return body["complaint_no"], body["clock"], body.get("label", "breach")


def test_received_20_days_ago_breaches_and_reaches_routing(settings, run_services, publisher):
    no = "BANKA-20261104-000001"
    with listening(settings.amqp_uri, "sla.events") as sla, run_services(settings, SlaService):
        receive(publisher, no, timeutil.now() - timedelta(days=20))
        [breached] = sla.wait_for(of(no, "sla_breached"), timeout=20)
        body = breached["body"]["body"]
        assert body["policy"] == "cbirc-2020" and body["clock"] == "decision" and body["unit"] == "BANKA-SD-JN"
        assert timeutil.parse(body["due_by"]) < timeutil.now()
        assert not events.validate_event(breached["body"])
        kinds = [m["routing_key"] for m in sla.messages if m["body"]["complaint_no"] == no]
        assert kinds == ["sla_started", "sla_warning", "sla_warning", "sla_breached"]
    # Routing's queue holds the breach (routing escalates from it).
    with Connection(settings.amqp_uri) as connection:
        message = connection.SimpleQueue("routing.sla_breached").get(timeout=5)
        assert message.payload["body"]["complaint_no"] == no
        message.ack()


def test_received_13_days_ago_warns_and_does_not_breach(settings, run_services, publisher):
    no = "BANKA-20261111-000002"
    received_at = timeutil.now() - timedelta(days=13)
    with listening(settings.amqp_uri, "sla.events") as sla, run_services(settings, SlaService), \
            ClusterRpcProxy(settings.nameko_config()) as rpc:
        receive(publisher, no, received_at)
        warnings = sla.wait_for(of(no, "sla_warning"), timeout=20)
        assert warnings[0]["body"]["body"]["label"] == "3_working_days_before"
        time.sleep(2.5)  # a few more sweeps
        assert not [m for m in sla.drain() if of(no, "sla_breached")(m)]
        [view] = rpc.sla.clocks(no)
        assert view["state"] == "running" and not view["breached"] and "3_working_days_before" in view["warned"]
        assert timeutil.parse(view["due_by"]) > timeutil.now()


def test_decision_in_time_is_met_and_the_rpc_drives_the_clock(settings, run_services, publisher):
    no = "BANKA-20261124-000003"
    with listening(settings.amqp_uri, "sla.events") as sla, run_services(settings, SlaService), \
            ClusterRpcProxy(settings.nameko_config()) as rpc:
        receive(publisher, no, timeutil.now() - timedelta(hours=1))
        sla.wait_for(of(no, "sla_started"))
        with pytest.raises(Invalid) as refused:
            rpc.sla.extend(no, 16, "需调取录音", HANDLER, ["supervisor"])
        assert "days" in refused.value.details
        [view] = rpc.sla.extend(no, 15, "需调取录音核实", HANDLER, ["supervisor"])
        assert view["extensions"] == 1
        [extended] = sla.wait_for(of(no, "sla_extended"))
        assert extended["body"]["body"]["total"] == 30 and extended["body"]["body"]["reason"] == "需调取录音核实"
        rpc.sla.pause(no, "委托第三方鉴定", HANDLER)
        with pytest.raises(Conflict):
            rpc.sla.pause(no, "again", HANDLER)
        rpc.sla.resume(no, "鉴定完成", HANDLER)
        sla.wait_for(of(no, "sla_resumed"))
        publish(publisher, events.make_event("complaint_decided", no, {
            "complaint_no": no, "at": timeutil.iso(timeutil.now()), "actor": "sd-jn-001", "outcome": "upheld",
            "unit": "BANKA-SD-JN", "remedy": "退还年费", "amount": "300.00"}, "intake"))
        [met] = sla.wait_for(of(no, "sla_met"), timeout=20)
        assert met["body"]["body"]["state"] == "met"
        assert rpc.sla.clocks(no)[0]["state"] == "met"
        kinds = [m["routing_key"] for m in sla.messages if m["body"]["complaint_no"] == no]
        assert kinds == ["sla_started", "sla_extended", "sla_paused", "sla_resumed", "sla_met"]


def seed_due_clocks(settings, count: int, prefix: str) -> set[tuple]:
    """``count`` clocks received 20 days ago, written straight into the store: each has its
    two warnings and its breach due. Returns the expected (complaint_no, clock, label) keys."""
    db = database(settings, "sla")
    ensure_indexes(db, INDEXES)
    keeper = Clocks(db)
    now = timeutil.now()
    rule = keeper.policies.get("cbirc-2020").clock("decision")
    docs = [keeper._new_clock(f"{prefix}-{n:05d}", rule, now - timedelta(days=20, minutes=n), institution="BANKA",
                              unit="BANKA-SD-JN", now=now) for n in range(count)]
    db["clocks"].insert_many(docs)
    return {(d["complaint_no"], d["clock"], p["label"]) for d in docs for p in d["points"]}


def deliveries(messages) -> dict[tuple, list[dict]]:
    """Every delivery of a warning or breach, by clock point. Event ids are derived from the
    point, so they cannot tell a second publication from the first: each delivery counts."""
    per_point: dict[tuple, list[dict]] = defaultdict(list)
    for m in messages:
        if m["routing_key"] in ("sla_warning", "sla_breached"):
            per_point[point_key(m)].append(m["body"])
    return per_point


def firings(published: list[dict]) -> set[str]:
    """When a point was fired, as its events say (one moment per firing)."""
    return {event["body"]["at"] for event in published}


def test_two_instances_give_one_event_per_point(settings, tmp_path):
    expected = seed_due_clocks(settings, 150, "TWO")
    # No outbox sweep runs before the worker that staged a row relayed it: here a second
    # delivery of a point can only be a second firing or a second relay.
    settings = dataclasses.replace(settings, outbox_grace=120.0)
    with listening(settings.amqp_uri, "sla.events") as sla:
        processes = [ServiceProcess(["services.sla.service"], settings, tmp_path / f"sla{i}.log").start()
                     for i in range(2)]
        try:
            wait_until(lambda: set(deliveries(sla.drain())) >= expected, "every point was published", timeout=90)
            time.sleep(2)  # anything doubled would show up by now
            per_point = deliveries(sla.drain())
        finally:
            for process in processes:
                process.stop()
    assert set(per_point) == expected
    doubled = {point: len(published) for point, published in per_point.items() if len(published) != 1}
    assert not doubled, f"{len(doubled)} points delivered more than once, e.g. {sorted(doubled.items())[:3]}"
    assert {len(firings(published)) for published in per_point.values()} == {1}


def test_kill_9_mid_firing_gives_one_event_per_point(settings, tmp_path):
    expected = seed_due_clocks(settings, 300, "KILL")
    log = tmp_path / "sla.log"
    with listening(settings.amqp_uri, "sla.events") as sla:
        first = ServiceProcess(["services.sla.service"], settings, log).start()
        try:
            wait_until(lambda: len(deliveries(sla.drain())) >= len(expected) // 4, "a quarter fired",
                       timeout=60, interval=0.02)
            first.kill()
            killed_at = timeutil.now()
            fired_before = len(deliveries(sla.drain()))
            assert fired_before < len(expected), "everything fired before the kill; nothing was tested"
        finally:
            first.kill()
        # The second instance relays what the first staged and did not mark sent (after the
        # first's grace); what it stages itself only its own workers relay.
        second = ServiceProcess(["services.sla.service"], dataclasses.replace(settings, outbox_grace=120.0),
                                log).start()
        try:
            wait_until(lambda: set(deliveries(sla.drain())) >= expected, "every point was published",
                       timeout=120)
            time.sleep(2 + settings.outbox_grace)
            per_point = deliveries(sla.drain())
        finally:
            second.stop()
    assert set(per_point) == expected
    # Each point fired once, and was delivered once, but for those the killed instance had
    # published and not yet marked sent: its rows are relayed again (the same event).
    assert {len(firings(published)) for published in per_point.values()} == {1}
    republished = {point: len(published) for point, published in per_point.items() if len(published) > 1}
    fired_after_kill = {point for point, published in per_point.items()
                        if timeutil.parse(published[0]["body"]["at"]) > killed_at}
    twice = sorted(fired_after_kill & set(republished))
    assert not twice, f"{len(twice)} points the second instance fired were delivered twice, e.g. {twice[:3]}"
    assert all(n == 2 for n in republished.values()), republished
    outbox = database(settings, "sla")["outbox"]
    assert outbox.count_documents({"sent_at": None}) == 0
    print(f"kill -9 after {fired_before}/{len(expected)} points: {len(republished)} relayed again")
