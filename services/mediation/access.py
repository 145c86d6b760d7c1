"""Who may act on mediation, in one place: the platform's rule book
(``services/common/data/access.yaml``) for the actions on a complaint, and the one rule of
mediation's own about an authority's approver.

The rule book names mediation's actions (``refer``, ``raise_authority``,
``record_carried_out``): who may do each (role × place in the tree), recusal (a member of
staff the complaint names does nothing on its mediation), and the positions that approve the
authority a referral grants and a raise (``approval``). A caller who holds one of them
approves with their own request; anyone else's waits as a pending approval
(``services.common.approvals``) for a person who holds one.

The registry of mediation organizations is platform configuration, not an action on a
complaint: it is the platform operators' (``admin``).
"""
from __future__ import annotations

from services.common.access import RULE_BOOK, Caller, Facts
from services.common.errors import Forbidden, Invalid
from services.common.orgtree import OrgTree

REFER, RAISE_AUTHORITY, RECORD_CARRIED_OUT = "refer", "raise_authority", "record_carried_out"
ADMIN = "admin"


def may_manage_registry(actor: dict) -> None:
    """Forbidden unless ``actor`` is a platform operator: the registry is the platform's."""
    if ADMIN not in Caller.of(actor).roles:
        raise Forbidden("the registry of mediation organizations is managed by platform operators (admin)",
                        {"roles": ["admin is required"]})


def approving(action: str, caller: Caller, facts: Facts, tree: OrgTree) -> tuple[tuple[str, ...], list[str]]:
    """The positions that approve ``action``'s authority, and those of them ``caller`` holds
    (none: the request waits for a person who holds one)."""
    positions = RULE_BOOK.action(action).approval
    return positions, RULE_BOOK.held(positions, caller, facts, tree)


def named_approver(caller: Caller, authority: dict) -> None:
    """Approval is an identity, never a string the caller writes (CONTRACTS §3): a body's
    ``approver`` naming anyone but the caller is refused."""
    named = authority.get("approver")
    if named is not None and named != caller.sub:
        raise Invalid("the approver is the person who approves, by their own token",
                      {"authority.approver": [f"must be your own id ({caller.sub}) or left out"]})


def granted(authority: dict, approver_sub: str) -> dict:
    """The authority as delivered (``mediation.authority/1``): named by who approved it."""
    return {"max_settlement_amount": authority["max_settlement_amount"], "currency": authority["currency"],
            "approver": approver_sub}
