"""The floor the intake bench compares against: a bare kombu consumer, in a process of its
own, on the same queue (``intake.inbound``), broker and store as the platform. Per message:
parse the JSON, one ``insert_one`` (write concern majority, as the platform writes) into a
database of its own, one confirmed receipt on ``complaints.outbound``
(``receipt.<app_id>``), then ack. No validation, no deduplication, no numbering, no
outbox, no events: the least work that still stores the complaint and answers.

    AMQP_URI=... MONGO_URI=... FLOOR_DB=bench_floor python -m bench.intake.floor
"""
from __future__ import annotations

import json
import os
import signal
import sys
import uuid

from kombu import Connection, Consumer, Producer
from pymongo import ASCENDING, MongoClient

from services.common import amqp

PREFETCH = 10  # what nameko's max_workers (default 10) lets the platform take at once


def main() -> int:
    amqp_uri, mongo_uri = os.environ["AMQP_URI"], os.environ["MONGO_URI"]
    client = MongoClient(mongo_uri, w="majority", tz_aware=True)
    complaints = client[os.environ.get("FLOOR_DB", "bench_floor")]["complaints"]
    complaints.create_index([("app_id", ASCENDING), ("message_id", ASCENDING)], unique=True)
    stopping = []
    signal.signal(signal.SIGTERM, lambda *_: stopping.append(True))

    with Connection(amqp_uri) as consuming, \
            Connection(amqp_uri, transport_options={"confirm_publish": True}) as publishing:
        producer = Producer(publishing.channel(), exchange=amqp.topic(amqp.OUTBOUND_EXCHANGE))

        def on_message(message):
            app_id = message.properties.get("app_id") or "unknown"
            message_id = message.properties.get("message_id")
            body = json.loads(message.body)
            complaint_no = uuid.uuid4().hex[:16]
            complaints.insert_one({"_id": complaint_no, "app_id": app_id, "message_id": message_id, **body})
            receipt = {"message_id": message_id, "external_id": body.get("external_id"), "status": "accepted",
                       "complaint_no": complaint_no, "due_by": None, "errors": {}}
            producer.publish(json.dumps(receipt, ensure_ascii=False), routing_key=f"receipt.{app_id}",
                             content_type="application/json", content_encoding="utf-8", delivery_mode=2)
            message.ack()

        queue = amqp.inbound_queue()
        with Consumer(consuming.channel(), queues=[queue], on_message=on_message, prefetch_count=PREFETCH):
            print("ready", flush=True)
            while not stopping:
                try:
                    consuming.drain_events(timeout=0.5)
                except TimeoutError:
                    continue
    client.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
