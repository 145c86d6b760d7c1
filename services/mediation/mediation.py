"""Mediation's domain over its database: the registry of organizations, referrals and their
follow-up, and the durable delivery of what the organizations must receive.

Driven by ``service.py`` (RPC, the delivery timer, routing's announcements) and directly by
tests with an injected clock and sender; it never touches the broker: every event is staged
in the outbox within the transaction of the change it announces.

Storage (database ``<DB_PREFIX>_mediation``):

- ``organizations``: ``{_id: code, name, regions, url, secret, contact, retired_at, ...}``.
  A retired organization takes no new referral; its open referrals keep going.
- ``referrals``: one per referral, ``_id`` its id ``<complaint_no>-M<n>``. It holds the
  request (reason, negotiation, consent, authority), the status and the callbacks applied,
  and ``messages``: what the organization must receive, in order (the referral, then each
  raise of the authority), each with its delivery state and attempts. ``next_attempt_at``
  (indexed) is when the first undelivered message is due; ``lease`` names the attempt in
  flight. Every change is conditional on ``version``.
- ``callbacks``: one per callback applied, ``_id`` ``<referral_id>/<event_id>``: the same
  event applied once.
- ``units``: the region of every unit, as routing last announced it.

Delivery (``deliver_due``): one indexed range query on ``next_attempt_at`` finds what is
due; each referral is claimed by a conditional update that moves ``next_attempt_at`` a lease
ahead, so of several instances exactly one sends it, and a process killed mid-attempt
leaves it due again when the lease runs out. The answer is recorded in one transaction with
its event; a retry is scheduled with backoff and jitter; a refusal (4xx but 408/429) or the
end of the retry period is final and waits for an operator (``failed``, ``resend``).
"""
from __future__ import annotations

import base64
import binascii
import json
import logging
import random
import uuid
from collections.abc import Callable
from contextlib import suppress
from datetime import date, datetime, timedelta
from decimal import Decimal

import eventlet
import yaml
from marshmallow import Schema, ValidationError
from pymongo import ASCENDING, IndexModel
from pymongo.errors import DuplicateKeyError

from services.common import events, inbox, timeutil
from services.common.config import Settings
from services.common.errors import Conflict, Invalid, NotFound, SignatureRefused
from services.common.outbox import event_message
from services.common.store import in_transaction
from services.mediation import access, delivery, regions, signature
from services.mediation.referral import (
    DELIVERED,
    REFUSED,
    Backoff,
    authority_body,
    authority_key,
    judge,
    referral_body,
    referral_key,
    statuses,
)
from services.mediation.schemas import (
    ORGANIZATION_CODE,
    AgreementSchema,
    CallbackSchema,
    CarriedOutSchema,
    OrganizationSchema,
    RaiseSchema,
    ReferSchema,
)

log = logging.getLogger(__name__)

PRODUCER = "mediation"
ORGANIZATIONS = "organizations"
REFERRALS = "referrals"
CALLBACKS = "callbacks"
UNITS = "units"
REGIONS_DOC = "regions"
# An attempt in flight holds its referral at least this long (and three timeouts); a process
# killed mid-attempt leaves it due again after it. Longer than any attempt may take.
LEASE = timedelta(seconds=60)
# The attempts kept on each message for the operator (the count is kept whole).
ATTEMPTS_SHOWN = 20
PENDING, MESSAGE_DELIVERED, FAILED = "pending", "delivered", "failed"

INDEXES = {
    ORGANIZATIONS: [IndexModel([("regions", ASCENDING)]), IndexModel([("retired_at", ASCENDING)])],
    REFERRALS: [
        IndexModel([("next_attempt_at", ASCENDING)], name="due"),
        IndexModel([("complaint_no", ASCENDING)], name="by_complaint"),
        IndexModel([("delivery", ASCENDING)], name="by_delivery"),
    ],
    CALLBACKS: [],
    UNITS: [],
    **inbox.INDEXES,
}

Sender = Callable[[str, bytes, dict, float], delivery.Answer]


def _load(schema: Schema, data, prefix: str = "") -> dict:
    """The data loaded by ``schema``, or Invalid mapping field paths to messages."""
    if not isinstance(data, dict):
        raise Invalid("the body must be a JSON object", {prefix or "_schema": ["must be a JSON object"]})
    try:
        return schema.load(data)
    except ValidationError as exc:
        raise Invalid("the request is invalid", _paths(exc.messages, prefix)) from None


def _paths(messages, prefix: str = "") -> dict:
    flat: dict = {}

    def walk(path, value):
        if isinstance(value, dict):
            for key, inner in value.items():
                walk(f"{path}.{key}" if path else str(key), inner)
        else:
            flat.setdefault(path or "_schema", []).extend(value if isinstance(value, list) else [value])

    walk(prefix, messages)
    return flat


def _json(body: dict) -> str:
    return json.dumps(body, ensure_ascii=False, separators=(",", ":"))


def _iso(moment):
    return timeutil.iso(moment) if isinstance(moment, datetime) else moment


def _timed(value):
    """Stored times as ISO text, recursively (for RPC answers)."""
    if isinstance(value, dict):
        return {key: _timed(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_timed(item) for item in value]
    return _iso(value)


class Mediation:
    def __init__(self, db, settings: Settings | None = None, *, now: Callable[[], datetime] = timeutil.now,
                 send: Sender = delivery.post, rng: random.Random | None = None):
        settings = settings or Settings()
        self.db = db
        self.organizations = db[ORGANIZATIONS]
        self.referrals = db[REFERRALS]
        self.callbacks = db[CALLBACKS]
        self.units = db[UNITS]
        self.statuses = statuses()
        self.backoff = Backoff(settings.mediation_retry_base, settings.mediation_retry_cap,
                               settings.mediation_retry_for)
        self.timeout = settings.mediation_timeout
        self.lease = max(LEASE, timedelta(seconds=3 * self.timeout))
        self.now = now
        self.send = send
        self.rng = rng or random.Random()
        if settings.mediation_organizations:
            self.load_organizations(settings.mediation_organizations)

    # -- the registry (CONTRACTS §4) --------------------------------------------------------

    def put_organization(self, code: str, data: dict) -> tuple[bool, dict]:
        """Register or change an organization; (created, the organization as shown)."""
        if not isinstance(code, str) or ORGANIZATION_CODE.regex.match(code) is None:
            raise Invalid("the organization's code is invalid", {"code": [ORGANIZATION_CODE.error]})
        fields = _load(OrganizationSchema(), data)
        now = self.now()
        existing = self.organizations.find_one({"_id": code})
        changes = {**fields, "regions": sorted(set(fields["regions"])), "updated_at": now, "retired_at": None}
        if existing is None or existing.get("secret") != fields["secret"]:
            changes["secret_set_at"] = now
        if existing is None:
            try:
                self.organizations.insert_one({"_id": code, "created_at": now, "version": 1, **changes})
                return True, self.organization(code)
            except DuplicateKeyError:
                pass  # registered meanwhile by another call: this one changes it
        self.organizations.update_one({"_id": code}, {"$set": changes, "$inc": {"version": 1}})
        return False, self.organization(code)

    def organization(self, code: str) -> dict:
        doc = self.organizations.find_one({"_id": code})
        if doc is None:
            raise NotFound(f"no mediation organization {code!r}")
        return self._organization_view(doc)

    def organization_list(self) -> list[dict]:
        """The organizations in service (retired ones are shown one by one, by code)."""
        docs = self.organizations.find({"retired_at": None}).sort("_id", ASCENDING)
        return [self._organization_view(doc) for doc in docs]

    def retire_organization(self, code: str) -> dict:
        """No new referral goes to it; its open referrals keep going (deliveries, callbacks)."""
        self.organizations.update_one({"_id": code, "retired_at": None},
                                      {"$set": {"retired_at": self.now()}, "$inc": {"version": 1}})
        return self.organization(code)

    @staticmethod
    def _organization_view(doc: dict) -> dict:
        """Never the secret: when it was set is enough to tell it changed."""
        shown = ("name", "regions", "url", "contact", "created_at", "updated_at", "secret_set_at", "retired_at")
        return _timed({"code": doc["_id"], **{key: doc.get(key) for key in shown}})

    def load_organizations(self, path: str) -> list[str]:
        """Register the organizations of a YAML file that are not registered yet (the local
        samples); one registered already is left as an operator may have changed it."""
        with open(path, encoding="utf-8") as handle:
            listed = yaml.safe_load(handle)["organizations"]
        added = []
        for item in listed:
            item = dict(item)
            code = item.pop("code")
            if self.organizations.find_one({"_id": code}, {"_id": 1}) is None:
                with suppress(DuplicateKeyError):  # another instance loads the same file
                    created, _ = self.put_organization(code, item)
                    if created:
                        added.append(code)
        if added:
            log.info("registered mediation organizations %s from %s", ", ".join(added), path)
        return added

    # -- regions of the units (routing's announcement) ----------------------------------------

    def organization_changed(self, event: dict) -> None:
        """Keep the units' regions routing announced, unless a newer announcement is kept."""
        occurred = timeutil.parse(event["occurred_at"])
        kept = self.units.find_one({"_id": REGIONS_DOC}, {"occurred_at": 1})
        if kept is not None and timeutil.local(kept["occurred_at"]) > occurred:
            return
        self.units.replace_one({"_id": REGIONS_DOC},
                               {"regions": event["body"].get("regions") or {}, "occurred_at": occurred},
                               upsert=True)

    def region_of(self, unit: str) -> str | None:
        doc = self.units.find_one({"_id": REGIONS_DOC}, {f"regions.{unit}": 1})
        return ((doc or {}).get("regions") or {}).get(unit) or None

    def _organization_for(self, region: str | None, named: str | None) -> dict:
        if named is not None:
            doc = self.organizations.find_one({"_id": named})
            if doc is None or doc.get("retired_at") is not None:
                raise Invalid(f"no mediation organization {named!r} in service",
                              {"organization": ["is not a registered organization in service"]})
            if region is not None and not any(regions.covers(r, region) for r in doc["regions"]):
                raise Invalid(f"{named} does not cover region {region}",
                              {"organization": [f"does not cover region {region} of the handling unit"]})
            return doc
        if region is None:
            raise Conflict("the handling unit's region is not known: name the organization",
                           {"organization": ["is required: the handling unit has no region on record"]})
        candidates = [dict(doc, code=doc["_id"]) for doc in self.organizations.find(
            {"regions": {"$in": regions.ancestors(region)}, "retired_at": None})]
        chosen = regions.covering(region, candidates)
        if chosen is None:
            raise Conflict(f"no mediation organization covers region {region}",
                           {"region": [f"no registered organization covers {region}"]})
        return chosen

    # -- referral -------------------------------------------------------------------------------

    def _referable(self, complaint: dict) -> None:
        """Conflict unless the complaint's lifecycle allows a referral and it is decided
        against the customer (in part or whole) or still being handled."""
        status = complaint["status"]
        if "mediation" not in (complaint.get("allowed_actions") or []):
            raise Conflict(f"a complaint that is {status.replace('_', ' ')} cannot be referred to mediation",
                           {"status": [status]})
        if status == "decided":
            decided = [e for e in complaint.get("history", []) if e.get("type") == "complaint_decided"]
            if decided and (decided[-1].get("details") or {}).get("outcome") == "upheld":
                raise Conflict("the decision upheld the complaint: nothing is left in dispute",
                               {"status": [status], "outcome": ["upheld"]})

    def refer(self, complaint: dict, data: dict, actor: dict, outbox) -> dict:
        """``POST /api/v1/complaints/{no}/mediation`` with ``complaint`` as intake shows it
        to the caller. ``{"referral_id", "organization", "status"}``."""
        request = _load(ReferSchema(), data)
        access.may("refer", actor, complaint)
        self._referable(complaint)
        authority = access.approve_authority(actor, request["authority"])
        region = self.region_of(complaint["unit"])
        organization = self._organization_for(region, request.get("organization"))
        complaint_no = complaint["complaint_no"]
        negotiation = [dict(entry, at=timeutil.iso(entry["at"])) for entry in request["negotiation"]]
        consent = dict(request["consent"], at=timeutil.iso(request["consent"]["at"]))
        contact = organization.get("contact") or {}

        def work(session):
            now = self.now()
            ongoing = self.referrals.find_one(
                {"complaint_no": complaint_no, "status": {"$in": self.statuses.open_statuses()}},
                {"_id": 1, "status": 1}, session=session)
            if ongoing is not None:
                raise Conflict(f"the complaint is already referred ({ongoing['_id']}, {ongoing['status']})",
                               {"status": [ongoing["status"]]})
            number = self.referrals.count_documents({"complaint_no": complaint_no}, session=session) + 1
            referral_id = f"{complaint_no}-M{number}"
            body = referral_body(referral_id, complaint, region, request["reason"], negotiation, authority, now)
            doc = {
                "_id": referral_id, "complaint_no": complaint_no, "institution": complaint["institution"],
                "unit": complaint["unit"], "region": region, "organization": organization["_id"],
                "organization_name": organization["name"], "contact": contact,
                "status": self.statuses.initial, "referred_at": now, "referred_by": actor.get("sub"),
                "reason": request["reason"], "negotiation": negotiation, "consent": consent,
                "authority": authority, "authority_raises": [], "events": [], "agreement": None,
                "carried_out": None, "version": 1, "lease": None,
                "messages": [self._message(referral_key(referral_id), "referral", body)],
            }
            doc.update(self._queue(doc["messages"], now))
            self.referrals.insert_one(doc, session=session)
            outbox.stage(session, self._fact("complaint_referred", doc, now, actor.get("sub"),
                                             organization_name=organization["name"], contact=contact,
                                             reason=request["reason"]))
            return doc

        try:
            doc = in_transaction(self.db, work)
        except DuplicateKeyError:
            raise Conflict("the complaint was referred meanwhile; read it again") from None
        return {"referral_id": doc["_id"], "organization": doc["organization"], "status": doc["status"]}

    def _open_referral(self, complaint_no: str) -> dict:
        doc = self.referrals.find_one({"complaint_no": complaint_no, "status": {"$in": self.statuses.open_statuses()}})
        if doc is None:
            raise Conflict("the complaint has no referral under way", {"status": ["not referred"]})
        return doc

    def raise_authority(self, complaint: dict, data: dict, actor: dict, outbox) -> dict:
        """A higher authority for the mediator, delivered as ``mediation.authority/1``
        after whatever the organization has not received yet. The referral as it stands."""
        request = _load(RaiseSchema(), data)
        access.may("raise_authority", actor, complaint)
        referral_id = self._open_referral(complaint["complaint_no"])["_id"]
        authority = access.approve_authority(actor, request["authority"])

        def work(session):
            now = self.now()
            doc = self._fresh(referral_id, session)
            if not self.statuses.in_mediation(doc["status"]):
                raise Conflict(f"the authority cannot be raised once the referral is {doc['status']}",
                               {"status": [doc["status"]]})
            current = doc["authority"]
            if authority["currency"] != current["currency"]:
                raise Invalid("the authority keeps its currency",
                              {"authority.currency": [f"must be {current['currency']}"]})
            if Decimal(authority["max_settlement_amount"]) <= Decimal(current["max_settlement_amount"]):
                raise Invalid("a raise is above the authority in force", {"authority.max_settlement_amount": [
                    f"must be above {current['max_settlement_amount']} {current['currency']}"]})
            raise_no = len(doc["authority_raises"]) + 1
            body = authority_body(referral_id, authority, now)
            messages = [*doc["messages"], self._message(authority_key(referral_id, raise_no), "authority", body)]
            raises = [*doc["authority_raises"], {"raise_no": raise_no, "authority": authority, "at": now,
                                                 "by": actor.get("sub"), "previous": current}]
            changes = {"authority": authority, "authority_raises": raises, "messages": messages}
            if doc.get("lease") is None:  # else the attempt in flight schedules it when it ends
                changes.update(self._queue(messages, now))
            self._write(session, doc, changes)
            outbox.stage(session, self._fact("mediation_authority_raised", doc, now, actor.get("sub"),
                                             raise_no=raise_no, authority=authority))

        in_transaction(self.db, work)
        return self.referral(referral_id)

    def carried_out(self, complaint: dict, data: dict, actor: dict, outbox) -> dict:
        """The institution carried the agreement out; the referral as it stands."""
        request = _load(CarriedOutSchema(), data)
        access.may("carried_out", actor, complaint)
        referral_id = self._open_referral(complaint["complaint_no"])["_id"]
        target = self.statuses.carried_out

        def work(session):
            now = self.now()
            doc = self._fresh(referral_id, session)
            if not self.statuses.may_follow(doc["status"], target):
                raise Conflict(f"only an agreement reached can be carried out; the referral is {doc['status']}",
                               {"status": [doc["status"]]})
            record = {"at": now, "by": actor.get("sub"), "note": request.get("note")}
            self._write(session, doc, {"status": target, "carried_out": record})
            outbox.stage(session, self._fact("agreement_carried_out", doc, now, actor.get("sub"),
                                             note=request.get("note")))

        in_transaction(self.db, work)
        return self.referral(referral_id)

    # -- the organization's callbacks ---------------------------------------------------------

    def _verified(self, referral_id: str, signed: str | None, raw: bytes) -> dict:
        """The referral, once ``signed`` proves its organization sent ``raw``: NotFound for an
        unknown referral, SignatureRefused for any other signer, a stale or a bad signature."""
        doc = self.referrals.find_one({"_id": referral_id})
        if doc is None:
            raise NotFound(f"no referral {referral_id}")
        organization = self.organizations.find_one({"_id": doc["organization"]}, {"secret": 1})
        try:
            signature.verify(signed, raw, organization["secret"], now=self.now().timestamp())
        except signature.BadSignature as exc:
            raise SignatureRefused(f"the signature is refused: {exc}",
                                   {signature.HEADER: [str(exc)]}) from None
        return doc

    def callback(self, referral_id: str, body_b64: str, signed: str | None, outbox) -> dict:
        """``POST /api/v1/mediation/referrals/{id}/events`` (CONTRACTS §4): the raw body as
        base64 and its signature header. ``{"applied": bool, "referral": ...}``; applied is
        False for an ``event_id`` applied before."""
        try:
            raw = base64.b64decode(body_b64, validate=True)
        except (binascii.Error, TypeError):
            raise Invalid("the body did not cross intact", {"body": ["is not base64"]}) from None
        self._verified(referral_id, signed, raw)
        try:
            data = json.loads(raw.decode("utf-8"))
        except (UnicodeDecodeError, ValueError) as exc:
            raise Invalid("the body is not JSON", {"body": [f"is not UTF-8 JSON: {exc}"]}) from None
        report = _load(CallbackSchema(), data)
        agreement = None
        if report["status"] == "agreement_reached":
            agreement = self._agreement(report)
        marker = f"{referral_id}/{report['event_id']}"

        def work(session):
            now = self.now()
            if self.callbacks.find_one({"_id": marker}, {"_id": 1}, session=session):
                return False
            doc = self._fresh(referral_id, session)
            status, previous = report["status"], doc["status"]
            if not self.statuses.may_follow(previous, status):
                allowed = self.statuses.statuses[previous].get("next", [])
                raise Conflict(f"{status} does not follow {previous}",
                               {"status": [f"after {previous} comes one of {allowed or 'nothing'}"]})
            entry = {"event_id": report["event_id"], "status": status, "occurred_at": report["occurred_at"],
                     "received_at": now, "details": report["details"]}
            changes = {"status": status, "events": [*doc["events"], entry]}
            if agreement is not None:
                changes["agreement"] = agreement
            self._write(session, doc, changes)
            self.callbacks.insert_one({"_id": marker, "referral_id": referral_id, "status": status, "at": now},
                                      session=session)
            outbox.stage(session, self._fact(
                "mediation_status_changed", doc, now, f"organization:{doc['organization']}", status=status,
                previous=previous, callback_id=report["event_id"], occurred_at=timeutil.iso(report["occurred_at"]),
                ended=self.statuses.ends(status), agreement=_timed(agreement)))
            return True

        try:
            applied = in_transaction(self.db, work)
        except DuplicateKeyError:
            applied = False  # the same event, applied by a concurrent request
        return {"applied": applied, "referral": self.referral(referral_id)}

    def _agreement(self, report: dict) -> dict:
        terms = _load(AgreementSchema(), report["details"], prefix="details")
        signed_on: date = terms.get("signed_on") or timeutil.local(report["occurred_at"]).date()
        carry_out_by: date | None = terms.get("carry_out_by")
        if carry_out_by is not None and carry_out_by < signed_on:
            raise Invalid("the agreement is carried out after it is signed",
                          {"details.carry_out_by": [f"must not be before {signed_on.isoformat()}"]})
        return {"terms": terms["terms"], "signed_on": signed_on.isoformat(),
                "carry_out_by": carry_out_by.isoformat() if carry_out_by else None,
                "amount": terms.get("amount"), "currency": terms.get("currency")}

    # -- reading ------------------------------------------------------------------------------

    def referral(self, referral_id: str) -> dict:
        doc = self.referrals.find_one({"_id": referral_id})
        if doc is None:
            raise NotFound(f"no referral {referral_id}")
        return self._view(doc)

    def referral_for_organization(self, referral_id: str, signed: str | None) -> dict:
        """``GET`` signed by the organization like a callback, over ``"<t>."`` and no body."""
        return self._view(self._verified(referral_id, signed, b""))

    def _view(self, doc: dict) -> dict:
        messages = [{
            "idempotency_key": m["key"], "kind": m["kind"], "state": m["state"], "attempts": m["attempts"],
            "first_attempt_at": m.get("first_attempt_at"), "next_attempt_at": m.get("next_attempt_at"),
            "delivered_at": m.get("delivered_at"), "failure": m.get("failure"),
            "recent_attempts": m.get("log", []),
        } for m in doc["messages"]]
        return _timed({
            "referral_id": doc["_id"], "complaint_no": doc["complaint_no"], "institution": doc["institution"],
            "unit": doc["unit"], "region": doc["region"],
            "organization": {"code": doc["organization"], "name": doc["organization_name"],
                             "contact": doc["contact"]},
            "status": doc["status"], "referred_at": doc["referred_at"], "referred_by": doc["referred_by"],
            "reason": doc["reason"], "negotiation": doc["negotiation"], "consent": doc["consent"],
            "authority": doc["authority"], "authority_raises": doc["authority_raises"], "events": doc["events"],
            "agreement": doc["agreement"], "carried_out": doc["carried_out"],
            "delivery": {"state": doc["delivery"], "next_attempt_at": doc.get("next_attempt_at"),
                         "in_flight": doc.get("lease") is not None, "messages": messages},
            "referral": json.loads(doc["messages"][0]["body"]),
        })

    def health(self) -> dict:
        return {"status": "ok",
                "deliveries_failed": self.referrals.count_documents({"delivery": FAILED}),
                "deliveries_pending": self.referrals.count_documents({"delivery": PENDING})}

    # -- delivery ---------------------------------------------------------------------------------

    @staticmethod
    def _message(key: str, kind: str, body: dict) -> dict:
        # The body is kept as the exact text signed and sent: a redelivery is the same bytes.
        return {"key": key, "kind": kind, "body": _json(body), "state": PENDING, "attempts": 0,
                "first_attempt_at": None, "next_attempt_at": None, "delivered_at": None, "failure": None,
                "last": None, "log": []}

    @staticmethod
    def _queue(messages: list[dict], now: datetime) -> dict:
        """When the referral is next due and how its delivery stands, from its messages:
        they go in order, so the first one not delivered decides."""
        waiting = next((m for m in messages if m["state"] != MESSAGE_DELIVERED), None)
        if waiting is None:
            return {"next_attempt_at": None, "delivery": MESSAGE_DELIVERED}
        if waiting["state"] == FAILED:
            return {"next_attempt_at": None, "delivery": FAILED}
        return {"next_attempt_at": waiting.get("next_attempt_at") or now, "delivery": PENDING}

    def due(self, now: datetime, limit: int) -> list[dict]:
        return list(self.referrals.find({"next_attempt_at": {"$gte": timeutil.EPOCH, "$lte": now}},
                                        {"_id": 1, "next_attempt_at": 1})
                    .sort("next_attempt_at", ASCENDING).limit(limit))

    def claim(self, candidate: dict, now: datetime) -> str | None:
        """Take a due referral for one attempt: a conditional update that only one instance
        wins. The lease token, or None when another instance took it."""
        token = uuid.uuid4().hex
        result = self.referrals.update_one(
            {"_id": candidate["_id"], "next_attempt_at": candidate["next_attempt_at"]},
            {"$set": {"next_attempt_at": now + self.lease, "lease": token}, "$inc": {"version": 1}})
        return token if result.modified_count == 1 else None

    def deliver_due(self, outbox, limit: int = 20) -> list[dict]:
        """One attempt for each referral due now (up to ``limit``), side by side; what each
        attempt came to."""
        now = self.now()
        candidates = self.due(now, limit)
        self.rng.shuffle(candidates)  # instances running together mostly take different ones
        claimed = [(c["_id"], token) for c in candidates if (token := self.claim(c, now))]
        if not claimed:
            return []
        pool = eventlet.GreenPool(len(claimed))
        return [result for result in pool.starmap(lambda rid, token: self._attempt_logged(rid, token, outbox), claimed)
                if result is not None]

    def _attempt_logged(self, referral_id: str, token: str, outbox) -> dict | None:
        try:
            return self.attempt(referral_id, token, outbox)
        except Exception:  # the others go on; this one is due again when its lease runs out
            log.exception("delivery attempt of referral %s failed; it is retried after the lease", referral_id)
            return None

    def attempt(self, referral_id: str, token: str, outbox) -> dict | None:
        """Send the first undelivered message of a claimed referral and record the answer."""
        doc = self.referrals.find_one({"_id": referral_id})
        if doc is None or doc.get("lease") != token:
            return None
        message = next((m for m in doc["messages"] if m["state"] != MESSAGE_DELIVERED), None)
        if message is None or message["state"] != PENDING:
            return self._record(referral_id, token, None, None, outbox)  # nothing to send: let go
        organization = self.organizations.find_one({"_id": doc["organization"]})
        body = message["body"].encode("utf-8")
        headers = {"Content-Type": "application/json", "Idempotency-Key": message["key"],
                   signature.HEADER: signature.sign(organization["secret"], body, now=self.now().timestamp())}
        answer = self.send(organization["url"], body, headers, self.timeout)
        return self._record(referral_id, token, message["key"], answer, outbox)

    def _record(self, referral_id: str, token: str, key: str | None, answer: delivery.Answer | None,
                outbox) -> dict | None:
        def work(session):
            now = self.now()
            doc = self._fresh(referral_id, session)
            if doc.get("lease") != token:
                return None  # our lease ran out and another instance took the referral over
            messages = [dict(m) for m in doc["messages"]]
            message = outcome = None
            if key is not None:
                message = next(m for m in messages if m["key"] == key)
                outcome = self._answered(message, answer, now)
            self._write(session, doc, {"messages": messages, "lease": None, **self._queue(messages, now)})
            fact = message and self._delivery_fact(doc, message, outcome, answer, now)
            if fact is not None:
                outbox.stage(session, fact)
            return {"referral_id": referral_id, "key": key, "outcome": outcome,
                    "status_code": answer.status_code if answer else None}

        return in_transaction(self.db, work)

    def _answered(self, message: dict, answer: delivery.Answer, now: datetime) -> str:
        """Record one attempt on ``message``; ``delivered``, ``retry``, ``refused`` or ``gave_up``."""
        attempt = {"at": now, "status_code": answer.status_code, "error": answer.error, "took_ms": answer.took_ms}
        message["attempts"] += 1
        message["first_attempt_at"] = message["first_attempt_at"] or now
        message["last"] = attempt
        message["log"] = [*message["log"], attempt][-ATTEMPTS_SHOWN:]
        verdict = judge(answer.status_code)
        if verdict == DELIVERED:
            message.update(state=MESSAGE_DELIVERED, delivered_at=now, next_attempt_at=None)
            return DELIVERED
        if verdict == REFUSED:
            message.update(state=FAILED, next_attempt_at=None, failure={
                "cause": "refused", "status_code": answer.status_code, "error": answer.error, "at": now})
            return REFUSED
        upcoming = self.backoff.next_attempt(timeutil.local(message["first_attempt_at"]), now, message["attempts"],
                                             self.rng, answer.retry_after)
        if upcoming is None:
            message.update(state=FAILED, next_attempt_at=None, failure={
                "cause": "gave_up", "status_code": answer.status_code, "error": answer.error, "at": now})
            return "gave_up"
        message["next_attempt_at"] = upcoming
        return "retry"

    def _delivery_fact(self, doc, message, outcome, answer, now) -> dict | None:
        common = {"message": message["kind"], "idempotency_key": message["key"], "attempts": message["attempts"]}
        if outcome == DELIVERED:
            return self._fact("mediation_delivered", doc, now, None, **common)
        if outcome in (REFUSED, "gave_up"):
            log.error("referral %s: %s to %s failed for good after %d attempt(s): %s", doc["_id"], message["key"],
                      doc["organization"], message["attempts"], answer.error)
            return self._fact("mediation_delivery_failed", doc, now, None, **common, cause=message["failure"]["cause"],
                              status_code=answer.status_code, error=answer.error)
        return None

    # -- operators ------------------------------------------------------------------------------------

    def failed(self, limit: int = 100) -> list[dict]:
        """Referrals whose delivery failed for good, waiting for an operator."""
        found = []
        for doc in self.referrals.find({"delivery": FAILED}).sort("_id", ASCENDING).limit(limit):
            message = next(m for m in doc["messages"] if m["state"] == FAILED)
            found.append(_timed({"referral_id": doc["_id"], "complaint_no": doc["complaint_no"],
                                 "organization": doc["organization"], "idempotency_key": message["key"],
                                 "kind": message["kind"], "attempts": message["attempts"],
                                 "failure": message["failure"]}))
        return found

    def resend(self, referral_id: str, actor: str, outbox) -> dict:
        """Deliver again what failed for good (after the registry was corrected): a new retry
        period, with the organization's address and secret as registered now."""

        def work(session):
            now = self.now()
            doc = self._fresh(referral_id, session)
            messages = [dict(m) for m in doc["messages"]]
            failed = [m for m in messages if m["state"] == FAILED]
            if not failed:
                raise Conflict(f"nothing of {referral_id} failed; there is nothing to resend",
                               {"delivery": [doc["delivery"]]})
            for message in failed:
                message.update(state=PENDING, first_attempt_at=None, next_attempt_at=None,
                               failure=dict(message["failure"], resent_at=now, resent_by=actor))
                outbox.stage(session, self._fact("mediation_delivery_resent", doc, now, actor,
                                                 message=message["kind"], idempotency_key=message["key"],
                                                 attempts=message["attempts"]))
            changes = {"messages": messages}
            if doc.get("lease") is None:
                changes.update(self._queue(messages, now))
            self._write(session, doc, changes)

        in_transaction(self.db, work)
        return self.referral(referral_id)

    # -- storage and facts ------------------------------------------------------------------------------

    def _fresh(self, referral_id: str, session) -> dict:
        doc = self.referrals.find_one({"_id": referral_id}, session=session)
        if doc is None:
            raise NotFound(f"no referral {referral_id}")
        return doc

    def _write(self, session, doc: dict, changes: dict) -> None:
        """Apply ``changes`` to the referral if nobody changed it since ``doc`` was read."""
        result = self.referrals.update_one({"_id": doc["_id"], "version": doc["version"]},
                                           {"$set": changes, "$inc": {"version": 1}}, session=session)
        if result.matched_count != 1:
            raise Conflict("the referral changed meanwhile; try again", {"referral": [doc["_id"]]})
        doc.update(changes)
        doc["version"] += 1

    @staticmethod
    def snapshot(doc: dict, at: datetime) -> dict:
        """The referral as the complaint shows it (intake keeps the newest by ``as_of``):
        no authority, no personal data."""
        return _timed({"referral_id": doc["_id"], "status": doc["status"], "referred_at": doc["referred_at"],
                       "organization": {"code": doc["organization"], "name": doc["organization_name"],
                                        "contact": doc["contact"]},
                       "delivery": doc["delivery"], "agreement": doc["agreement"],
                       "carried_out": doc["carried_out"], "as_of": at})

    def _fact(self, name: str, doc: dict, now: datetime, actor: str | None, **body) -> dict:
        """The event of a change to ``doc`` (already changed), as an outbox message."""
        body = {"complaint_no": doc["complaint_no"], "at": timeutil.iso(now), "actor": actor,
                "referral_id": doc["_id"], "organization": doc["organization"],
                "mediation": self.snapshot(doc, now), **body}
        return event_message(events.make_event(name, doc["complaint_no"], body, PRODUCER))
