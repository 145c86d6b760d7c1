"""A referral's life: made by a handler, its authority approved (at once, or as a pending
approval a person who may decides: ``services.common.approvals``), reported on by its
organization (signed callbacks, each applied once, in the order of ``data/statuses.yaml``),
its authority raised the same way, its agreement carried out. What it sends the organization
is the courier's to deliver. Who may is the rule book's (``access``).

Storage: ``referrals`` (see ``documents``), ``callbacks``, one per callback applied, ``_id``
``<referral_id>/<event_id>``, and ``approvals`` (the common module's).
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

from services.common import approvals, timeutil
from services.common.access import RULE_BOOK, Caller, Facts
from services.common.approvals import Approvals, approver
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
from services.mediation.documents import PRODUCER, REFERRALS, fact, fresh, load, message, queue, timed, write
from services.mediation.registry import Registry
from services.mediation.rules import authority_body, authority_key, referral_body, referral_key, statuses

CALLBACKS = "callbacks"

INDEXES = {
    **approvals.INDEXES,
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
        self.approvals = Approvals(db, PRODUCER)
        self.statuses = statuses()
        self.now = now

    # -- a handler's actions, on the complaint as intake shows it and intake's facts of who is
    #    accountable for it (``access.Facts``); each answers ``{"referral": ...}`` with the ids
    #    of the events it staged, or ``{"approval": ...}``: the pending approval it became ----

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

    def _covering(self, complaint: dict, named: str | None, tree) -> tuple[dict, str | None]:
        """The organization a referral of ``complaint`` goes to, and its unit's region."""
        unit = complaint["unit"]
        region = tree.unit(unit).region if tree.has(unit) else None
        return self.registry.covering(region, named), region

    def refer(self, complaint: dict, facts: dict, data: dict, actor: dict, outbox) -> dict:
        """``POST /api/v1/complaints/{no}/mediation``. The referral grants the mediator an
        authority: a caller holding a position the rule book names for it refers at once
        (``{"referral": {"referral_id", "organization", "status"}, "events"}``); anyone
        else's referral waits for one who does (``{"approval": ...}``), and is made when
        approved, on the complaint as it then stands."""
        request = load(ReferralRequestSchema(), data)
        caller, facts = Caller.of(actor), Facts.of(facts)
        tree = self.organization.tree()
        RULE_BOOK.check(access.REFER, caller, facts, tree)
        self._referable(complaint)
        access.named_approver(caller, request["authority"])
        self._covering(complaint, request.get("organization"), tree)  # refused now, not when approved
        positions, held = access.approving(access.REFER, caller, facts, tree)

        def work(session):
            now = self.now()
            if positions and not held:
                self._none_under_way(complaint["complaint_no"], session)
                return {"approval": approvals.view(self.approvals.request(
                    session, action=access.REFER, request=_asked(data), caller=caller, facts=facts,
                    positions=list(positions), tree=tree, now=now, outbox=outbox))}
            doc, staged = self._refer(session, complaint, request, approver(caller, held), caller.sub, None, tree,
                                      now, outbox)
            return {"referral": _created(doc), "events": staged}

        return in_transaction(self.db, work)

    def _none_under_way(self, complaint_no: str, session) -> None:
        ongoing = self.referrals.find_one(
            {"complaint_no": complaint_no, "status": {"$in": self.statuses.open_statuses()}},
            {"_id": 1, "status": 1}, session=session)
        if ongoing is not None:
            raise Conflict(f"the complaint is already referred ({ongoing['_id']}, {ongoing['status']})",
                           {"status": [ongoing["status"]]})

    def _refer(self, session, complaint: dict, request: dict, person: dict, requested_by: str,
               approval_id: str | None, tree, now: datetime, outbox) -> tuple[dict, list[str]]:
        """Make the referral ``requested_by`` asked for, with the authority ``person``
        approved, in ``session``; the document and the ids of the events staged."""
        complaint_no = complaint["complaint_no"]
        self._none_under_way(complaint_no, session)
        organization, region = self._covering(complaint, request.get("organization"), tree)
        authority = access.granted(request["authority"], person["sub"])
        negotiation = [dict(entry, at=timeutil.iso(entry["at"])) for entry in request["negotiation"]]
        consent = dict(request["consent"], at=timeutil.iso(request["consent"]["at"]))
        contact = organization.get("contact") or {}
        number = self.referrals.count_documents({"complaint_no": complaint_no}, session=session) + 1
        referral_id = f"{complaint_no}-M{number}"
        body = referral_body(referral_id, complaint, region, request["reason"], negotiation, authority, now)
        doc = {
            "_id": referral_id, "complaint_no": complaint_no, "institution": complaint["institution"],
            "unit": complaint["unit"], "region": region, "organization": organization["_id"],
            "organization_name": organization["name"], "contact": contact,
            "status": self.statuses.initial, "referred_at": now, "referred_by": requested_by,
            "reason": request["reason"], "negotiation": negotiation, "consent": consent,
            "authority": authority, "approvers": [person], "approval_id": approval_id, "authority_raises": [],
            "events": [], "agreement": None, "carried_out": None, "version": 1, "lease": None,
            "messages": [message(referral_key(referral_id), "referral", body)],
        }
        doc.update(queue(doc["messages"], now))
        try:
            self.referrals.insert_one(doc, session=session)
        except DuplicateKeyError:
            raise Conflict("the complaint was referred meanwhile; read it again") from None
        referred = fact("complaint_referred", doc, now, requested_by, organization_name=organization["name"],
                        contact=contact, reason=request["reason"], approvers=[person], approval_id=approval_id)
        outbox.stage(session, referred)
        return doc, [referred["_id"]]

    def _open_referral(self, complaint_no: str) -> dict:
        doc = self.referrals.find_one({"complaint_no": complaint_no, "status": {"$in": self.statuses.open_statuses()}})
        if doc is None:
            raise Conflict("the complaint has no referral under way", {"status": ["not referred"]})
        return doc

    def raise_authority(self, complaint: dict, facts: dict, data: dict, actor: dict, outbox) -> dict:
        """A higher authority for the mediator, delivered as ``mediation.authority/1``
        after whatever the organization has not received yet: at once by a caller holding a
        position the rule book names (``{"referral": ..., "events"}``), else when a person
        who holds one approves it (``{"approval": ...}``)."""
        request = load(AuthorityRaiseSchema(), data)
        caller, facts = Caller.of(actor), Facts.of(facts)
        tree = self.organization.tree()
        RULE_BOOK.check(access.RAISE_AUTHORITY, caller, facts, tree)
        doc = self._open_referral(complaint["complaint_no"])
        if not self.statuses.in_mediation(doc["status"]):
            raise Conflict(f"the authority cannot be raised once the referral is {doc['status']}",
                           {"status": [doc["status"]]})
        access.named_approver(caller, request["authority"])
        _above(doc, request["authority"], Invalid)
        positions, held = access.approving(access.RAISE_AUTHORITY, caller, facts, tree)

        def work(session):
            now = self.now()
            if positions and not held:
                asked = {"referral_id": doc["_id"], **_asked(data)}
                return {"approval": approvals.view(self.approvals.request(
                    session, action=access.RAISE_AUTHORITY, request=asked, caller=caller, facts=facts,
                    positions=list(positions), tree=tree, now=now, outbox=outbox))}
            staged = self._raise(session, doc["_id"], request["authority"], approver(caller, held), caller.sub,
                                 None, now, outbox)
            return {"events": staged}

        answer = in_transaction(self.db, work)
        return answer if "approval" in answer else {"referral": self.referral(doc["_id"]), **answer}

    def _raise(self, session, referral_id: str, requested: dict, person: dict, requested_by: str,
               approval_id: str | None, now: datetime, outbox) -> list[str]:
        """Raise the referral's authority to ``requested`` as ``person`` approved it, in
        ``session``; the ids of the events staged. Conflict when it no longer applies (the
        mediation ended, or the authority in force reached it meanwhile)."""
        doc = fresh(self.referrals, referral_id, session)
        if not self.statuses.in_mediation(doc["status"]):
            raise Conflict(f"the authority cannot be raised once the referral is {doc['status']}",
                           {"status": [doc["status"]]})
        _above(doc, requested, Conflict)
        authority = access.granted(requested, person["sub"])
        current = doc["authority"]
        raise_no = len(doc["authority_raises"]) + 1
        body = authority_body(referral_id, authority, now)
        messages = [*doc["messages"], message(authority_key(referral_id, raise_no), "authority", body)]
        raises = [*doc["authority_raises"], {"raise_no": raise_no, "authority": authority, "at": now,
                                             "by": requested_by, "approvers": [person], "approval_id": approval_id,
                                             "previous": current}]
        changes = {"authority": authority, "authority_raises": raises, "messages": messages}
        if doc.get("lease") is None:  # else the attempt in flight schedules it when it ends
            changes.update(queue(messages, now))
        write(self.referrals, session, doc, changes)
        raised = fact("mediation_authority_raised", doc, now, requested_by, raise_no=raise_no, authority=authority,
                      approvers=[person], approval_id=approval_id)
        outbox.stage(session, raised)
        return [raised["_id"]]

    def carried_out(self, complaint: dict, facts: dict, data: dict, actor: dict, outbox) -> dict:
        """The institution carried the agreement out; the referral as it stands."""
        request = load(CarriedOutSchema(), data)
        caller, facts = Caller.of(actor), Facts.of(facts)
        RULE_BOOK.check(access.RECORD_CARRIED_OUT, caller, facts, self.organization.tree())
        referral_id = self._open_referral(complaint["complaint_no"])["_id"]
        target = self.statuses.carried_out

        def work(session):
            now = self.now()
            doc = fresh(self.referrals, referral_id, session)
            if not self.statuses.may_follow(doc["status"], target):
                raise Conflict(f"only an agreement reached can be carried out; the referral is {doc['status']}",
                               {"status": [doc["status"]]})
            record = {"at": now, "by": caller.sub, "note": request.get("note")}
            write(self.referrals, session, doc, {"status": target, "carried_out": record})
            outbox.stage(session, fact("agreement_carried_out", doc, now, caller.sub, note=request.get("note")))

        in_transaction(self.db, work)
        return self.referral(referral_id)

    # -- approvals of a mediator's authority ------------------------------------------------

    def approvals_for(self, actor: dict, pending: bool = True) -> list[dict]:
        """The approvals ``actor`` may decide (``pending``), or also decided and asked for."""
        return [approvals.view(doc) for doc in
                self.approvals.listing(Caller.of(actor), self.organization.tree(), pending)]

    def decide_approval(self, approval_id: str, decision: str, note: str, actor: dict, complaint: dict,
                        facts: dict, outbox) -> dict:
        """``approve`` (the referral is made, or the raise applied, in the same transaction)
        or ``refuse`` a pending approval, judged on the complaint as it stands; the decided
        approval and the ids of the events staged."""
        if decision not in ("approve", "refuse"):
            raise Invalid("a decision is approve or refuse", {"decision": ["must be approve or refuse"]})
        tree = self.organization.tree()

        def apply(session, approval: dict, person: dict) -> list[str]:
            request, requested_by, now = approval["request"], approval["requested_by"]["sub"], self.now()
            if approval["action"] == access.RAISE_AUTHORITY:
                authority = load(AuthorityRaiseSchema(), {"authority": request["authority"]})["authority"]
                return self._raise(session, request["referral_id"], authority, person, requested_by,
                                   approval["_id"], now, outbox)
            self._referable(complaint)
            asked = load(ReferralRequestSchema(), request)
            _, staged = self._refer(session, complaint, asked, person, requested_by, approval["_id"], tree, now,
                                    outbox)
            return staged

        decided, staged = self.approvals.decide(approval_id, decision == "approve", note, Caller.of(actor),
                                                Facts.of(facts), tree, apply=apply, now=self.now(), outbox=outbox)
        return {"approval": approvals.view(decided), "events": staged}

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


def _asked(data: dict) -> dict:
    """A request as a pending approval keeps it (and ``approval_requested`` tells it): the
    body as sent, JSON, without the actor's note."""
    return {key: value for key, value in data.items() if key != "actor"}


def _created(doc: dict) -> dict:
    return {"referral_id": doc["_id"], "organization": doc["organization"], "status": doc["status"]}


def _above(doc: dict, requested: dict, error: type[Exception]) -> None:
    """``error`` unless ``requested`` is above the authority in force, in its currency."""
    current = doc["authority"]
    if requested["currency"] != current["currency"]:
        raise error("the authority keeps its currency", {"authority.currency": [f"must be {current['currency']}"]})
    if Decimal(requested["max_settlement_amount"]) <= Decimal(current["max_settlement_amount"]):
        raise error("a raise is above the authority in force", {"authority.max_settlement_amount": [
            f"must be above {current['max_settlement_amount']} {current['currency']}"]})


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
        "authority": doc["authority"], "approvers": doc.get("approvers", []), "approval_id": doc.get("approval_id"),
        "authority_raises": doc["authority_raises"], "events": doc["events"],
        "agreement": doc["agreement"], "carried_out": doc["carried_out"],
        "delivery": {"state": doc["delivery"], "next_attempt_at": doc.get("next_attempt_at"),
                     "in_flight": doc.get("lease") is not None, "messages": messages},
        "referral": json.loads(doc["messages"][0]["body"]),
    })
