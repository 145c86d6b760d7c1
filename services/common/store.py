"""MongoDB access: one client per process, one database per service.

A service declares its indexes next to its domain; they are created when the service
starts, so every hot query has its index before the first message arrives. Writes use
write concern ``majority`` so that, on a replica set, an acknowledged write survives a
failover.
"""
from __future__ import annotations

import threading
from collections.abc import Callable
from typing import TypeVar

from nameko.extensions import DependencyProvider
from pymongo import MongoClient, WriteConcern
from pymongo.read_concern import ReadConcern

from services.common.config import Settings, from_container
from services.common.errors import Conflict, Stale

T = TypeVar("T")
# How often a change is computed again after losing a race, for every optimistic write.
CONFLICT_ATTEMPTS = 10

_clients: dict[str, MongoClient] = {}
_clients_lock = threading.Lock()


def client_for(uri: str) -> MongoClient:
    """A shared client per URI: pymongo pools connections and is safe across greenlets."""
    with _clients_lock:
        client = _clients.get(uri)
        if client is None:
            client = MongoClient(uri, w="majority", tz_aware=True, connect=False)
            _clients[uri] = client
        return client


def database(settings: Settings, service: str):
    return client_for(settings.mongo_uri)[f"{settings.db_prefix}_{service}"]


def in_transaction(db, work):
    """Run ``work(session)`` in one multi-document transaction and return its result.

    Concurrent transactions meet write conflicts now and then (on MongoDB as on
    SecantusDB); pymongo's ``with_transaction`` retries those transient errors, and the
    commit, for up to two minutes, so ``work`` must be safe to run again.
    """
    with db.client.start_session() as session:
        return session.with_transaction(
            work, read_concern=ReadConcern("snapshot"), write_concern=WriteConcern("majority")
        )


def retry_on_conflict(attempt: Callable[[], T], what: str) -> T:
    """Optimistic concurrency: ``attempt()`` reads, computes its change and writes it on the
    condition that what it read has not changed, raising ``Stale`` when it had. It is run
    again (re-read, re-applied) up to ``CONFLICT_ATTEMPTS`` times; then Conflict, which a
    consumer retries after its delays like any handler error."""
    for _ in range(CONFLICT_ATTEMPTS):
        try:
            return attempt()
        except Stale:
            continue
    raise Conflict(f"{what} kept changing: gave up after {CONFLICT_ATTEMPTS} attempts")


def ensure_indexes(db, indexes: dict) -> None:
    """``indexes`` maps a collection name to a list of ``pymongo.IndexModel``."""
    for collection, models in indexes.items():
        if models:
            db[collection].create_indexes(models)


class Domain(DependencyProvider):
    """Builds a service's domain object once per process, over the service's own database
    (its indexes created first), and hands it to every worker. ``options(settings)``, when
    given, says which keyword arguments of the factory come from the settings."""

    def __init__(self, factory, indexes: dict | None = None, options=None):
        self.factory = factory
        self.indexes = indexes or {}
        self.options = options

    def setup(self):
        settings = from_container(self.container.config)
        db = database(settings, self.container.service_name)
        ensure_indexes(db, self.indexes)
        self.domain = self.factory(db, **(self.options(settings) if self.options else {}))

    def get_dependency(self, worker_ctx):
        return self.domain
