"""Durable delivery of what an organization must receive (CONTRACTS §4), and the operators'
way out of a delivery that failed for good.

``deliver_due``: one indexed range query on ``next_attempt_at`` finds the referrals due;
each is claimed by a conditional update that moves ``next_attempt_at`` a lease ahead, so of
several instances exactly one sends it, and a process killed mid-attempt leaves it due
again when the lease runs out. The first undelivered message is signed with the
organization's secret as registered now and posted; the answer is recorded with its event
in one transaction; a retry is scheduled with backoff and jitter; a refusal (4xx but
408/429) or the end of the retry period is final and waits for an operator (``failed``,
``resend``).
"""
from __future__ import annotations

import logging
import random
import uuid
from collections.abc import Callable
from datetime import datetime, timedelta

import eventlet
from pymongo import ASCENDING

from services.common import timeutil
from services.common.errors import Conflict
from services.common.store import in_transaction
from services.mediation import signature, webhook
from services.mediation.documents import FAILED, PENDING, REFERRALS, fact, fresh, queue, timed, write
from services.mediation.registry import Registry
from services.mediation.rules import DELIVERED, REFUSED, Backoff, judge

log = logging.getLogger(__name__)

# An attempt in flight holds its referral at least this long (and three timeouts); a process
# killed mid-attempt leaves it due again after it. Longer than any attempt may take.
LEASE = timedelta(seconds=60)
# The attempts kept on each message for the operator (the count is kept whole).
ATTEMPTS_SHOWN = 20
GAVE_UP = "gave_up"

Sender = Callable[[str, bytes, dict, float], webhook.Answer]


class Courier:
    def __init__(self, db, registry: Registry, backoff: Backoff, timeout: float, *,
                 now: Callable[[], datetime] = timeutil.now, send: Sender = webhook.post,
                 rng: random.Random | None = None):
        self.db = db
        self.referrals = db[REFERRALS]
        self.registry = registry
        self.backoff = backoff
        self.timeout = timeout
        self.lease = max(LEASE, timedelta(seconds=3 * timeout))
        self.now = now
        self.send = send
        self.rng = rng or random.Random()

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
        message = next((m for m in doc["messages"] if m["state"] != DELIVERED), None)
        if message is None or message["state"] != PENDING:
            return self._record(referral_id, token, None, None, outbox)  # nothing to send: let go
        organization = self.registry.find(doc["organization"])
        body = message["body"].encode("utf-8")
        headers = {"Content-Type": "application/json", "Idempotency-Key": message["key"],
                   signature.HEADER: signature.sign(organization["secret"], body, now=self.now().timestamp())}
        answer = self.send(organization["url"], body, headers, self.timeout)
        return self._record(referral_id, token, message["key"], answer, outbox)

    def _record(self, referral_id: str, token: str, key: str | None, answer: webhook.Answer | None,
                outbox) -> dict | None:
        def work(session):
            now = self.now()
            doc = fresh(self.referrals, referral_id, session)
            if doc.get("lease") != token:
                return None  # our lease ran out and another instance took the referral over
            messages = [dict(m) for m in doc["messages"]]
            message = outcome = None
            if key is not None:
                message = next(m for m in messages if m["key"] == key)
                outcome = self._answered(message, answer, now)
            write(self.referrals, session, doc, {"messages": messages, "lease": None, **queue(messages, now)})
            announced = message and self._announcement(doc, message, outcome, answer, now)
            if announced is not None:
                outbox.stage(session, announced)
            return {"referral_id": referral_id, "key": key, "outcome": outcome,
                    "status_code": answer.status_code if answer else None}

        return in_transaction(self.db, work)

    def _answered(self, message: dict, answer: webhook.Answer, now: datetime) -> str:
        """Record one attempt on ``message``; ``delivered``, ``retry``, ``refused`` or ``gave_up``."""
        attempt = {"at": now, "status_code": answer.status_code, "error": answer.error, "took_ms": answer.took_ms}
        message["attempts"] += 1
        message["first_attempt_at"] = message["first_attempt_at"] or now
        message["last"] = attempt
        message["log"] = [*message["log"], attempt][-ATTEMPTS_SHOWN:]
        verdict = judge(answer.status_code)
        if verdict == DELIVERED:
            message.update(state=DELIVERED, delivered_at=now, next_attempt_at=None)
            return DELIVERED
        if verdict == REFUSED:
            return self._failed(message, REFUSED, answer, now)
        upcoming = self.backoff.next_attempt(timeutil.local(message["first_attempt_at"]), now, message["attempts"],
                                             self.rng, answer.retry_after)
        if upcoming is None:
            return self._failed(message, GAVE_UP, answer, now)
        message["next_attempt_at"] = upcoming
        return "retry"

    @staticmethod
    def _failed(message: dict, cause: str, answer: webhook.Answer, now: datetime) -> str:
        message.update(state=FAILED, next_attempt_at=None, failure={
            "cause": cause, "status_code": answer.status_code, "error": answer.error, "at": now})
        return cause

    @staticmethod
    def _announcement(doc, message, outcome, answer, now) -> dict | None:
        common = {"message": message["kind"], "idempotency_key": message["key"], "attempts": message["attempts"]}
        if outcome == DELIVERED:
            return fact("mediation_delivered", doc, now, None, **common)
        if outcome in (REFUSED, GAVE_UP):
            log.error("referral %s: %s to %s failed for good after %d attempt(s): %s", doc["_id"], message["key"],
                      doc["organization"], message["attempts"], answer.error)
            return fact("mediation_delivery_failed", doc, now, None, **common, cause=outcome,
                        status_code=answer.status_code, error=answer.error)
        return None

    # -- operators ------------------------------------------------------------------------------

    def failed(self, limit: int = 100) -> list[dict]:
        """Referrals whose delivery failed for good, waiting for an operator."""
        found = []
        for doc in self.referrals.find({"delivery": FAILED}).sort("_id", ASCENDING).limit(limit):
            message = next(m for m in doc["messages"] if m["state"] == FAILED)
            found.append(timed({"referral_id": doc["_id"], "complaint_no": doc["complaint_no"],
                                "organization": doc["organization"], "idempotency_key": message["key"],
                                "kind": message["kind"], "attempts": message["attempts"],
                                "failure": message["failure"]}))
        return found

    def resend(self, referral_id: str, actor: str, outbox) -> None:
        """Deliver again what failed for good (after the registry was corrected): a new retry
        period, with the organization's address and secret as registered now."""

        def work(session):
            now = self.now()
            doc = fresh(self.referrals, referral_id, session)
            messages = [dict(m) for m in doc["messages"]]
            failed = [m for m in messages if m["state"] == FAILED]
            if not failed:
                raise Conflict(f"nothing of {referral_id} failed; there is nothing to resend",
                               {"delivery": [doc["delivery"]]})
            for message in failed:
                message.update(state=PENDING, first_attempt_at=None, next_attempt_at=None,
                               failure=dict(message["failure"], resent_at=now, resent_by=actor))
            changes = {"messages": messages}
            if doc.get("lease") is None:
                changes.update(queue(messages, now))
            write(self.referrals, session, doc, changes)
            for message in failed:
                outbox.stage(session, fact("mediation_delivery_resent", doc, now, actor, message=message["kind"],
                                           idempotency_key=message["key"], attempts=message["attempts"]))

        in_transaction(self.db, work)
