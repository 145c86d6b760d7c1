"""The transactional outbox: a state change and the messages announcing it are stored in
one transaction, then relayed to RabbitMQ with publisher confirms.

A worker stages its messages with ``outbox.stage(session, ...)`` inside the transaction of
its change. When the worker ends, the relay publishes what it staged at once. Rows carry
``relay_after``: should the process die before its own relay, a sweep in any instance of
the service claims the row once that time has passed and publishes it.

A process publishes a row once: when the store cannot be reached to mark a published row
sent, the relay remembers it, retries the mark on every sweep, and neither its workers nor
its sweep publish it again. A message may still be published twice when the process dies
between the broker's confirm and the mark, or when another instance's sweep claims a row
whose mark is still waiting after its lease (the store down for longer than ``LEASE``);
never zero times. Consumers are idempotent on ``event_id`` / ``notification_id``.
"""
from __future__ import annotations

import json
import logging
from datetime import timedelta

import eventlet
from nameko.extensions import DependencyProvider
from pymongo import ASCENDING, IndexModel
from pymongo.errors import PyMongoError

from services.common import amqp, events, ids, timeutil
from services.common.config import from_container
from services.common.store import database

log = logging.getLogger(__name__)

COLLECTION = "outbox"
SWEEP_INTERVAL = 1.0
SWEEP_BATCH = 200
LEASE = timedelta(seconds=30)


def event_message(event: dict) -> dict:
    return {
        "_id": event["event_id"],
        "exchange": events.exchange_name(event["producer"]),
        "routing_key": event["type"],
        "body": event,
    }


def contract_message(exchange: str, routing_key: str, body: dict, message_id: str | None = None, **properties) -> dict:
    """A message of a public contract (receipt, status, notification). Its body is kept
    as the JSON text it is published as: a receipt's errors name the publisher's own keys,
    which may be keys no document may hold (a NUL byte)."""
    return {
        "_id": message_id or ids.new_id(),
        "exchange": exchange,
        "routing_key": routing_key,
        "body": json.dumps(body, ensure_ascii=False),
        "properties": properties,
    }


class Relay:
    """Publishes outbox rows and marks them sent; shared by the workers and the sweep."""

    def __init__(self, collection, publisher: amqp.Publisher, grace: timedelta):
        self.collection = collection
        self.publisher = publisher
        self.grace = grace
        # Rows this process is publishing, or has published without being able to mark them
        # sent yet (the store unreachable): none of them is published again from here.
        self._held: set[str] = set()
        self._unmarked: set[str] = set()

    def stage(self, session, messages: list[dict]) -> list[str]:
        if not messages:
            return []
        relay_after = timeutil.now() + self.grace
        rows = [dict(message, created_at=timeutil.now(), relay_after=relay_after, sent_at=None) for message in messages]
        self.collection.insert_many(rows, session=session)
        return [row["_id"] for row in rows]

    def publish_rows(self, rows) -> int:
        rows = [row for row in rows if row["_id"] not in self._held]
        self._held.update(row["_id"] for row in rows)
        sent = []
        try:
            for row in rows:
                self.publisher.publish(
                    row["exchange"], row["routing_key"], row["body"], message_id=row["_id"],
                    **row.get("properties", {}),
                )
                sent.append(row["_id"])
        finally:
            # What was not published is free for a later relay or sweep.
            self._held.difference_update({row["_id"] for row in rows} - set(sent))
            # One write marks every confirmed message, also when a later one failed.
            self._mark(sent)
        return len(sent)

    def _mark(self, sent: list[str]) -> None:
        if not sent:
            return
        self._unmarked.update(sent)
        try:
            self.collection.update_many({"_id": {"$in": sent}}, {"$set": {"sent_at": timeutil.now()}})
        except PyMongoError as exc:
            log.warning("%d published message(s) not marked sent yet, will retry the mark: %s", len(sent), exc)
            return
        self._unmarked.difference_update(sent)
        self._held.difference_update(sent)

    def retry_marks(self) -> None:
        """Mark sent what this process published while the store was unreachable."""
        self._mark(sorted(self._unmarked))

    def relay(self, row_ids: list[str]) -> int:
        """Publish the rows a worker staged (only those whose transaction committed)."""
        if not row_ids:
            return 0
        rows = self.collection.find({"_id": {"$in": row_ids}, "sent_at": None}).sort("created_at", ASCENDING)
        return self.publish_rows(list(rows))

    def sweep(self) -> int:
        """Claim and publish rows whose worker did not relay them in time."""
        self.retry_marks()
        now = timeutil.now()
        due = self.collection.find(
            {"sent_at": None, "relay_after": {"$gte": timeutil.EPOCH, "$lte": now}}, {"_id": 1, "relay_after": 1}
        ).sort("relay_after", ASCENDING).limit(SWEEP_BATCH)
        claimed = []
        for row in due:
            if row["_id"] in self._held:
                continue  # ours, published or being published
            # The claim is a conditional update: of several instances, exactly one wins it.
            result = self.collection.update_one(
                {"_id": row["_id"], "relay_after": row["relay_after"], "sent_at": None},
                {"$set": {"relay_after": now + LEASE}},
            )
            if result.modified_count:
                claimed.append(row["_id"])
        if not claimed:
            return 0
        return self.publish_rows(self.collection.find({"_id": {"$in": claimed}}).sort("created_at", ASCENDING))


def pending(db) -> int:
    """Messages a service staged and has not relayed yet (operators watch this)."""
    return db[COLLECTION].count_documents({"sent_at": None})


INDEXES = [
    IndexModel([("sent_at", ASCENDING), ("relay_after", ASCENDING)]),
    # Sent rows are history; keep a week of them for operators, then let MongoDB drop them.
    # TTL ignores rows whose sent_at is null, so only relayed rows ever expire.
    IndexModel([("sent_at", ASCENDING)], name="sent_at_ttl", expireAfterSeconds=7 * 24 * 3600),
]


class _Staging:
    def __init__(self, relay: Relay, staged: list):
        self._relay = relay
        self._staged = staged

    def stage(self, session, *messages: dict) -> None:
        self._staged.extend(self._relay.stage(session, list(messages)))


class Outbox(DependencyProvider):
    """Stages messages in the worker's transaction; relays them when the worker ends, and
    sweeps what a dead process left behind."""

    def setup(self):
        settings = from_container(self.container.config)
        db = database(settings, self.container.service_name)
        db[COLLECTION].create_indexes(INDEXES)
        self.publisher = amqp.Publisher(settings.amqp_uri)
        self.retry_delays = settings.retry_delays
        self.relay_ = Relay(db[COLLECTION], self.publisher, timedelta(seconds=settings.outbox_grace))
        self._staged: dict = {}
        self._running = False

    def start(self):
        # Subscribers' queues exist before the first event leaves (the broker drops
        # messages no queue is bound to).
        with self.publisher.connection.clone() as connection:
            amqp.declare_topology(connection, self.retry_delays)
        self._running = True
        self.container.spawn_managed_thread(self._sweep_forever, identifier="outbox.sweep")

    def stop(self):
        self._running = False

    def kill(self):
        self._running = False

    def _sweep_forever(self):
        while self._running:
            try:
                self.relay_.sweep()
            except (PyMongoError, OSError) as exc:
                log.warning("outbox sweep failed, will retry: %s", exc)
            except Exception:  # keep sweeping whatever one row did
                log.exception("outbox sweep failed")
            eventlet.sleep(SWEEP_INTERVAL)

    def get_dependency(self, worker_ctx):
        staged = self._staged.setdefault(worker_ctx, [])
        return _Staging(self.relay_, staged)

    def worker_teardown(self, worker_ctx):
        staged = self._staged.pop(worker_ctx, [])
        try:
            self.relay_.relay(staged)
        except Exception as exc:  # the sweep relays them later; the worker's result stands
            log.warning("relay after worker failed, the sweep will retry: %s", exc)
