"""The HTTP edge: nameko ``http`` entrypoints that translate HTTP to RPC (CONTRACTS §3).

Run: ``python -m services.common.runner services.gateway.service``
(listens on ``GATEWAY_ADDRESS``, default 127.0.0.1:8000). Each method is one route of
``routes.ROUTES``; the work is in ``views``. Every handler action is served by
``views.act`` with the action's name.
"""
from __future__ import annotations

from services.common.rpc import TimedRpcProxy

from . import views
from .entrypoint import endpoint


class GatewayService:
    name = "gateway"

    intake = TimedRpcProxy("intake")
    routing = TimedRpcProxy("routing")
    sla = TimedRpcProxy("sla")

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
