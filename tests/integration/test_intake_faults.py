"""kill -9 of intake in the middle of a stream: no complaint lost, none doubled."""
import time

import pytest

from services.common import amqp
from services.common.store import database
from tests.support.harness import CallCenter, ServiceProcess, listening, submission, wait_until

pytestmark = [pytest.mark.integration, pytest.mark.slow]

STREAM = 1000


def test_kill_9_mid_stream_loses_none_and_doubles_none(settings, tmp_path):
    complaints = database(settings, "intake")["complaints"]
    center = CallCenter(settings.amqp_uri)
    log = tmp_path / "intake.log"
    with listening(settings.amqp_uri, amqp.OUTBOUND_EXCHANGE, "receipt.#") as receipts, \
            listening(settings.amqp_uri, "intake.events", "complaint_received") as events:
        first = ServiceProcess(["services.intake.service"], settings, log).start()
        try:
            message_ids = [center.send(submission(external_id=f"CC-{n:05d}")) for n in range(STREAM)]
            # Let it get well into the stream, then kill it without warning.
            wait_until(lambda: complaints.estimated_document_count() >= STREAM // 4, "a quarter was stored",
                       timeout=120)
            first.kill()
            killed_at = complaints.count_documents({})
            assert killed_at < STREAM, "the stream finished before the kill; nothing was tested"
        finally:
            first.kill()
        second = ServiceProcess(["services.intake.service"], settings, log).start()
        try:
            wait_until(lambda: complaints.count_documents({}) >= STREAM, "every message was stored", timeout=180)
            wanted = set(message_ids)
            answered = lambda: {m["body"]["message_id"] for m in receipts.drain()} >= wanted  # noqa: E731
            wait_until(answered, "every message was answered", timeout=120)
            # Every stored complaint's event left through the outbox (the sweep covers the kill).
            stored = {c["complaint_no"] for c in complaints.find({}, {"complaint_no": 1})}
            wait_until(lambda: {m["body"]["complaint_no"] for m in events.drain()} >= stored,
                       "every complaint_received event was relayed", timeout=120)
        finally:
            second.stop()
        time.sleep(0.2)
    center.close()

    assert complaints.count_documents({}) == STREAM
    per_message = list(complaints.aggregate([{"$group": {"_id": "$message_id", "n": {"$sum": 1}}}]))
    assert len(per_message) == STREAM
    assert {group["n"] for group in per_message} == {1}
    assert {group["_id"] for group in per_message} == set(message_ids)
    statuses = {}
    for receipt in receipts.messages:
        statuses.setdefault(receipt["body"]["message_id"], set()).add(receipt["body"]["status"])
    # Each message was accepted exactly once; a redelivery after the kill is answered duplicate.
    assert all("accepted" in found and "rejected" not in found for found in statuses.values())
    numbers = {r["body"]["complaint_no"] for r in receipts.messages}
    assert len(numbers) == STREAM
