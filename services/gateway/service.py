"""The HTTP edge: nameko ``http`` entrypoints that translate HTTP to RPC (CONTRACTS §3).

Run: ``python -m services.common.runner services.gateway.service``
(listens on ``GATEWAY_ADDRESS``, default 127.0.0.1:8000). Each method is one route of
``routes.ROUTES``; the work is in ``views``. Every handler action is served by
``views.act`` with the action's name.
"""
from __future__ import annotations

from services.common.rpc import TimedRpcProxy

from . import mediation, views
from .entrypoint import endpoint


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

    # -- handler actions (routes.ACTIONS) --------------------------------------------------

    @endpoint("complaint_accept")
    def complaint_accept(self, request, identity, complaint_no):
        return views.act(self, "accept", request, identity, complaint_no)

    @endpoint("complaint_transfer")
    def complaint_transfer(self, request, identity, complaint_no):
        return views.act(self, "transfer", request, identity, complaint_no)

    @endpoint("complaint_transfer_accept")
    def complaint_transfer_accept(self, request, identity, complaint_no):
        return views.act(self, "transfer_accept", request, identity, complaint_no)

    @endpoint("complaint_transfer_reject")
    def complaint_transfer_reject(self, request, identity, complaint_no):
        return views.act(self, "transfer_reject", request, identity, complaint_no)

    @endpoint("complaint_escalate")
    def complaint_escalate(self, request, identity, complaint_no):
        return views.act(self, "escalate", request, identity, complaint_no)

    @endpoint("complaint_misconduct")
    def complaint_misconduct(self, request, identity, complaint_no):
        return views.act(self, "misconduct", request, identity, complaint_no)

    @endpoint("complaint_extend")
    def complaint_extend(self, request, identity, complaint_no):
        return views.act(self, "extend", request, identity, complaint_no)

    @endpoint("complaint_pause")
    def complaint_pause(self, request, identity, complaint_no):
        return views.act(self, "pause", request, identity, complaint_no)

    @endpoint("complaint_resume")
    def complaint_resume(self, request, identity, complaint_no):
        return views.act(self, "resume", request, identity, complaint_no)

    @endpoint("complaint_decision")
    def complaint_decision(self, request, identity, complaint_no):
        return views.act(self, "decision", request, identity, complaint_no)

    @endpoint("complaint_close")
    def complaint_close(self, request, identity, complaint_no):
        return views.act(self, "close", request, identity, complaint_no)

    @endpoint("complaint_reopen")
    def complaint_reopen(self, request, identity, complaint_no):
        return views.act(self, "reopen", request, identity, complaint_no)

    @endpoint("complaint_withdraw")
    def complaint_withdraw(self, request, identity, complaint_no):
        return views.act(self, "withdraw", request, identity, complaint_no)

    # -- approvals ---------------------------------------------------------------------------

    @endpoint("list_approvals")
    def list_approvals(self, request, identity):
        return views.list_approvals(self, request, identity)

    @endpoint("approve_approval")
    def approve_approval(self, request, identity, approval_id):
        return views.decide_approval(self, request, identity, approval_id, "approve")

    @endpoint("refuse_approval")
    def refuse_approval(self, request, identity, approval_id):
        return views.decide_approval(self, request, identity, approval_id, "refuse")

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
