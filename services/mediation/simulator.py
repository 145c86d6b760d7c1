"""A mediation organization, simulated over real HTTP (CONTRACTS §4), for the tests and the demo.

    python -m services.mediation.simulator [--listen 127.0.0.1:8100] [--platform http://127.0.0.1:8000]
        [--organizations services/mediation/data/organizations.yaml] [--organization CODE=SECRET ...]
        [--plan accepted,hearing_scheduled,agreement_reached] [--pace 5]
        [--fail-first N] [--fail-status 500] [--slow SECONDS] [--refuse STATUS]

Each organization is served at ``/<CODE>`` (register its url as ``http://<listen>/<CODE>``).
As a real mediator would, it verifies the platform's signature with its secret (401 when it
is missing, stale or wrong) and takes a redelivery (the same ``Idempotency-Key``) as the
case it already has. It can answer slowly (``slow``), answer 5xx for a while
(``fail_first``), refuse every delivery (``refuse``), and, after taking a referral, report
back with signed callbacks, one every ``pace`` seconds (``plan``: accept, decline, hold a
hearing, agree, fail, withdraw).

Its control API, for tests and the demo:

    GET  /_control/received                what each organization received, oldest first
    GET  /_control/callbacks               the callbacks it sent and the platform's answers
    POST /_control/<CODE>                  change its behaviour: {"fail_first", "fail_status",
                                           "slow", "refuse", "plan", "pace"}
    POST /_control/<CODE>/callback         {"referral_id", "status", "details", "event_id"}:
                                           send a signed callback; answers the platform's answer
"""
from __future__ import annotations

import argparse
import json
import logging
import threading
import time
import uuid
from dataclasses import asdict, dataclass, field
from datetime import date, timedelta
from pathlib import Path

import requests
import yaml
from werkzeug.serving import make_server
from werkzeug.wrappers import Request, Response

from services.common import timeutil
from services.mediation import signature

log = logging.getLogger("mediator")

DEFAULT_ORGANIZATIONS = Path(__file__).parent / "data" / "organizations.yaml"
CALLBACK_PATH = "/api/v1/mediation/referrals/{referral_id}/events"
REFERRAL_PATH = "/api/v1/mediation/referrals/{referral_id}"
AGREED_DAYS = 15  # the simulator's agreements are carried out within this many days


@dataclass
class Behaviour:
    fail_first: int = 0  # answer ``fail_status`` to the next N deliveries
    fail_status: int = 500
    slow: float = 0.0  # seconds before answering
    refuse: int | None = None  # answer this 4xx to every delivery
    plan: list[str] = field(default_factory=list)  # callbacks sent after taking a referral
    pace: float = 1.0  # seconds between them


@dataclass
class Received:
    organization: str
    idempotency_key: str | None
    body: dict | None
    verified: bool
    answered: int
    at: str


class Mediator:
    def __init__(self, organizations: dict[str, str], platform: str, behaviour: Behaviour | None = None):
        self.secrets = dict(organizations)
        self.platform = platform.rstrip("/")
        self.behaviours = {code: Behaviour(**asdict(behaviour or Behaviour())) for code in organizations}
        self.received: list[Received] = []
        self.cases: dict[str, dict] = {}  # Idempotency-Key -> the body first taken under it
        self.callbacks: list[dict] = []  # what the platform answered to each callback sent
        self._lock = threading.Lock()
        self._server = None
        self._thread = None

    # -- serving -----------------------------------------------------------------------------

    def start(self, host: str = "127.0.0.1", port: int = 0) -> str:
        """Serve in a thread; the base URL."""
        self._server = make_server(host, port, self.wsgi, threaded=True)
        self._thread = threading.Thread(target=self._server.serve_forever, name="mediator", daemon=True)
        self._thread.start()
        return f"http://{host}:{self._server.server_port}"

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()

    def url(self, base: str, code: str) -> str:
        return f"{base}/{code}"

    def wsgi(self, environ, start_response):
        request = Request(environ)
        parts = [part for part in request.path.split("/") if part]
        if parts[:1] == ["_control"]:
            response = self._control(request, parts[1:])
        elif len(parts) == 1 and parts[0] in self.secrets and request.method == "POST":
            response = self._deliver(parts[0], request)
        else:
            response = _json({"error": "not found"}, 404)
        return response(environ, start_response)

    def _deliver(self, code: str, request: Request) -> Response:
        raw = request.get_data()
        key = request.headers.get("Idempotency-Key")
        behaviour = self.behaviours[code]
        try:
            signature.verify(request.headers.get(signature.HEADER), raw, self.secrets[code])
            verified = True
        except signature.BadSignature as exc:
            verified, refusal = False, str(exc)
        try:
            body = json.loads(raw)
        except ValueError:
            body = None
        if behaviour.slow:
            time.sleep(behaviour.slow)
        with self._lock:
            if not verified:
                status, answer = 401, {"error": f"signature refused: {refusal}"}
            elif behaviour.refuse:
                status, answer = behaviour.refuse, {"error": "refused"}
            elif behaviour.fail_first > 0:
                behaviour.fail_first -= 1
                status, answer = behaviour.fail_status, {"error": "temporarily unavailable"}
            elif key in self.cases:
                status, answer = 200, {"received": key, "duplicate": True}
            elif body is None or not key:
                status, answer = 400, {"error": "a JSON body and an Idempotency-Key are required"}
            else:
                self.cases[key] = body
                status, answer = 202, {"received": key}
            self.received.append(Received(code, key, body, verified, status, timeutil.iso(timeutil.now())))
        log.info("%s: %s %s -> %s", code, key, (body or {}).get("schema"), status)
        if status == 202 and behaviour.plan and (body or {}).get("schema") == "mediation.referral/1":
            threading.Thread(target=self._follow_plan, args=(code, body, list(behaviour.plan), behaviour.pace),
                             daemon=True).start()
        return _json(answer, status)

    def _control(self, request: Request, parts: list[str]) -> Response:
        if parts == ["received"] and request.method == "GET":
            return _json([asdict(item) for item in self.received])
        if parts == ["callbacks"] and request.method == "GET":
            return _json(self.callbacks)
        if not parts or parts[0] not in self.secrets or request.method != "POST":
            return _json({"error": "not found"}, 404)
        data = request.get_json(silent=True) or {}
        if parts[1:] == ["callback"]:
            status, answer = self.send_callback(parts[0], data["referral_id"], data["status"],
                                                details=data.get("details"), event_id=data.get("event_id"))
            return _json({"platform_status": status, "platform_answer": answer})
        self.behave(parts[0], **data)
        return _json(asdict(self.behaviours[parts[0]]))

    def behave(self, code: str, **changes) -> Behaviour:
        with self._lock:
            for key, value in changes.items():
                if not hasattr(self.behaviours[code], key):
                    raise ValueError(f"no behaviour {key!r}")
                setattr(self.behaviours[code], key, value)
            return self.behaviours[code]

    # -- what it received ----------------------------------------------------------------------

    def taken(self, code: str | None = None, schema: str | None = None) -> list[Received]:
        """The deliveries it took as new cases (answered 202), oldest first."""
        with self._lock:
            return [r for r in self.received if r.answered == 202 and code in (None, r.organization)
                    and schema in (None, (r.body or {}).get("schema"))]

    # -- reporting back --------------------------------------------------------------------------

    def send_callback(self, code: str, referral_id: str, status: str, details: dict | None = None,
                      event_id: str | None = None, occurred_at: str | None = None, secret: str | None = None,
                      signed_at: float | None = None, raw: bytes | None = None) -> tuple[int, dict]:
        """Post a callback signed with the organization's secret (or ``secret``, as a forger
        would), at ``signed_at`` (default now); the platform's status and answer."""
        if raw is None:
            raw = json.dumps({"event_id": event_id or uuid.uuid4().hex, "status": status,
                              "occurred_at": occurred_at or timeutil.iso(timeutil.now()),
                              "details": details or {}}, ensure_ascii=False).encode("utf-8")
        header = signature.sign(secret or self.secrets[code], raw, now=signed_at)
        response = requests.post(self.platform + CALLBACK_PATH.format(referral_id=referral_id), data=raw,
                                 headers={"Content-Type": "application/json", signature.HEADER: header}, timeout=30)
        answer = _body(response)
        with self._lock:
            self.callbacks.append({"referral_id": referral_id, "status": status, "answered": response.status_code})
        log.info("%s: callback %s %s -> %s", code, referral_id, status, response.status_code)
        return response.status_code, answer

    def fetch(self, code: str, referral_id: str) -> tuple[int, dict]:
        """``GET`` a referral again, signed over ``"<t>."`` and the empty body."""
        response = requests.get(self.platform + REFERRAL_PATH.format(referral_id=referral_id),
                                headers={signature.HEADER: signature.sign(self.secrets[code], b"")}, timeout=30)
        return response.status_code, _body(response)

    def _follow_plan(self, code: str, referral: dict, plan: list[str], pace: float) -> None:
        for status in plan:
            time.sleep(pace)
            details = agreement(referral) if status == "agreement_reached" else {}
            try:
                answered, _ = self.send_callback(code, referral["referral_id"], status, details=details)
            except requests.RequestException as exc:
                log.warning("%s: callback %s could not be sent: %s", code, status, exc)
                return
            if answered != 200:
                return


def agreement(referral: dict, today: date | None = None) -> dict:
    """Terms the simulator agrees to: the customer's demand within the authority granted."""
    today = today or timeutil.now().date()
    authority = referral.get("authority") or {}
    amount = authority.get("max_settlement_amount")
    if referral.get("amount_in_dispute") and amount:
        amount = min(referral["amount_in_dispute"], amount, key=float)
    return {"terms": f"机构向客户支付{amount or '0.00'}元，双方纠纷了结", "amount": amount,
            "currency": authority.get("currency") or referral.get("currency"),
            "signed_on": today.isoformat(), "carry_out_by": (today + timedelta(days=AGREED_DAYS)).isoformat()}


def _json(payload, status: int = 200) -> Response:
    return Response(json.dumps(payload, ensure_ascii=False), status=status, mimetype="application/json")


def _body(response) -> dict:
    try:
        return response.json()
    except ValueError:
        return {"text": response.text}


def organizations_from(path: Path | None, pairs: list[str]) -> dict[str, str]:
    secrets = {}
    if path is not None:
        with open(path, encoding="utf-8") as handle:
            secrets.update({item["code"]: item["secret"] for item in yaml.safe_load(handle)["organizations"]})
    for pair in pairs:
        code, _, secret = pair.partition("=")
        if not secret:
            raise SystemExit(f"--organization takes CODE=SECRET, not {pair!r}")
        secrets[code] = secret
    return secrets


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m services.mediation.simulator",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("--listen", default="127.0.0.1:8100", help="host:port to serve on")
    parser.add_argument("--platform", default="http://127.0.0.1:8000", help="the platform's HTTP edge")
    parser.add_argument("--organizations", type=Path, default=DEFAULT_ORGANIZATIONS,
                        help="a YAML file of organizations (codes and secrets)")
    parser.add_argument("--organization", action="append", default=[], metavar="CODE=SECRET")
    parser.add_argument("--plan", default="", help="callbacks after a referral, e.g. accepted,agreement_reached")
    parser.add_argument("--pace", type=float, default=5.0, help="seconds between the plan's callbacks")
    parser.add_argument("--fail-first", type=int, default=0, help="answer --fail-status to the next N deliveries")
    parser.add_argument("--fail-status", type=int, default=500)
    parser.add_argument("--slow", type=float, default=0.0, help="seconds before answering a delivery")
    parser.add_argument("--refuse", type=int, default=None, help="answer this status to every delivery")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    behaviour = Behaviour(fail_first=args.fail_first, fail_status=args.fail_status, slow=args.slow,
                          refuse=args.refuse, plan=[s for s in args.plan.split(",") if s], pace=args.pace)
    mediator = Mediator(organizations_from(args.organizations, args.organization), args.platform, behaviour)
    host, _, port = args.listen.rpartition(":")
    base = mediator.start(host or "127.0.0.1", int(port))
    for code in mediator.secrets:
        log.info("%s at %s", code, mediator.url(base, code))
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        pass
    finally:
        mediator.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
