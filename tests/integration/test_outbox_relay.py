"""The outbox relay over the real broker and store: a message is published once, also
when the store goes away between the broker's confirm and the mark."""
from __future__ import annotations

import uuid
from contextlib import suppress
from datetime import timedelta

import pytest
from pymongo import MongoClient
from pymongo.errors import PyMongoError

from services.common import amqp, outbound
from services.common.outbox import Relay
from tests.support.harness import listening, wait_until
from tests.support.proxy import store_proxy

pytestmark = pytest.mark.integration


class CuttingPublisher(amqp.Publisher):
    """Publishes, then (the first time) makes the store unreachable: the relay cannot mark
    what it sent."""

    def __init__(self, amqp_uri: str, proxy):
        super().__init__(amqp_uri)
        self.proxy = proxy
        self.published = 0

    def publish(self, *args, **kwargs) -> None:
        super().publish(*args, **kwargs)
        self.published += 1
        if self.published == 1:
            self.proxy.cut()


def receipt(message_id: str) -> dict:
    return outbound.receipt("cc-test", {"message_id": message_id, "external_id": None, "status": "accepted",
                                        "complaint_no": "BANKA-261124-0000018", "due_by": None, "errors": {}})


def swept(relay: Relay) -> bool:
    try:
        relay.sweep()
    except PyMongoError:
        return False
    return True


def test_a_message_published_while_the_store_is_unreachable_is_published_once(settings, mongo_uri):
    message_id = uuid.uuid4().hex
    with store_proxy(mongo_uri) as proxy, \
            listening(settings.amqp_uri, amqp.OUTBOUND_EXCHANGE, "receipt.#") as receipts:
        client = MongoClient(proxy.uri(serverSelectionTimeoutMS=300), tz_aware=True)
        outbox = client[f"{settings.db_prefix}_intake"]["outbox"]
        publisher = CuttingPublisher(settings.amqp_uri, proxy)
        relay = Relay(outbox, publisher, grace=timedelta(0))  # the sweep may take any row at once
        try:
            [row_id] = relay.stage(None, [receipt(message_id)])
            # The worker's relay publishes; the store goes away before the row is marked
            # (a worker logs the failure and leaves the row to the sweep).
            with suppress(PyMongoError):
                relay.relay([row_id])
            with suppress(PyMongoError):
                relay.sweep()  # the store still unreachable
            proxy.restore()
            # The store back (the first call may still meet a connection the cut closed):
            # the sweep marks what was published and publishes nothing again.
            wait_until(lambda: swept(relay), "a sweep ran with the store back")
            relay.sweep()
            assert outbox.find_one({"_id": row_id})["sent_at"] is not None
            # Publishing is confirmed before relay() and sweep() return: all deliveries are in.
            delivered = [m for m in receipts.drain() if m["body"]["message_id"] == message_id]
            assert len(delivered) == 1
        finally:
            publisher.close()
            client.close()
