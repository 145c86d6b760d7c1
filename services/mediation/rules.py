"""A referral's rules, pure: its statuses and their order (``data/statuses.yaml``), the
messages delivered to the organization (``mediation.referral/1``, ``mediation.authority/1``),
how an answer is judged and when the next attempt is due. No I/O but reading the YAML.
"""
from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import cache
from pathlib import Path

import yaml

from services.common import reference, timeutil

DATA = Path(__file__).parent / "data" / "statuses.yaml"
REFERRAL_SCHEMA = "mediation.referral/1"
AUTHORITY_SCHEMA = "mediation.authority/1"

# How an organization's answer to a delivery is taken (CONTRACTS §4).
DELIVERED, RETRY, REFUSED = "delivered", "retry", "refused"
# 4xx answers that are worth another attempt: a timeout and "too many requests".
RETRIED_4XX = (408, 429)


@dataclass(frozen=True)
class Statuses:
    statuses: dict
    initial: str
    callbacks: tuple[str, ...]
    carried_out: str

    @classmethod
    def load(cls, path: Path = DATA) -> Statuses:
        with open(path, encoding="utf-8") as handle:
            data = yaml.safe_load(handle)
        statuses = cls(statuses=data["statuses"], initial=data["initial"], callbacks=tuple(data["callbacks"]),
                       carried_out=data["carried_out"])
        statuses.check()
        return statuses

    def check(self) -> None:
        """The statuses are the contract's (``reference``), and every one named is defined."""
        named = {self.initial, self.carried_out, *self.callbacks}
        for spec in self.statuses.values():
            named.update(spec.get("next", []))
        unknown = sorted(named - set(self.statuses))
        if unknown:
            raise ValueError(f"{DATA.name} names unknown statuses {unknown}")
        if set(self.statuses) != set(reference.MEDIATION_STATUSES) or \
                set(self.callbacks) != set(reference.MEDIATION_CALLBACK_STATUSES):
            raise ValueError(f"{DATA.name}: the statuses and callbacks must be the contract's "
                             f"(services/common/reference.py)")

    def may_follow(self, current: str, new: str) -> bool:
        return new in self.statuses[current].get("next", [])

    def in_mediation(self, status: str) -> bool:
        return bool(self.statuses[status].get("in_mediation"))

    def ends(self, status: str) -> bool:
        return bool(self.statuses[status].get("ends"))

    def open_statuses(self) -> list[str]:
        return [name for name, spec in self.statuses.items() if spec.get("open")]


@cache
def statuses() -> Statuses:
    return Statuses.load()


# -- delivery ---------------------------------------------------------------------------------

def judge(status_code: int | None) -> str:
    """``delivered`` for a 2xx; ``refused`` (final, for an operator) for a 4xx other than
    408 and 429; ``retry`` for anything else, and for no answer at all."""
    if status_code is None:
        return RETRY
    if 200 <= status_code < 300:
        return DELIVERED
    if 400 <= status_code < 500 and status_code not in RETRIED_4XX:
        return REFUSED
    return RETRY


@dataclass(frozen=True)
class Backoff:
    """Exponential backoff with jitter: the n-th retry waits between half and all of
    ``base * 2**(n-1)`` seconds, at most ``cap``; retries stop once ``retry_for`` seconds
    have passed since the first attempt (so they go on for at least that long)."""

    base: float = 10.0
    cap: float = 3600.0
    retry_for: float = 24 * 3600.0

    def delay(self, failures: int, rng: random.Random | None = None, retry_after: float | None = None) -> float:
        """Seconds to wait after the ``failures``-th failed attempt (1 for the first)."""
        ceiling = min(self.cap, self.base * 2 ** max(failures - 1, 0))
        wait = ceiling / 2 + (rng or random).uniform(0, ceiling / 2)
        if retry_after is not None:
            # The organization asked for a pause (429, 503): wait at least that, within the cap.
            wait = max(wait, min(retry_after, self.cap))
        return wait

    def next_attempt(self, first_attempt_at: datetime, now: datetime, failures: int,
                     rng: random.Random | None = None, retry_after: float | None = None) -> datetime | None:
        """When to try again after a failed attempt at ``now``; None when it is time to give up."""
        if (now - first_attempt_at).total_seconds() >= self.retry_for:
            return None
        return now + timedelta(seconds=self.delay(failures, rng, retry_after))


# -- the messages -------------------------------------------------------------------------------

def referral_body(referral_id: str, complaint: dict, region: str, reason: str, negotiation: list,
                  authority: dict, referred_at: datetime) -> dict:
    """``mediation.referral/1`` (CONTRACTS §4), from the complaint as intake shows it.
    ``schema`` and ``reason`` are extensions: which message this is, and why it is referred."""
    customer = complaint.get("customer") or {}
    return {
        "schema": REFERRAL_SCHEMA,
        "referral_id": referral_id,
        "complaint_no": complaint["complaint_no"],
        "institution": complaint["institution"],
        "branch": complaint["unit"],
        "region": region,
        "customer": {"name": customer.get("name"), "phone": customer.get("phone")},
        "product": complaint["product"],
        "subject": complaint["subject"],
        "summary": complaint.get("description"),
        "demand": complaint.get("demand"),
        "amount_in_dispute": complaint.get("amount_in_dispute"),
        "currency": complaint.get("currency"),
        "negotiation": negotiation,
        "authority": authority,
        "referred_at": timeutil.iso(referred_at),
        "reason": reason,
    }


def authority_body(referral_id: str, authority: dict, raised_at: datetime) -> dict:
    """``mediation.authority/1``."""
    return {"schema": AUTHORITY_SCHEMA, "referral_id": referral_id, "authority": authority,
            "raised_at": timeutil.iso(raised_at)}


def referral_key(referral_id: str) -> str:
    return referral_id


def authority_key(referral_id: str, raise_no: int) -> str:
    return f"{referral_id}:authority:{raise_no}"
