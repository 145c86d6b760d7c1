"""Whatever a publisher sends to complaints.inbound is answered once and kept (CONTRACTS.md
§1): messages that broke intake's handler, its store or its very consumer, over the real
broker and store."""
from __future__ import annotations

import json
from datetime import datetime
from decimal import Decimal

import pytest
from gridfs import GridFSBucket
from kombu import Connection

from services.common import amqp
from services.common.store import database
from services.intake.intake import MAX_BODY_BYTES, REJECTED_BODIES
from services.intake.service import IntakeService
from tests.support.harness import listening, publish_raw, submission

pytestmark = pytest.mark.integration

VALID = json.dumps(submission()).encode()


def with_raw(field_json: str) -> bytes:
    """A valid submission with one more member written as raw JSON text."""
    return VALID[:-1] + b", " + field_json.encode() + b"}"


HUGE_HEADERS = {f"x-hdr-{n:05d}": "v" * 40 for n in range(2000)} | {
    "a.b": 1, "$where": "1", "nul\x00key": Decimal("1.5"), "when": datetime(2026, 1, 1)}

# id, body, properties (over app_id cc-hostile and content type JSON), headers, routing key,
# the receipt's routing key, the error's field and a fragment of its message.
CASES = [
    ("nested 10,000 deep", b'{"a":' * 10_000 + b"1" + b"}" * 10_000, {}, None, None,
     "receipt.cc-hostile", "body", "nested too deeply"),
    ("integer of 5,000 digits", with_raw('"group_size": ' + "7" * 5000), {}, None, None,
     "receipt.cc-hostile", "body", "4300 digits"),
    ("a time with no date in China", json.dumps(submission(received_at="0001-01-01T00:00:00+14:00")).encode(), {},
     None, None, "receipt.cc-hostile", "received_at", "days ago"),
    ("NaN", with_raw('"group_size": NaN'), {}, None, None, "receipt.cc-hostile", "body", "NaN"),
    ("1e400", with_raw('"group_size": 1e400'), {}, None, None, "receipt.cc-hostile", "body", "out of range"),
    ("17 MB body", json.dumps(submission(description="x" * 17_000_000)).encode(), {}, None, None,
     "receipt.cc-hostile", "body", "too large"),
    ("NUL byte in a key", with_raw('"customer\\u0000": {"name": "x"}'), {}, None, None,
     "receipt.cc-hostile", "customer\x00", "Unknown field"),
    ("dots and dollars in keys", with_raw('"$where": "1", "a.b": {"$gt": 1}'), {}, None, None,
     "receipt.cc-hostile", "$where", "Unknown field"),
    ("lone surrogate escape", json.dumps(submission(description="\\ud800")).encode().replace(b"\\\\", b"\\"),
     {}, None, None, "receipt.cc-hostile", "body", "lone surrogate"),
    ("huge hostile header table", b"not json", {}, HUGE_HEADERS, None, "receipt.cc-hostile", "body", "not JSON"),
    ("message_id not UTF-8", VALID, {"message_id": b"m-\xff\xfe"}, None, None,
     "receipt.cc-hostile", "properties.message_id", "not UTF-8"),
    ("app_id not UTF-8", VALID, {"app_id": b"cc-\xff"}, None, None,
     "receipt.unknown", "properties.app_id", "ASCII code"),
    ("app_id too long for a routing key", VALID, {"app_id": "c" * 250}, None, None,
     "receipt.unknown", "properties.app_id", "ASCII code"),
    # Read as complaint.submit.??, a channel that does not exist.
    ("routing key not UTF-8", VALID, {}, None, b"complaint.submit.\xff\xfe", "receipt.cc-hostile", "channel",
     "Must be one of"),
    ("content type not UTF-8", VALID, {"content_type": b"application/\xffjson"}, None, None,
     "receipt.cc-hostile", "properties.content_type", "application/json"),
]


def queue_depth(amqp_uri: str, name: str) -> int:
    with Connection(amqp_uri) as connection:
        return connection.default_channel.queue_declare(queue=name, passive=True).message_count


@pytest.mark.parametrize("case", CASES, ids=[case[0] for case in CASES])
def test_a_hostile_message_is_answered_once_and_kept(settings, run_services, case):
    name, body, overrides, headers, routing_key, receipt_key, field, fragment = case
    message_id = f"hostile-{abs(hash(name))}"
    properties = {"message_id": message_id, "app_id": "cc-hostile", "content_type": "application/json",
                  "delivery_mode": 2, **overrides}
    rejections = database(settings, "intake")["rejections"]
    with listening(settings.amqp_uri, amqp.OUTBOUND_EXCHANGE, "receipt.#") as receipts:
        with run_services(settings, IntakeService):
            publish_raw(settings.amqp_uri, routing_key or "complaint.submit.phone", body, headers, **properties)
            # A valid complaint after it: the consumer is still there to take it.
            publish_raw(settings.amqp_uri, "complaint.submit.phone", VALID, message_id=f"{message_id}-after",
                        app_id="cc-hostile", content_type="application/json", delivery_mode=2)
            receipts.wait_for(lambda m: True, count=2, timeout=120)
            assert queue_depth(settings.amqp_uri, "intake.inbound.parked") == 0
        # The service stopped (its workers ended, their outbox relayed): every receipt is in.
        answers = [m for m in receipts.drain() if m["body"]["message_id"] != f"{message_id}-after"]
        assert len(answers) == 1, answers
        [answer] = answers
        assert answer["routing_key"] == receipt_key
        assert answer["body"]["status"] == "rejected"
        assert field in answer["body"]["errors"], answer["body"]["errors"]
        assert any(fragment in text for text in answer["body"]["errors"][field])

    [kept] = list(rejections.find())
    assert kept["body_bytes"] == len(body)
    if len(body) > MAX_BODY_BYTES:
        stored = GridFSBucket(database(settings, "intake"), bucket_name=REJECTED_BODIES)
        assert stored.open_download_stream(kept["body_file"]).read() == body
    else:
        assert bytes(kept["body"]) == body
    assert {entry["field"] for entry in kept["errors"]} == set(answer["body"]["errors"])
    if headers:
        assert json.loads(kept["headers"]) == json.loads(json.dumps(headers, default=str))
