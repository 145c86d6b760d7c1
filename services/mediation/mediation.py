"""Mediation's domain over its database (``<DB_PREFIX>_mediation``), as the service and the
tests drive it: the registry of organizations (``registry``), referrals and what their
organizations report (``referrals``), the durable delivery of what the organizations
must receive (``courier``), and the organization's tree routing announced (``organization``:
the units' regions). It never touches the broker: every event is staged in the
outbox within the transaction of the change it announces.
"""
from __future__ import annotations

import random
from collections.abc import Callable
from datetime import datetime

from services.common import inbox, timeutil
from services.common.config import Settings
from services.common.orgtree import AnnouncedOrganization
from services.mediation import courier, referrals, registry, webhook
from services.mediation.rules import Backoff

INDEXES = {**registry.INDEXES, **referrals.INDEXES, **inbox.INDEXES}


class Mediation:
    def __init__(self, db, settings: Settings | None = None, *, now: Callable[[], datetime] = timeutil.now,
                 send: courier.Sender = webhook.post, rng: random.Random | None = None):
        settings = settings or Settings()
        self.organization = AnnouncedOrganization(db)
        self.registry = registry.Registry(db, now)
        self.referrals = referrals.Referrals(db, self.registry, self.organization, now)
        self.courier = courier.Courier(
            db, self.registry, Backoff(settings.mediation_retry_base, settings.mediation_retry_cap,
                                       settings.mediation_retry_for),
            settings.mediation_timeout, now=now, send=send, rng=rng)
        if settings.mediation_organizations:
            self.registry.load(settings.mediation_organizations)

    def health(self) -> dict:
        return {"status": "ok", **self.referrals.pending_deliveries()}
