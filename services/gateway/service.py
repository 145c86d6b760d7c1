"""The HTTP edge: nameko ``http`` entrypoints that translate HTTP to RPC (CONTRACTS §3).

Run: ``python -m services.common.runner services.gateway.service``
(listens on ``GATEWAY_ADDRESS``, default 127.0.0.1:8000). Each method is one route of
``routes.ROUTES``; the work is in ``views``. The handler actions' methods are made from
``routes.ACTION_ROUTES``, one per action, all served by ``views.act``.
"""
from __future__ import annotations

from . import views
from .entrypoint import endpoint
from .routes import ACTION_ROUTES, Route
from .rpc import TimedRpcProxy


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


def _action_method(route: Route):
    def method(self, request, identity, complaint_no):
        return views.act(self, route, request, identity, complaint_no)

    method.__name__ = route.name
    method.__qualname__ = f"GatewayService.{route.name}"
    return endpoint(route.name)(method)


for _route in ACTION_ROUTES:
    setattr(GatewayService, _route.name, _action_method(_route))
