"""Mediation deliveries when processes die or run side by side: the service in processes of
its own, the simulated organization over real HTTP, referrals made over RPC."""
from __future__ import annotations

import time
from collections import Counter
from datetime import timedelta

import pytest
from nameko.exceptions import UnknownService
from nameko.standalone.rpc import ClusterRpcProxy

from services.common.outbox import COLLECTION, Relay
from services.common.store import database, ensure_indexes
from services.mediation.mediation import INDEXES, Mediation
from services.mediation.simulator import Mediator
from tests.support.harness import ServiceProcess, listening, organization_event, settings_for, wait_until

pytestmark = [pytest.mark.integration, pytest.mark.slow]

SECRET = "sd-bimc-secret-for-the-fault-tests"
ADMIN = {"sub": "ops-1", "name": "平台管理员", "unit": "BANKA", "roles": ["admin"]}
SUPERVISOR = {"sub": "banka-sd-yt-supervisor", "name": "张伟", "unit": "BANKA-SD-YT", "roles": ["supervisor"]}


@pytest.fixture
def mediation_settings(amqp_uri, mongo_uri, settings):
    # Retries a few seconds apart: long enough to kill a process while one waits.
    return settings_for(amqp_uri, mongo_uri, prefix=settings.db_prefix, mediation_retry_base=4.0,
                        mediation_retry_cap=8.0, mediation_retry_for=300.0, mediation_timeout=5.0)


@pytest.fixture
def mediator(mediation_settings):
    mediator = Mediator({"SD-BIMC": SECRET}, "http://127.0.0.1:9")  # it sends no callback here
    base = mediator.start()
    yield mediator, mediator.url(base, "SD-BIMC")
    mediator.stop()


def complaint(number: str) -> dict:
    return {"complaint_no": number, "status": "in_progress", "institution": "BANKA", "unit": "BANKA-SD-YT",
            "product": "credit_card", "subject": "年费", "description": "未激活即扣年费", "demand": "退还",
            "amount_in_dispute": "300.00", "currency": "CNY", "customer": {"name": "王芳", "phone": "13800138000"},
            "respondent_staff": [], "history": [], "allowed_actions": ["mediation"]}


REQUEST = {"reason": "协商未果", "negotiation": [{"at": "2026-11-18T15:00:00+08:00", "by": "h1", "note": "未果"}],
           "consent": {"given": True, "at": "2026-11-19T10:00:00+08:00", "how": "书面"},
           "authority": {"max_settlement_amount": "200.00", "currency": "CNY"}}


def answers(rpc) -> bool:
    try:
        return rpc.mediation.health()["status"] == "ok"
    except UnknownService:
        return False


def test_kill_9_while_a_referral_waits_for_its_retry_loses_nothing_and_doubles_nothing(mediation_settings, mediator,
                                                                                      tmp_path):
    mediator, url = mediator
    mediator.behave("SD-BIMC", fail_first=2)
    log = tmp_path / "mediation.log"
    # Made before the service runs; its complaint_referred waits in the outbox for a sweep.
    [referral_id] = seed_due_referrals(mediation_settings, url, 1, relayed=True)
    with listening(mediation_settings.amqp_uri, "mediation.events") as published:
        first = ServiceProcess(["services.mediation.service"], mediation_settings, log).start()
        try:
            with ClusterRpcProxy(mediation_settings.nameko_config()) as rpc:
                wait_until(lambda: answers(rpc), "the mediation service answers", timeout=60, interval=0.2)
                waiting = wait_until(lambda: (d := rpc.mediation.referral(referral_id)["delivery"])["messages"][0][
                    "attempts"] == 1 and not d["in_flight"] and d, "the first attempt, answered 500, was recorded",
                    interval=0.02)
                assert waiting["state"] == "pending" and waiting["messages"][0]["recent_attempts"][0][
                    "status_code"] == 500
            first.kill()  # while the referral waits for its retry
            assert len(mediator.received) == 1
        finally:
            first.kill()
        second = ServiceProcess(["services.mediation.service"], mediation_settings, log).start()
        try:
            with ClusterRpcProxy(mediation_settings.nameko_config()) as rpc:
                referral = wait_until(lambda: (r := rpc.mediation.referral(referral_id))["delivery"]["state"]
                                      == "delivered" and r, "delivered after the restart", timeout=60)
            time.sleep(1 + mediation_settings.outbox_grace)  # a doubled event would show by now
            facts = [m for m in published.drain() if m["body"]["body"].get("referral_id") == referral_id]
        finally:
            second.stop()
    assert [(r.idempotency_key, r.answered) for r in mediator.received] == [
        (referral_id, 500), (referral_id, 500), (referral_id, 202)]
    assert len(mediator.taken()) == 1
    assert referral["delivery"]["messages"][0]["attempts"] == 3
    kinds = Counter(m["routing_key"] for m in facts)
    assert kinds == {"complaint_referred": 1, "mediation_delivered": 1}
    db = database(mediation_settings, "mediation")
    assert db["referrals"].count_documents({}) == 1
    assert db["outbox"].count_documents({"sent_at": None}) == 0


class Discard:
    """An outbox for seeding the store: the facts of the seeding are not under test."""

    def stage(self, session, *messages):
        pass


class Relayed:
    """An outbox for seeding the store whose rows a sweep of the service relays."""

    def __init__(self, db):
        self.relay = Relay(db[COLLECTION], None, timedelta(0))

    def stage(self, session, *messages):
        self.relay.stage(session, list(messages))


def seed_due_referrals(settings, url: str, count: int, relayed: bool = False) -> list[str]:
    """``count`` referrals due at once, written straight into the store before any instance
    runs, by a supervisor who grants their authority."""
    db = database(settings, "mediation")
    ensure_indexes(db, INDEXES)
    desk = Mediation(db, settings)
    desk.registry.put("SD-BIMC", {"name": "山东调解中心", "regions": ["370000"], "url": url, "secret": SECRET,
                                  "contact": {"phone": "0531-81000000"}}, ADMIN)
    desk.organization.keep(organization_event())
    outbox = Relayed(db) if relayed else Discard()
    made = []
    for n in range(count):
        view = complaint(f"BANKA-261120-{n:06d}0")
        facts = {"complaint_no": view["complaint_no"], "institution": "BANKA", "unit": view["unit"],
                 "offered_unit": None, "respondent_staff": []}
        made.append(desk.referrals.refer(view, facts, REQUEST, SUPERVISOR, outbox)["referral"]["referral_id"])
    return made


def test_two_instances_deliver_each_referral_once(mediation_settings, mediator, tmp_path):
    mediator, url = mediator
    mediator.behave("SD-BIMC", slow=0.3)  # a long attempt: a second sender would have time to double it
    referrals = seed_due_referrals(mediation_settings, url, 30)
    processes = [ServiceProcess(["services.mediation.service"], mediation_settings, tmp_path / f"m{i}.log")
                 for i in range(2)]
    try:
        for process in processes:
            process.start()
        wait_until(lambda: {r.idempotency_key for r in mediator.taken()} >= set(referrals),
                   "every referral was delivered", timeout=90)
        time.sleep(2)  # a doubled delivery would show by now
        with ClusterRpcProxy(mediation_settings.nameko_config()) as rpc:
            states = {rpc.mediation.referral(r)["delivery"]["state"] for r in referrals}
    finally:
        for process in processes:
            process.stop()
    sent = Counter(r.idempotency_key for r in mediator.received)
    assert set(sent) == set(referrals) and set(sent.values()) == {1}
    assert states == {"delivered"}
    # Each instance logs what its attempts came to: together, one delivery per referral.
    per_instance = [(tmp_path / f"m{i}.log").read_text().count(" delivered") for i in range(2)]
    assert sum(per_instance) == len(referrals)
    print(f"two instances: {len(referrals)} referrals delivered, {per_instance} by each")
