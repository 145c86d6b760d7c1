"""The store unreachable for longer than the first retry delay while complaints arrive:
afterwards every one is accepted and stored once, with exactly one receipt each."""
from __future__ import annotations

import logging
import subprocess
import time
from urllib.parse import unquote

import pytest

from services.common import amqp
from services.common.outbox import pending
from services.common.store import database
from services.intake.service import IntakeService
from tests.support.harness import CallCenter, listening, settings_for, submission, wait_until
from tests.support.proxy import store_proxy

pytestmark = [pytest.mark.integration, pytest.mark.slow]

COMPLAINTS = 20
OUTAGE = 3.0  # seconds at least


def intake_queues_idle(amqp_uri: str) -> bool:
    """Nothing left in intake.inbound and its delay queues, ready or being handled."""
    vhost = unquote(amqp_uri.rsplit("/", 1)[1])
    listed = subprocess.run(["rabbitmqctl", "-q", "list_queues", "-p", vhost, "--no-table-headers",
                             "name", "messages"], check=True, capture_output=True, text=True, timeout=60).stdout
    rows = [line.split() for line in listed.splitlines() if line.strip()]
    return all(int(count) == 0 for name, count in rows if name.startswith("intake.inbound"))


def test_complaints_arriving_while_the_store_is_unreachable_are_each_accepted_once(
        settings, mongo_uri, run_services, caplog):
    caplog.set_level(logging.WARNING, logger="services.common.consumers")
    with store_proxy(mongo_uri) as proxy:
        # Through the proxy; a store that does not answer is given up on after 0.5 s.
        through_proxy = settings_for(settings.amqp_uri, proxy.uri(serverSelectionTimeoutMS=500),
                                     prefix=settings.db_prefix)
        db = database(settings, "intake")  # the test reads the store directly
        center = CallCenter(settings.amqp_uri)
        with listening(settings.amqp_uri, amqp.OUTBOUND_EXCHANGE, "receipt.#") as receipts:
            with run_services(through_proxy, IntakeService):
                proxy.cut()
                cut_at = time.monotonic()
                message_ids = [center.send(submission(external_id=f"CC-OUT-{n:03d}")) for n in range(COMPLAINTS)]
                # Every message met the outage, which lasts far longer than the first retry
                # delay (0.2 s): they come back from their retries while it lasts.
                wait_until(lambda: sum("ServerSelectionTimeoutError" in r.getMessage() for r in caplog.records)
                           >= COMPLAINTS and time.monotonic() - cut_at > OUTAGE, "every message met the outage",
                           timeout=60)
                proxy.restore()
                receipts.wait_for(lambda m: m["body"]["message_id"] in message_ids, count=COMPLAINTS, timeout=120)
                wait_until(lambda: pending(db) == 0 and intake_queues_idle(settings.amqp_uri),
                           "intake has relayed everything and has nothing left to handle", timeout=60)
                assert intake_queues_idle(settings.amqp_uri)  # not even parked
            # Stopped: every receipt it will ever send has been sent.
            answers = [m["body"] for m in receipts.drain() if m["body"]["message_id"] in message_ids]
        center.close()

    per_message = {}
    for answer in answers:
        per_message.setdefault(answer["message_id"], []).append(answer["status"])
    assert per_message == {message_id: ["accepted"] for message_id in message_ids}
    stored = list(db["complaints"].find({}, {"message_id": 1}))
    assert sorted(c["message_id"] for c in stored) == sorted(message_ids)
    assert db["rejections"].count_documents({}) == 0
