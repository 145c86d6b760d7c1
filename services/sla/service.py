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
from services.common.errors import Unavailable
from services.common.outbox import Outbox
from services.common.rpc import UNAVAILABLE, TimedRpcProxy
from services.common.store import Domain
from services.sla.clocks import INDEXES, Clocks, books

log = logging.getLogger(__name__)


class SlaService:
    name = "sla"

    keeper = Domain(Clocks, indexes=INDEXES, options=books)
    outbox = Outbox()
    config = Config()
    intake = TimedRpcProxy("intake")

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

    @subscribe("complaint_referred")
    def on_referred(self, event: dict):
        self.keeper.on_referred(event, self.outbox)

    @subscribe("mediation_status_changed")
    def on_mediation_status_changed(self, event: dict):
        self.keeper.on_mediation_status_changed(event, self.outbox)

    @subscribe("agreement_carried_out")
    def on_agreement_carried_out(self, event: dict):
        self.keeper.on_agreement_carried_out(event, self.outbox)

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

    @subscribe("organization_changed")
    def on_organization_changed(self, event: dict):
        self.keeper.organization_changed(event)

    @rpc
    def act(self, complaint_no: str, action: str, data: dict, actor: dict) -> dict:
        """extend, pause, resume; who may is judged on intake's facts of the complaint."""
        return self.keeper.act(complaint_no, action, data, actor, self._facts(complaint_no), self.outbox)

    @rpc
    def approvals(self, actor: dict, pending: bool = True) -> list:
        """The approvals of extensions and pauses ``actor`` may decide (or also decided ones)."""
        return self.keeper.approvals_for(actor, pending)

    @rpc
    def decide_approval(self, approval_id: str, decision: str, note: str, actor: dict) -> dict:
        """approve or refuse a pending approval; an approved step applies with the decision."""
        facts = self._facts(self.keeper.approvals.complaint_of(approval_id))
        return self.keeper.decide_approval(approval_id, decision, note, actor, facts, self.outbox)

    def _facts(self, complaint_no: str) -> dict:
        # Who is accountable for the complaint is intake's to say (the system of record).
        try:
            return self.intake.access_facts(complaint_no)
        except UNAVAILABLE as exc:
            raise Unavailable(f"intake, which holds who is accountable for {complaint_no}, did not answer") from exc

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
