"""Mediation's entrypoints: RPC for the HTTP edge and operators, the delivery timer, and
routing's announcement of the organization's tree (the units' regions). Everything else is in ``mediation``."""
from __future__ import annotations

import logging

from nameko.rpc import rpc
from nameko.timer import timer

from services.common.consumers import subscribe
from services.common.outbox import Outbox
from services.common.store import Domain
from services.mediation.mediation import INDEXES, Mediation

log = logging.getLogger(__name__)


class MediationService:
    name = "mediation"

    desk = Domain(Mediation, indexes=INDEXES, options=lambda settings: {"settings": settings})
    outbox = Outbox()

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

    # -- handlers' actions, with the complaint as intake shows it to the caller --------------

    @rpc
    def refer(self, complaint: dict, data: dict, actor: dict) -> dict:
        return self.desk.referrals.refer(complaint, data, actor, self.outbox)

    @rpc
    def raise_authority(self, complaint: dict, data: dict, actor: dict) -> dict:
        return self.desk.referrals.raise_authority(complaint, data, actor, self.outbox)

    @rpc
    def carried_out(self, complaint: dict, data: dict, actor: dict) -> dict:
        return self.desk.referrals.carried_out(complaint, data, actor, self.outbox)

    @rpc
    def referral(self, referral_id: str) -> dict:
        return self.desk.referrals.referral(referral_id)

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
