"""The signature of every message between the platform and a mediation organization
(CONTRACTS §4): ``X-Complaint-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256 of
"<t>.<raw body>" with the organization's secret>``.

The platform signs what it delivers and verifies what organizations send (callbacks, and a
GET of a referral, signed over ``"<t>."`` and the empty body); the simulator does the same
from the other side. A header may carry several ``v1`` values (an organization rotating its
secret signs with both); one that matches is enough. A signature older or newer than
``TOLERANCE`` is refused, so a captured request cannot be replayed later.
"""
from __future__ import annotations

import hashlib
import hmac
import time

HEADER = "X-Complaint-Signature"
SCHEME = "v1"
TOLERANCE = 300  # seconds: 5 minutes


class BadSignature(Exception):
    """The header is missing, malformed, stale, or matches no secret."""


def digest(secret: str, timestamp: int, body: bytes) -> str:
    return hmac.new(secret.encode("utf-8"), f"{timestamp}.".encode("ascii") + body, hashlib.sha256).hexdigest()


def sign(secret: str, body: bytes, now: float | None = None) -> str:
    """The header value for ``body`` signed now with ``secret``."""
    timestamp = int(time.time() if now is None else now)
    return f"t={timestamp},{SCHEME}={digest(secret, timestamp, body)}"


def parse(header: str | None) -> tuple[int, list[str]]:
    """The timestamp and the v1 signatures of a header; BadSignature when malformed."""
    if not header or not header.strip():
        raise BadSignature(f"the {HEADER} header is missing")
    timestamp, signatures = None, []
    for part in header.split(","):
        key, _, value = part.strip().partition("=")
        if key == "t" and value.isdigit():
            timestamp = int(value)
        elif key == SCHEME and value:
            signatures.append(value.strip().lower())
    if timestamp is None or not signatures:
        raise BadSignature(f"the {HEADER} header must be t=<unix seconds>,{SCHEME}=<hex HMAC-SHA256>")
    return timestamp, signatures


def verify(header: str | None, body: bytes, secret: str, now: float | None = None,
           tolerance: int = TOLERANCE) -> int:
    """The signed timestamp when ``header`` signs ``body`` with ``secret`` within the
    tolerance; BadSignature otherwise (the message says which check failed)."""
    timestamp, signatures = parse(header)
    now = time.time() if now is None else now
    if abs(now - timestamp) > tolerance:
        raise BadSignature(f"the signature's time is more than {tolerance} seconds away from now")
    expected = digest(secret, timestamp, body)
    if not any(hmac.compare_digest(expected, candidate) for candidate in signatures):
        raise BadSignature("the signature does not match")
    return timestamp
