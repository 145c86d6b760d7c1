"""Routing's entrypoints: the events it follows, RPC for the HTTP edge, the admin reload."""
from __future__ import annotations

from nameko.rpc import rpc

from services.common.consumers import subscribe
from services.common.outbox import Outbox
from services.common.store import Domain
from services.routing.routing import INDEXES, Routing


class RoutingService:
    name = "routing"

    router = Domain(Routing, indexes=INDEXES)
    outbox = Outbox()

    @subscribe("complaint_received")
    def on_received(self, event: dict):
        self.router.route(event, self.outbox)

    @subscribe("complaint_reopened")
    def on_reopened(self, event: dict):
        self.router.reopened(event, self.outbox)

    @subscribe("sla_breached")
    def on_breached(self, event: dict):
        self.router.breached(event, self.outbox)

    @subscribe("mass_complaint_detected")
    def on_mass_complaint(self, event: dict):
        self.router.mass_complaint(event, self.outbox)

    @rpc
    def visible_units(self, unit: str) -> list:
        """The unit and every unit below it; NotFound for a unit not in the organization."""
        return self.router.visible_units(unit)

    @rpc
    def org_units(self, visible_root: str | None = None) -> list:
        """CONTRACTS §3 `GET /api/v1/org/units`: one tree per institution, or `visible_root`'s."""
        return self.router.org_units(visible_root)

    @rpc
    def act(self, complaint_no: str, action: str, data: dict, actor: dict):
        """accept, transfer, transfer_accept, transfer_reject, escalate, misconduct."""
        return self.router.act(complaint_no, action, data, actor, self.outbox)

    @rpc
    def assignment(self, complaint_no: str, visible_units: list | None = None) -> dict:
        return self.router.get(complaint_no, visible_units)

    @rpc
    def reload(self, organization: str | None = None, rules: str | None = None,
               organization_text: str | None = None, rules_text: str | None = None) -> dict:
        """Admin: validate and put in force new organization and/or rules, on every instance."""
        return self.router.reload(self.outbox, organization, rules, organization_text, rules_text)

    @rpc
    def health(self) -> dict:
        return self.router.health()
