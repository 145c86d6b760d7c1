"""Intake over the real broker and store: CONTRACTS.md §1 end to end."""
import json

import pymongo
import pytest
from nameko.standalone.rpc import ClusterRpcProxy

from services.common import amqp, ids
from services.common.store import database
from services.intake.service import IntakeService
from tests.support.harness import listening, submission, wait_until

pytestmark = pytest.mark.integration



def receipts_of(listener, message_id, count=1):
    return listener.wait_for(lambda m: m["body"]["message_id"] == message_id, count=count)


def test_accepted_receipt_event_and_acknowledgement(settings, run_services, center):
    with listening(settings.amqp_uri, amqp.OUTBOUND_EXCHANGE, "receipt.#") as receipts, \
            listening(settings.amqp_uri, amqp.NOTIFICATIONS_EXCHANGE) as notices, \
            listening(settings.amqp_uri, "intake.events", "complaint_received") as events, \
            run_services(settings, IntakeService):
        body = submission()
        message_id = center.send(body, channel="phone")
        [receipt] = receipts_of(receipts, message_id)
        assert receipt["routing_key"] == "receipt.cc-shandong"
        answer = receipt["body"]
        assert answer["status"] == "accepted"
        assert answer["external_id"] == body["external_id"]
        assert answer["errors"] == {}
        assert ids.is_valid_complaint_no(answer["complaint_no"])
        assert answer["complaint_no"].startswith("BANKA-")
        # cbirc-2020: 15 calendar days from receipt
        assert answer["due_by"] is not None

        [event] = events.wait_for(lambda m: m["body"]["complaint_no"] == answer["complaint_no"])
        assert event["body"]["type"] == "complaint_received"
        assert event["body"]["body"]["channel"] == "phone"
        assert "customer" not in event["body"]["body"]  # no personal data in the event

        [notice] = notices.wait_for(lambda m: m["body"]["complaint_no"] == answer["complaint_no"])
        assert notice["routing_key"] == "notify.sms"
        assert notice["body"]["template"] == "acknowledged"
        assert notice["body"]["to"] == "13800138000"
        assert notice["body"]["params"]["due_by"] == answer["due_by"]
        assert notice["body"]["params"]["contact"]["phone"]

        stored = database(settings, "intake")["complaints"].find_one({"_id": answer["complaint_no"]})
        assert stored["status"] == "received"
        assert stored["channel"] == "phone"
        assert [entry["type"] for entry in stored["history"]] == ["complaint_received"]


def test_same_message_twice_is_one_complaint(settings, run_services, center):
    with listening(settings.amqp_uri, amqp.OUTBOUND_EXCHANGE, "receipt.#") as receipts, \
            run_services(settings, IntakeService):
        body = submission()
        message_id = center.send(body)
        [first] = receipts_of(receipts, message_id)
        center.send(body, message_id=message_id)
        both = receipts_of(receipts, message_id, count=2)
        assert [r["body"]["status"] for r in both] == ["accepted", "duplicate"]
        assert both[1]["body"]["complaint_no"] == first["body"]["complaint_no"]
        count = database(settings, "intake")["complaints"].count_documents({"message_id": message_id})
        assert count == 1


def test_same_message_twice_at_once_into_two_instances(settings, run_services, center):
    """Two intake instances consume the same queue; every message is sent twice at once."""
    with listening(settings.amqp_uri, amqp.OUTBOUND_EXCHANGE, "receipt.#") as receipts, \
            run_services(settings, IntakeService), run_services(settings, IntakeService):
        message_ids = []
        for _ in range(20):
            body = submission()
            message_id = center.send(body)
            center.send(body, message_id=message_id)
            message_ids.append(message_id)
        answers = receipts.wait_for(lambda m: m["body"]["message_id"] in message_ids, count=40, timeout=60)
        complaints = database(settings, "intake")["complaints"]
        for message_id in message_ids:
            mine = [a["body"] for a in answers if a["body"]["message_id"] == message_id]
            assert sorted(a["status"] for a in mine) == ["accepted", "duplicate"]
            assert len({a["complaint_no"] for a in mine}) == 1
            assert complaints.count_documents({"message_id": message_id}) == 1


@pytest.mark.parametrize("change, expected", [
    ({"customer": {"name": "李娜"}}, {"customer": ["give at least one of phone, email or address so the "
                                                   "customer can be answered"]}),
    ({"subject": "x" * 201}, {"subject": ["Length must be between 1 and 200."]}),
    ({"amount_in_dispute": 300}, {"amount_in_dispute": ['must be a decimal string such as "1200.00"']}),
    ({"amount_in_dispute": "12.345"}, {"amount_in_dispute": ["must have at most two decimal places"]}),
    ({"customer": {"name": "李娜", "phone": "call me"}}, {"customer.phone": ["is not a phone number"]}),
    ({"kind": "praise"}, {"kind": ["Must be one of: complaint, suggestion, consultation."]}),
])
def test_rejected_with_field_paths(settings, run_services, center, change, expected):
    with listening(settings.amqp_uri, amqp.OUTBOUND_EXCHANGE, "receipt.#") as receipts, \
            run_services(settings, IntakeService):
        message_id = center.send(submission(**change))
        [receipt] = receipts_of(receipts, message_id)
        assert receipt["body"]["status"] == "rejected"
        assert receipt["body"]["complaint_no"] is None
        assert receipt["body"]["errors"] == expected
        db = database(settings, "intake")
        assert db["complaints"].count_documents({}) == 0
        assert db["rejections"].count_documents({"message_id": message_id, "kind": "invalid"}) == 1


def test_regulator_channel_needs_its_reference(settings, run_services, center):
    with listening(settings.amqp_uri, amqp.OUTBOUND_EXCHANGE, "receipt.#") as receipts, \
            run_services(settings, IntakeService):
        missing = center.send(submission(), channel="regulator")
        given = center.send(submission(regulator_ref="SD-JG-2026-0917"), channel="regulator")
        [rejected] = receipts_of(receipts, missing)
        [accepted] = receipts_of(receipts, given)
        assert rejected["body"]["errors"] == {"regulator_ref": ["is required for complaints forwarded by a regulator"]}
        assert accepted["body"]["status"] == "accepted"


def test_a_group_in_person_names_at_most_five_representatives(settings, run_services, center):
    """Order 3/2020 Art. 12: 30 people at an outlet choose at most 5 to speak for them; the
    record names them, and a sixth, or none at all, is refused saying why (and kept)."""
    five = [{"name": f"代表{i}", "phone": f"1390000000{i}"} for i in range(5)]
    with listening(settings.amqp_uri, amqp.OUTBOUND_EXCHANGE, "receipt.#") as receipts, \
            run_services(settings, IntakeService), ClusterRpcProxy(settings.nameko_config()) as rpc:
        named = center.send(submission(group_size=30, representatives=five), channel="visit")
        six = center.send(submission(group_size=30, representatives=[*five, {"name": "代表5"}]), channel="visit")
        none = center.send(submission(group_size=30), channel="visit")
        by_letter = center.send(submission(group_size=30), channel="letter")
        [accepted] = receipts_of(receipts, named)
        assert accepted["body"]["status"] == "accepted"
        assert rpc.intake.get(accepted["body"]["complaint_no"], None)["representatives"] == five
        [too_many] = receipts_of(receipts, six)
        assert too_many["body"]["errors"] == {"representatives": ["name 1 to 5 representatives (Order 3/2020 Art. 12)"]}
        [missing] = receipts_of(receipts, none)
        assert missing["body"]["errors"] == {"representatives": [
            "are required when 30 people complain in person: they choose at most 5 (Order 3/2020 Art. 12)"]}
        [letter] = receipts_of(receipts, by_letter)
        assert letter["body"]["status"] == "accepted"  # not in person: none need be named
        rejections = database(settings, "intake")["rejections"]
        assert {row["message_id"] for row in rejections.find({"errors.field": "representatives"})} == {
            six, none}


@pytest.mark.parametrize("raw, properties, key, errors", [
    (b"{not json", {}, "receipt.cc-shandong", {"body"}),
    (b"\xff\xfe\x00garbage", {}, "receipt.cc-shandong", {"body"}),
    (b"[1, 2]", {}, "receipt.cc-shandong", {"body"}),
    (json.dumps(submission()).encode(), {"app_id": None}, "receipt.unknown", {"properties.app_id"}),
    (json.dumps(submission()).encode(), {"content_type": "text/plain"}, "receipt.cc-shandong",
     {"properties.content_type"}),
    (json.dumps(submission()).encode(), {"routing_key": "complaint.fax"}, "receipt.cc-shandong", {"routing_key"}),
])
def test_unparseable_is_answered_and_kept_whole(settings, run_services, center, raw, properties, key, errors):
    with listening(settings.amqp_uri, amqp.OUTBOUND_EXCHANGE, "receipt.#") as receipts, \
            run_services(settings, IntakeService):
        message_id = center.send(raw, **properties)
        [receipt] = receipts_of(receipts, message_id)
        assert receipt["routing_key"] == key
        assert receipt["body"]["status"] == "rejected"
        assert set(receipt["body"]["errors"]) == errors
        kept = database(settings, "intake")["rejections"].find_one({"message_id": message_id})
        assert kept["kind"] == "unparseable"
        assert bytes(kept["body"]) == raw


def test_unknown_branch_rejected_once_the_organization_is_known(settings, run_services, center):
    from services.common import events
    from services.common.outbox import event_message

    with listening(settings.amqp_uri, amqp.OUTBOUND_EXCHANGE, "receipt.#") as receipts, \
            run_services(settings, IntakeService):
        before = center.send(submission(branch="NOWHERE"))
        assert receipts_of(receipts, before)[0]["body"]["status"] == "accepted"
        announcement = event_message(events.make_event(
            "organization_changed", None, {"institutions": {"BANKA": ["BANKA", "BANKA-SD"]}}, "routing"))
        center.publisher.publish(announcement["exchange"], announcement["routing_key"], announcement["body"])
        db = database(settings, "intake")
        wait_until(lambda: db["organization"].find_one({"_id": "units"}), "intake stored the organization")
        unknown_branch = center.send(submission(branch="NOWHERE"))
        unknown_institution = center.send(submission(institution="BANKZ"))
        known = center.send(submission(branch="BANKA-SD"))
        assert receipts_of(receipts, unknown_branch)[0]["body"]["errors"] == {
            "branch": ["unknown branch of this institution"]}
        assert receipts_of(receipts, unknown_institution)[0]["body"]["errors"] == {
            "institution": ["unknown institution"]}
        assert receipts_of(receipts, known)[0]["body"]["status"] == "accepted"


def test_store_keeps_unique_index_on_message(settings, run_services):
    with run_services(settings, IntakeService):
        indexes = database(settings, "intake")["complaints"].index_information()
    assert indexes["one_per_message"]["unique"] is True
    assert indexes["one_per_message"]["key"] == [("app_id", pymongo.ASCENDING), ("message_id", pymongo.ASCENDING)]


def test_operator_sees_health_and_the_kept_rejections(settings, run_services, center):
    import subprocess
    import sys

    from nameko.standalone.rpc import ClusterRpcProxy

    from tests.support.harness import env_for
    from tests.support.infra import ROOT

    with listening(settings.amqp_uri, amqp.OUTBOUND_EXCHANGE, "receipt.#") as receipts, \
            run_services(settings, IntakeService), ClusterRpcProxy(settings.nameko_config()) as rpc:
        message_id = center.send(b"\x00 not a complaint")
        receipts_of(receipts, message_id)
        health = rpc.intake.health()
        assert health["status"] == "ok"
        assert health["rejections_kept"] == 1
    listing = subprocess.run([sys.executable, "-m", "services.intake.rejections"], cwd=ROOT, env=env_for(settings),
                             capture_output=True, text=True, check=True, timeout=60)
    [row] = [json.loads(line) for line in listing.stdout.splitlines()]
    assert row["message_id"] == message_id
    assert row["body"] == "\x00 not a complaint"
    assert row["errors"] == {"body": ["is not JSON: Expecting value at line 1 column 1"]}
