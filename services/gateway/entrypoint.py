"""nameko's ``http`` entrypoint, shaped for the contract.

``endpoint(<route name>)`` declares a service method as the handler of a route of
``routes.ROUTES``: method and URL come from the table, the bearer token is verified and the
route's roles checked before a worker is spawned, the method gets ``(request, identity,
**path_values)`` and returns a ``Response``, a JSON-able payload, or ``(status, payload)``
/ ``(status, headers, payload)``. Every error, including Werkzeug's 404 for an unknown URL
and 405 for a wrong method (which nameko's own WsgiApp answers in HTML), has the shape
``{"error": {"code", "message", "details"}}``.

All of the gateway's routes must use ``endpoint``: they share ``GatewayWebServer``; a plain
nameko ``http`` entrypoint would start a second server on the same address.
"""
from __future__ import annotations

from functools import partial

from eventlet.event import Event
from nameko.web.handlers import HttpRequestHandler
from nameko.web.server import WebServer, WsgiApp
from werkzeug.exceptions import HTTPException
from werkzeug.wrappers import Request, Response

from services.common.config import from_container

from .auth import authenticate, authorize
from .errors import EXPECTED, PayloadTooLarge, json_response, response_for_exception
from .routes import BY_NAME

# A complaint's description is at most 20,000 characters; a megabyte is plenty.
MAX_BODY_BYTES = 1024 * 1024


class GatewayWsgiApp(WsgiApp):
    def __call__(self, environ, start_response):
        request = Request(environ, shallow=True)
        adapter = self.url_map.bind_to_environ(environ)
        try:
            provider, values = adapter.match()
            request.path_values = values
            response = provider.handle_request(request)
        except HTTPException as exc:
            # Redirects (a trailing slash) pass; errors take the contract's shape.
            response = exc if exc.code is not None and exc.code < 400 else (
                response_for_exception(exc))
        except Exception as exc:  # noqa: BLE001 - the last line of defence, logged there
            response = response_for_exception(exc)
        return response(environ, start_response)


class GatewayWebServer(WebServer):
    def get_wsgi_app(self):
        return GatewayWsgiApp(self)


class Endpoint(HttpRequestHandler):
    server = GatewayWebServer()

    def __init__(self, route_name: str, **kwargs):
        self.route = BY_NAME[route_name]
        kwargs.setdefault("expected_exceptions", EXPECTED)
        super().__init__(self.route.method, self.route.rule, **kwargs)

    def setup(self):
        super().setup()
        self.jwt_secret = from_container(self.container.config).jwt_secret

    def handle_request(self, request):
        request.shallow = False
        try:
            if request.content_length and request.content_length > MAX_BODY_BYTES:
                raise PayloadTooLarge(f"The body is larger than {MAX_BODY_BYTES} bytes.")
            identity = None
            if self.route.roles is not None and not self.signed_instead(request):
                identity = authenticate(request.headers, self.jwt_secret)
                authorize(identity, self.route.roles)
            context_data = self.server.context_data_from_headers(request)
            args = (request, identity)
            kwargs = request.path_values
            self.check_signature(args, kwargs)
            event = Event()
            self.container.spawn_worker(
                self, args, kwargs, context_data=context_data,
                handle_result=partial(self.handle_result, event))
            result = event.wait()
            return self.response_from_result(result)
        except Exception as exc:  # noqa: BLE001 - every failure gets the error shape
            return self.response_from_exception(exc)

    def signed_instead(self, request) -> bool:
        """A mediation organization calls a signed route without a token; its signature is
        the mediation service's to verify."""
        return self.route.signed and "Authorization" not in request.headers

    def response_from_result(self, result):
        if isinstance(result, Response):
            return result
        headers = None
        status = 200
        payload = result
        if isinstance(result, tuple):
            if len(result) == 3:
                status, headers, payload = result
            else:
                status, payload = result
        return json_response(payload, status=status, headers=headers)

    def response_from_exception(self, exc):
        return response_for_exception(exc)


endpoint = Endpoint.decorator
