"""The SLA service's entrypoints: complaint facts it follows, the firing timer, RPC for the
HTTP edge and operators. Everything else is in ``clocks``."""
from __future__ import annotations

import logging
import os
import time

from nameko.rpc import rpc
from nameko.timer import timer

from services.common.consumers import subscribe
from services.common.outbox import Outbox
from services.common.store import Domain
from services.sla.clocks import INDEXES, Clocks

# Points fired per timer tick at most, and the seconds a tick may spend firing: the outbox
# relays a tick's events when it ends, so a short tick keeps the due-to-published lag short.
log = logging.getLogger(__name__)

SWEEP_BATCH = int(os.environ.get("SLA_SWEEP_BATCH", "100"))
SWEEP_BUDGET = float(os.environ.get("SLA_SWEEP_BUDGET", "0.5"))


class SlaService:
    name = "sla"

    keeper = Domain(Clocks, indexes=INDEXES)
    outbox = Outbox()

    @subscribe("complaint_received")
    def on_received(self, event: dict):
        self.keeper.on_received(event, self.outbox)

    @subscribe("complaint_decided")
    def on_decided(self, event: dict):
        self.keeper.on_decided(event, self.outbox)

    @subscribe("complaint_closed")
    def on_closed(self, event: dict):
        self.keeper.on_closed(event, self.outbox)

    @subscribe("complaint_reopened")
    def on_reopened(self, event: dict):
        self.keeper.on_reopened(event, self.outbox)

    @subscribe("complaint_withdrawn")
    def on_withdrawn(self, event: dict):
        self.keeper.on_withdrawn(event, self.outbox)

    @subscribe("complaint_repeated")
    def on_repeated(self, event: dict):
        self.keeper.on_repeated(event, self.outbox)

    @timer(interval=1)
    def sweep(self):
        """Fire the warnings and breaches that are due (also those that fell due while no
        instance ran); the outbox publishes them when this worker ends."""
        started = time.perf_counter()
        fired = self.keeper.sweep(self.outbox, limit=SWEEP_BATCH, budget=SWEEP_BUDGET)
        if fired:
            log.info("sweep fired %d point(s) in %.1f ms", len(fired), (time.perf_counter() - started) * 1000)
        return len(fired)

    @rpc
    def extend(self, complaint_no: str, days: int, reason: str, actor: dict, approvals: list) -> list:
        return self.keeper.extend(complaint_no, days, reason, actor, approvals, self.outbox)

    @rpc
    def pause(self, complaint_no: str, reason: str, actor: dict) -> list:
        return self.keeper.pause(complaint_no, reason, actor, self.outbox)

    @rpc
    def resume(self, complaint_no: str, reason: str, actor: dict) -> list:
        return self.keeper.resume(complaint_no, reason, actor, self.outbox)

    @rpc
    def clocks(self, complaint_no: str) -> list:
        return self.keeper.view(complaint_no)

    @rpc
    def recompute_calendar(self, institution: str | None = None) -> dict:
        return self.keeper.recompute_calendar(institution, self.outbox)
