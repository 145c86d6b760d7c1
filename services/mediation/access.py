"""Who may act on a referral, in one place.

The platform's rule book of who may do what (action × role × place in the tree) and its
approvals module replace what is here when they land: ``may`` becomes a question to the
rule book, and ``approve_authority`` a pending approval decided by another person where the
caller may not approve. Until then a role table decides, and an authority is approved by
the person who grants it when their role allows it.
"""
from __future__ import annotations

from services.common.errors import Forbidden, Invalid

ADMIN = "admin"
# DESIGN.md, "Access": handlers refer and record what was carried out.
ACTION_ROLES = {
    "refer": frozenset({"handler", "supervisor", "consumer_protection"}),
    "raise_authority": frozenset({"handler", "supervisor", "consumer_protection"}),
    "carried_out": frozenset({"handler", "supervisor", "consumer_protection"}),
}
# Whose word grants a mediator authority to settle (seed 000 §8: granted up front, raised
# fast, approved). A platform operator (admin) approves nothing of an institution's.
AUTHORITY_APPROVERS = frozenset({"supervisor", "consumer_protection"})


def may_manage_registry(actor: dict) -> None:
    """Forbidden unless ``actor`` is a platform operator: the registry is the platform's."""
    if ADMIN not in roles_of(actor):
        raise Forbidden("the registry of mediation organizations is managed by platform operators (admin)",
                        {"roles": ["admin is required"]})


def roles_of(actor: dict) -> set[str]:
    return set(actor.get("roles") or ())


def may(action: str, actor: dict, complaint: dict) -> None:
    """Forbidden unless ``actor`` may take ``action`` on ``complaint`` (its role, and
    recusal: staff the complaint names never act on it)."""
    roles = roles_of(actor)
    allowed = ACTION_ROLES[action]
    if not roles & allowed and ADMIN not in roles:
        raise Forbidden(f"{action.replace('_', ' ')} needs one of the roles {sorted(allowed)}",
                        {"roles": [f"one of {', '.join(sorted(allowed))} is required"]})
    if actor.get("sub") in (complaint.get("respondent_staff") or []):
        raise Forbidden("a staff member the complaint names may not act on it (recusal)")


def approve_authority(actor: dict, authority: dict) -> dict:
    """The authority as approved: the approver is the person acting, when their role may
    approve it. A body's ``approver`` naming someone else is refused: approval is an
    identity, never a string the caller writes (CONTRACTS §3)."""
    named = authority.get("approver")
    if named is not None and named != actor.get("sub"):
        raise Invalid("the approver is the person who approves, by their own token",
                      {"authority.approver": [f"must be your own id ({actor.get('sub')}) or left out"]})
    if not roles_of(actor) & AUTHORITY_APPROVERS:
        raise Forbidden(f"granting a mediator authority needs the approval of one of {sorted(AUTHORITY_APPROVERS)}",
                        {"authority": [f"one of {', '.join(sorted(AUTHORITY_APPROVERS))} approves it"]})
    return {"max_settlement_amount": authority["max_settlement_amount"], "currency": authority["currency"],
            "approver": actor["sub"]}
