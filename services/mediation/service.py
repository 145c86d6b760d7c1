"""Mediation's entrypoints: RPC for the HTTP edge and operators, the delivery timer, and
routing's announcement of the organization's tree (who stands where, the units' regions).
Everything else is in ``mediation``."""
from __future__ import annotations

import logging

from nameko.rpc import rpc
from nameko.timer import timer

from services.common.consumers import subscribe
from services.common.errors import Unavailable
from services.common.outbox import Outbox
from services.common.rpc import UNAVAILABLE, TimedRpcProxy
from services.common.store import Domain
from services.mediation.mediation import INDEXES, Mediation

log = logging.getLogger(__name__)


class MediationService:
    name = "mediation"

    desk = Domain(Mediation, indexes=INDEXES, options=lambda settings: {"settings": settings})
    outbox = Outbox()
    intake = TimedRpcProxy("intake")

    @subscribe("organization_changed")
    def on_organization_changed(self, event: dict):
        self.desk.organization.keep(event)

    @timer(interval=1)
    def deliver(self):
        """One attempt for every referral due (also those that fell due while no instance
        ran); the outbox publishes what they came to when this worker ends."""
        attempts = self.desk.courier.deliver_due(self.outbox)
        if attempts:
            log.info("delivery attempts: %s", ", ".join(f"{a['key']} {a['outcome']}" for a in attempts if a["key"]))
        return len(attempts)

    # -- the registry (admin) --------------------------------------------------------------

    @rpc
    def put_organization(self, code: str, data: dict, actor: dict) -> dict:
        created, organization = self.desk.registry.put(code, data, actor)
        return {"created": created, "organization": organization}

    @rpc
    def organization(self, code: str) -> dict:
        return self.desk.registry.show(code)

    @rpc
    def organizations(self) -> list:
        return self.desk.registry.in_service()

    @rpc
    def retire_organization(self, code: str, actor: dict) -> dict:
        return self.desk.registry.retire(code, actor)

    # -- handlers' actions, judged on the complaint as intake holds it ----------------------

    @rpc
    def refer(self, complaint_no: str, data: dict, actor: dict) -> dict:
        return self.desk.referrals.refer(*self._complaint(complaint_no), data, actor, self.outbox)

    @rpc
    def raise_authority(self, complaint_no: str, data: dict, actor: dict) -> dict:
        return self.desk.referrals.raise_authority(*self._complaint(complaint_no), data, actor, self.outbox)

    @rpc
    def carried_out(self, complaint_no: str, data: dict, actor: dict) -> dict:
        return self.desk.referrals.carried_out(*self._complaint(complaint_no), data, actor, self.outbox)

    @rpc
    def referral(self, referral_id: str) -> dict:
        return self.desk.referrals.referral(referral_id)

    @rpc
    def approvals(self, actor: dict, pending: bool = True) -> list:
        """The approvals of mediators' authorities ``actor`` may decide (or also decided ones)."""
        return self.desk.referrals.approvals_for(actor, pending)

    @rpc
    def decide_approval(self, approval_id: str, decision: str, note: str, actor: dict) -> dict:
        """approve or refuse a pending approval; an approved referral or raise applies with it."""
        complaint, facts = self._complaint(self.desk.referrals.approvals.complaint_of(approval_id))
        return self.desk.referrals.decide_approval(approval_id, decision, note, actor, complaint, facts,
                                                   self.outbox)

    def _complaint(self, complaint_no: str) -> tuple[dict, dict]:
        """The complaint as intake shows it, and intake's facts of who is accountable for it
        (the system of record: a referral is made of it, and who may act judged on it)."""
        try:
            return self.intake.get(complaint_no, None), self.intake.access_facts(complaint_no)
        except UNAVAILABLE as exc:
            raise Unavailable(f"intake, which holds complaint {complaint_no}, did not answer") from exc

    # -- the organizations, signed ------------------------------------------------------------

    @rpc
    def callback(self, referral_id: str, body_b64: str, signed: str | None) -> dict:
        return self.desk.referrals.callback(referral_id, body_b64, signed, self.outbox)

    @rpc
    def referral_for_organization(self, referral_id: str, signed: str | None) -> dict:
        return self.desk.referrals.referral_for_organization(referral_id, signed)

    # -- operators ----------------------------------------------------------------------------

    @rpc
    def failed_deliveries(self, limit: int = 100) -> list:
        return self.desk.courier.failed(limit)

    @rpc
    def resend(self, referral_id: str, operator: str) -> dict:
        self.desk.courier.resend(referral_id, operator, self.outbox)
        return self.desk.referrals.referral(referral_id)

    @rpc
    def health(self) -> dict:
        return self.desk.health()
