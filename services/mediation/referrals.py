"""A referral's life: made by a handler, reported on by its organization (signed callbacks,
each applied once, in the order of ``data/statuses.yaml``), its authority raised, its
agreement carried out. What it sends the organization is the courier's to deliver.

Storage: ``referrals`` (see ``documents``) and ``callbacks``, one per callback applied,
``_id`` ``<referral_id>/<event_id>``.
"""
from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Callable
from datetime import date, datetime
from decimal import Decimal

from pymongo import ASCENDING, IndexModel
from pymongo.errors import DuplicateKeyError

from services.common import timeutil
from services.common.errors import Conflict, Invalid, NotFound, SignatureRefused
from services.common.mediation import (
    AgreementSchema,
    AuthorityRaiseSchema,
    CarriedOutSchema,
    MediationCallbackSchema,
    ReferralRequestSchema,
)
from services.common.orgtree import AnnouncedOrganization
from services.common.store import in_transaction
from services.mediation import access, documents, signature
from services.mediation.documents import REFERRALS, fact, fresh, load, message, queue, timed, write
from services.mediation.registry import Registry
from services.mediation.rules import authority_body, authority_key, referral_body, referral_key, statuses

CALLBACKS = "callbacks"

INDEXES = {
    REFERRALS: [
        IndexModel([("next_attempt_at", ASCENDING)], name="due"),
        IndexModel([("complaint_no", ASCENDING)], name="by_complaint"),
        IndexModel([("delivery", ASCENDING)], name="by_delivery"),
    ],
    CALLBACKS: [],
}


class Referrals:
    def __init__(self, db, registry: Registry, organization: AnnouncedOrganization,
                 now: Callable[[], datetime] = timeutil.now):
        self.db = db
        self.referrals = db[REFERRALS]
        self.callbacks = db[CALLBACKS]
        self.registry = registry
        self.organization = organization
        self.statuses = statuses()
        self.now = now

    # -- a handler's actions ----------------------------------------------------------------

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
        request = load(ReferralRequestSchema(), data)
        access.may("refer", actor, complaint)
        self._referable(complaint)
        authority = access.approve_authority(actor, request["authority"])
        tree = self.organization.tree()
        region = tree.unit(complaint["unit"]).region if tree.has(complaint["unit"]) else None
        organization = self.registry.covering(region, request.get("organization"))
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
                "messages": [message(referral_key(referral_id), "referral", body)],
            }
            doc.update(queue(doc["messages"], now))
            self.referrals.insert_one(doc, session=session)
            outbox.stage(session, fact("complaint_referred", doc, now, actor.get("sub"),
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
        request = load(AuthorityRaiseSchema(), data)
        access.may("raise_authority", actor, complaint)
        referral_id = self._open_referral(complaint["complaint_no"])["_id"]
        authority = access.approve_authority(actor, request["authority"])

        def work(session):
            now = self.now()
            doc = fresh(self.referrals, referral_id, session)
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
            messages = [*doc["messages"], message(authority_key(referral_id, raise_no), "authority", body)]
            raises = [*doc["authority_raises"], {"raise_no": raise_no, "authority": authority, "at": now,
                                                 "by": actor.get("sub"), "previous": current}]
            changes = {"authority": authority, "authority_raises": raises, "messages": messages}
            if doc.get("lease") is None:  # else the attempt in flight schedules it when it ends
                changes.update(queue(messages, now))
            write(self.referrals, session, doc, changes)
            outbox.stage(session, fact("mediation_authority_raised", doc, now, actor.get("sub"), raise_no=raise_no,
                                       authority=authority))

        in_transaction(self.db, work)
        return self.referral(referral_id)

    def carried_out(self, complaint: dict, data: dict, actor: dict, outbox) -> dict:
        """The institution carried the agreement out; the referral as it stands."""
        request = load(CarriedOutSchema(), data)
        access.may("carried_out", actor, complaint)
        referral_id = self._open_referral(complaint["complaint_no"])["_id"]
        target = self.statuses.carried_out

        def work(session):
            now = self.now()
            doc = fresh(self.referrals, referral_id, session)
            if not self.statuses.may_follow(doc["status"], target):
                raise Conflict(f"only an agreement reached can be carried out; the referral is {doc['status']}",
                               {"status": [doc["status"]]})
            record = {"at": now, "by": actor.get("sub"), "note": request.get("note")}
            write(self.referrals, session, doc, {"status": target, "carried_out": record})
            outbox.stage(session, fact("agreement_carried_out", doc, now, actor.get("sub"), note=request.get("note")))

        in_transaction(self.db, work)
        return self.referral(referral_id)

    # -- the organization's callbacks -----------------------------------------------------

    def _verified(self, referral_id: str, signed: str | None, raw: bytes) -> dict:
        """The referral, once ``signed`` proves its organization sent ``raw``: NotFound for an
        unknown referral, SignatureRefused for any other signer, a stale or a bad signature."""
        doc = self.referrals.find_one({"_id": referral_id})
        if doc is None:
            raise NotFound(f"no referral {referral_id}")
        try:
            signature.verify(signed, raw, self.registry.find(doc["organization"])["secret"],
                             now=self.now().timestamp())
        except signature.BadSignature as exc:
            raise SignatureRefused(f"the signature is refused: {exc}", {signature.HEADER: [str(exc)]}) from None
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
        report = load(MediationCallbackSchema(), data)
        agreement = self._agreement(report) if report["status"] == "agreement_reached" else None
        marker = f"{referral_id}/{report['event_id']}"

        def work(session):
            now = self.now()
            if self.callbacks.find_one({"_id": marker}, {"_id": 1}, session=session):
                return False
            doc = fresh(self.referrals, referral_id, session)
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
            write(self.referrals, session, doc, changes)
            self.callbacks.insert_one({"_id": marker, "referral_id": referral_id, "status": status, "at": now},
                                      session=session)
            outbox.stage(session, fact(
                "mediation_status_changed", doc, now, f"organization:{doc['organization']}", status=status,
                previous=previous, callback_id=report["event_id"], occurred_at=timeutil.iso(report["occurred_at"]),
                ended=self.statuses.ends(status), agreement=agreement))
            return True

        try:
            applied = in_transaction(self.db, work)
        except DuplicateKeyError:
            applied = False  # the same event, applied by a concurrent request
        return {"applied": applied, "referral": self.referral(referral_id)}

    @staticmethod
    def _agreement(report: dict) -> dict:
        terms = load(AgreementSchema(), report["details"], prefix="details")
        signed_on: date = terms.get("signed_on") or timeutil.local(report["occurred_at"]).date()
        carry_out_by: date | None = terms.get("carry_out_by")
        if carry_out_by is not None and carry_out_by < signed_on:
            raise Invalid("the agreement is carried out after it is signed",
                          {"details.carry_out_by": [f"must not be before {signed_on.isoformat()}"]})
        return {"terms": terms["terms"], "signed_on": signed_on.isoformat(),
                "carry_out_by": carry_out_by.isoformat() if carry_out_by else None,
                "amount": terms.get("amount"), "currency": terms.get("currency")}

    # -- reading --------------------------------------------------------------------------

    def referral(self, referral_id: str) -> dict:
        doc = self.referrals.find_one({"_id": referral_id})
        if doc is None:
            raise NotFound(f"no referral {referral_id}")
        return view(doc)

    def referral_for_organization(self, referral_id: str, signed: str | None) -> dict:
        """``GET`` signed by the organization like a callback, over ``"<t>."`` and no body."""
        return view(self._verified(referral_id, signed, b""))

    def pending_deliveries(self) -> dict:
        return {"deliveries_failed": self.referrals.count_documents({"delivery": documents.FAILED}),
                "deliveries_pending": self.referrals.count_documents({"delivery": documents.PENDING})}


def view(doc: dict) -> dict:
    """A referral as handlers and its organization see it (CONTRACTS §4, JSON-ready)."""
    messages = [{
        "idempotency_key": m["key"], "kind": m["kind"], "state": m["state"], "attempts": m["attempts"],
        "first_attempt_at": m.get("first_attempt_at"), "next_attempt_at": m.get("next_attempt_at"),
        "delivered_at": m.get("delivered_at"), "failure": m.get("failure"), "recent_attempts": m.get("log", []),
    } for m in doc["messages"]]
    return timed({
        "referral_id": doc["_id"], "complaint_no": doc["complaint_no"], "institution": doc["institution"],
        "unit": doc["unit"], "region": doc["region"],
        "organization": {"code": doc["organization"], "name": doc["organization_name"], "contact": doc["contact"]},
        "status": doc["status"], "referred_at": doc["referred_at"], "referred_by": doc["referred_by"],
        "reason": doc["reason"], "negotiation": doc["negotiation"], "consent": doc["consent"],
        "authority": doc["authority"], "authority_raises": doc["authority_raises"], "events": doc["events"],
        "agreement": doc["agreement"], "carried_out": doc["carried_out"],
        "delivery": {"state": doc["delivery"], "next_attempt_at": doc.get("next_attempt_at"),
                     "in_flight": doc.get("lease") is not None, "messages": messages},
        "referral": json.loads(doc["messages"][0]["body"]),
    })
