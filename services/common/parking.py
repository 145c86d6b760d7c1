"""Operators' view of parked messages: list them, replay them into their queue.

    python -m services.common.parking list intake.inbound
    python -m services.common.parking replay intake.inbound [--limit N]

A message is parked after its handler failed every retry; replaying sends it back to its
work queue with the attempt count reset, once the cause is fixed. The handler then sees it
as it was first published (routing key, properties, headers).
"""
from __future__ import annotations

import argparse
import json
import sys

from kombu import Connection

from services.common import amqp
from services.common.config import Settings
from services.common.consumers import delivery_of, republished


def _get(connection, queue_name):
    channel = connection.channel()
    return channel, lambda: channel.basic_get(queue=queue_name, no_ack=False)


def list_parked(amqp_uri: str, queue: str, limit: int = 100) -> list[dict]:
    """The parked messages, oldest first; they stay parked (unacked reads are requeued)."""
    parked = []
    with Connection(amqp_uri) as connection:
        channel, get = _get(connection, amqp.parked_queue_name(queue))
        try:
            while len(parked) < limit:
                message = get()
                if message is None:
                    break
                delivery = delivery_of(message)
                parked.append({
                    "message_id": delivery.properties.get("message_id"),
                    "app_id": delivery.properties.get("app_id"),
                    "routing_key": delivery.routing_key,
                    "headers": dict(message.headers or {}),
                    "body": message.body.decode("utf-8", errors="replace")
                    if isinstance(message.body, bytes) else message.body,
                })
        finally:
            channel.close()  # closing without acks puts every read message back
    return parked


def replay(amqp_uri: str, queue: str, limit: int | None = None) -> int:
    publisher = amqp.Publisher(amqp_uri)
    replayed = 0
    with Connection(amqp_uri) as connection:
        channel, get = _get(connection, amqp.parked_queue_name(queue))
        try:
            while limit is None or replayed < limit:
                message = get()
                if message is None:
                    break
                delivery = delivery_of(message)
                headers, properties = republished(delivery)  # no attempt counts: a fresh start
                publisher.publish("", queue, delivery.body, headers=headers, **properties)
                channel.basic_ack(message.delivery_tag)
                replayed += 1
        finally:
            channel.close()
            publisher.close()
    return replayed


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("action", choices=["list", "replay"])
    parser.add_argument("queue", help="the work queue, e.g. intake.inbound or routing.complaint_received")
    parser.add_argument("--limit", type=int, default=None)
    args = parser.parse_args(argv)
    uri = Settings.from_env().amqp_uri
    if args.action == "list":
        for message in list_parked(uri, args.queue, args.limit or 100):
            print(json.dumps(message, ensure_ascii=False, default=str))
    else:
        print(f"replayed {replay(uri, args.queue, args.limit)} message(s) into {args.queue}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
