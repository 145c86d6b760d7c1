"""Bearer tokens: verified at the edge, trusted for their claims (CONTRACTS §3).

HS256 with the secret in ``JWT_SECRET`` (``services.common.config.LOCAL_JWT_SECRET`` by
default on a developer's machine). Required claims: ``sub``, ``name``, ``unit``, ``roles``
(a list), ``exp``. The token is the identity; the platform does not keep its own user list.
"""
from __future__ import annotations

import time
from dataclasses import dataclass

import jwt

from .errors import Forbidden, Unauthorized

ALGORITHMS = ["HS256"]
REQUIRED_CLAIMS = ("sub", "name", "unit", "roles", "exp")
# Allowed clock difference between the identity provider and the edge, in seconds.
LEEWAY = 30


@dataclass(frozen=True)
class Identity:
    sub: str
    name: str
    unit: str
    roles: tuple[str, ...]
    exp: int

    @property
    def is_admin(self) -> bool:
        return "admin" in self.roles

    def has_any(self, roles) -> bool:
        return any(role in roles for role in self.roles)


def issue_token(claims: dict, secret: str, ttl: int = 3600, now: float | None = None) -> str:
    """Sign a token (local tools and tests; production tokens come from the institution)."""
    now = time.time() if now is None else now
    body = {key: claims[key] for key in ("sub", "name", "unit", "roles")}
    body["iat"] = int(now)
    body["exp"] = int(now + ttl)
    return jwt.encode(body, secret, algorithm=ALGORITHMS[0])


def verify_token(token: str, secret: str) -> Identity:
    """The identity a valid token names; :class:`Unauthorized` for anything else."""
    try:
        claims = jwt.decode(
            token, secret, algorithms=ALGORITHMS, leeway=LEEWAY,
            options={"require": list(REQUIRED_CLAIMS)},
        )
    except jwt.ExpiredSignatureError:
        raise Unauthorized("The token has expired.") from None
    except jwt.MissingRequiredClaimError as exc:
        raise Unauthorized(f"The token lacks the claim {exc.claim!r}.") from None
    except jwt.InvalidTokenError:
        raise Unauthorized("The token is not valid.") from None

    problems = {}
    for claim in ("sub", "name", "unit"):
        if not isinstance(claims[claim], str) or not claims[claim].strip():
            problems[claim] = ["Must be a non-empty string."]
    roles = claims["roles"]
    if not isinstance(roles, list) or not all(isinstance(role, str) for role in roles):
        problems["roles"] = ["Must be a list of strings."]
    if problems:
        raise Unauthorized("The token's claims are malformed.", {"token": problems})
    return Identity(
        sub=claims["sub"], name=claims["name"], unit=claims["unit"],
        roles=tuple(roles), exp=int(claims["exp"]),
    )


def bearer_token(authorization: str | None) -> str:
    """The token in an ``Authorization: Bearer <token>`` header."""
    if not authorization:
        raise Unauthorized("An Authorization: Bearer token is required.")
    scheme, _, token = authorization.strip().partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise Unauthorized("The Authorization header must be 'Bearer <token>'.")
    return token.strip()


def authenticate(headers, secret: str) -> Identity:
    return verify_token(bearer_token(headers.get("Authorization")), secret)


def authorize(identity: Identity, allowed_roles) -> None:
    """:class:`Forbidden` unless the identity has one of ``allowed_roles``."""
    if not identity.has_any(allowed_roles):
        raise Forbidden(
            "Your roles do not allow this action.",
            {"roles": [f"One of {', '.join(sorted(allowed_roles))} is required."]},
        )
