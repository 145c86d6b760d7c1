"""The SLA service's entrypoints: complaint facts it follows, the firing timer, RPC for the
HTTP edge and operators. Everything else is in ``clocks``."""
from __future__ import annotations

import logging
import time

from nameko.dependency_providers import Config
from nameko.rpc import rpc
from nameko.timer import timer

from services.common.config import from_container
from services.common.consumers import subscribe
from services.common.outbox import Outbox
from services.common.policy import book_loaders
from services.common.store import Domain
from services.sla.clocks import INDEXES, Clocks

log = logging.getLogger(__name__)


class SlaService:
    name = "sla"

    keeper = Domain(Clocks, indexes=INDEXES, options=book_loaders)
    outbox = Outbox()
    config = Config()

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
        settings = from_container(self.config)
        fired = self.keeper.sweep(self.outbox, limit=settings.sla_sweep_batch, budget=settings.sla_sweep_budget)
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

    @timer(interval=1)
    def recompute(self):
        """Work the recompute jobs an operator started, a batch at a time (the outbox
        publishes the rescheduled clocks' events when this worker ends)."""
        return self.keeper.rescheduling.work(self.outbox)

    @timer(interval=30)
    def watch(self):
        """Keep the operators' alert (clocks without a due date) and its metric current."""
        return self.keeper.health()

    @rpc
    def health(self) -> dict:
        return self.keeper.health()

    @rpc
    def start_recompute(self, institution: str | None = None) -> dict:
        return self.keeper.rescheduling.start(institution)

    @rpc
    def recompute_job(self, job_id: str) -> dict:
        return self.keeper.rescheduling.view(job_id)
