"""The HTTP edge: nameko ``http`` entrypoints that translate HTTP to RPC (CONTRACTS §3).

Run: ``python -m services.common.runner services.gateway.service``
(listens on ``GATEWAY_ADDRESS``, default 127.0.0.1:8000). Each method is one route of
``routes.ROUTES``; the work is in ``views``. The handler actions' methods are made from
``routes.ACTION_ROUTES``, one per action, all served by ``views.act``.
"""
from __future__ import annotations

from . import mediation, views
from .entrypoint import endpoint
from .routes import ACTION_ROUTES, Route
from .rpc import TimedRpcProxy


class GatewayService:
    name = "gateway"

    intake = TimedRpcProxy("intake")
    routing = TimedRpcProxy("routing")
    sla = TimedRpcProxy("sla")
    mediation = TimedRpcProxy("mediation")

    @endpoint("health")
    def health(self, request, identity):
        return views.health(self, request)

    @endpoint("openapi")
    def openapi(self, request, identity):
        return views.openapi()

    @endpoint("submit_complaint")
    def submit_complaint(self, request, identity):
        return views.submit_complaint(self, request, identity)

    @endpoint("list_complaints")
    def list_complaints(self, request, identity):
        return views.list_complaints(self, request, identity)

    @endpoint("get_complaint")
    def get_complaint(self, request, identity, complaint_no):
        return views.get_complaint(self, identity, complaint_no)

    @endpoint("org_units")
    def org_units(self, request, identity):
        return views.org_units(self, identity)

    @endpoint("complaint_clocks")
    def complaint_clocks(self, request, identity, complaint_no):
        return views.complaint_clocks(self, identity, complaint_no)


    # -- mediation (CONTRACTS §4) ------------------------------------------------------------

    @endpoint("put_mediation_organization")
    def put_mediation_organization(self, request, identity, code):
        return mediation.put_organization(self, request, identity, code)

    @endpoint("list_mediation_organizations")
    def list_mediation_organizations(self, request, identity):
        return mediation.list_organizations(self)

    @endpoint("get_mediation_organization")
    def get_mediation_organization(self, request, identity, code):
        return mediation.get_organization(self, code)

    @endpoint("retire_mediation_organization")
    def retire_mediation_organization(self, request, identity, code):
        return mediation.retire_organization(self, identity, code)

    @endpoint("refer_complaint")
    def refer_complaint(self, request, identity, complaint_no):
        return mediation.refer(self, request, identity, complaint_no)

    @endpoint("raise_mediation_authority")
    def raise_mediation_authority(self, request, identity, complaint_no):
        return mediation.raise_authority(self, request, identity, complaint_no)

    @endpoint("record_agreement_carried_out")
    def record_agreement_carried_out(self, request, identity, complaint_no):
        return mediation.carried_out(self, request, identity, complaint_no)

    @endpoint("get_mediation_referral")
    def get_mediation_referral(self, request, identity, referral_id):
        return mediation.get_referral(self, request, identity, referral_id)

    @endpoint("mediation_callback")
    def mediation_callback(self, request, identity, referral_id):
        return mediation.callback(self, request, referral_id)


def _action_method(route: Route):
    def method(self, request, identity, complaint_no):
        return views.act(self, route, request, identity, complaint_no)

    method.__name__ = route.name
    method.__qualname__ = f"GatewayService.{route.name}"
    return endpoint(route.name)(method)


for _route in ACTION_ROUTES:
    setattr(GatewayService, _route.name, _action_method(_route))
