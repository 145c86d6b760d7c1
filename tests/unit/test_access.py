"""The rule book of who may do what (services/common/data/access.yaml), evaluated on the
shipped organization: places in the tree, recusal, transfers in flight, approvals, and the
README's table made from it."""
import itertools
import re
from pathlib import Path

import pytest
import yaml

from services.common.access import DATA as RULE_BOOK_DATA
from services.common.access import RULE_BOOK, Caller, Facts, RuleBookError, places, rule_book_from_data
from services.common.errors import Forbidden, NotFound
from services.common.orgtree import OrgTree
from services.common.policy import load_policies
from services.gateway.routes import ACTIONS
from services.routing.organization import load_organization

ORG = load_organization()
TREE = OrgTree(ORG.tree_data())
ROOT = Path(__file__).resolve().parents[2]
YT, ZF, LS, SD, WF, ZJ_SX = "BANKA-SD-YT", "BANKA-SD-YT-ZF", "BANKA-SD-YT-LS", "BANKA-SD", "BANKA-SD-WF", "BANKA-ZJ-SX"
ACTING = ("handler", "supervisor", "consumer_protection")


def caller(unit, *roles, sub=None):
    return Caller(sub or f"u-{unit}", unit, frozenset(roles or ("handler",)))


def facts(unit=ZF, offered=None, named=()):
    return Facts("BANKA", unit, offered, frozenset(named), "BANKA-261124-0000018")


def test_every_action_of_the_platform_is_in_the_book_with_its_owner():
    expected = {
        "read": "intake", "submit": "intake", "decision": "intake", "close": "intake", "reopen": "intake",
        "withdraw": "intake", "accept": "routing", "transfer": "routing", "transfer_accept": "routing",
        "transfer_reject": "routing", "escalate": "routing", "misconduct": "routing", "extend": "sla",
        "pause": "sla", "resume": "sla", "refer": "mediation", "raise_authority": "mediation",
        "record_carried_out": "mediation", "read_reports": "reporting"}
    assert {name: spec.owner for name, spec in RULE_BOOK.actions.items()} == expected
    assert {action.name for action in ACTIONS} <= set(RULE_BOOK.actions)


@pytest.mark.parametrize("unit,expected", [
    (ZF, {"own_unit", "subtree", "anywhere"}),
    (YT, {"subtree", "superior_unit", "anywhere"}),
    ("BANKA", {"subtree", "superior_unit", "head_office", "anywhere"}),
    (LS, {"anywhere"}),  # beside it
    ("INSA", {"anywhere"}),  # another institution
    ("NOWHERE", {"anywhere"}),  # not in the organization
])
def test_where_a_unit_stands_relative_to_a_complaint(unit, expected):
    assert places(caller(unit), facts(ZF), TREE) == expected


def test_a_pending_transfer_puts_the_offered_unit_and_those_above_it_in_offered_places():
    pending = facts(ZF, offered=ZJ_SX)
    assert places(caller(ZJ_SX), pending, TREE) == {"offered_unit", "offered_subtree", "anywhere"}
    assert places(caller("BANKA-ZJ"), pending, TREE) == {"offered_subtree", "anywhere"}
    assert "offered_subtree" not in places(caller(SD), pending, TREE)


def test_reading_is_for_the_units_at_or_above_it_and_the_admin_everywhere():
    for role in ("handler", "supervisor", "consumer_protection", "inspector", "auditor"):
        assert RULE_BOOK.may("read", caller(YT, role), facts(ZF), TREE)
        assert not RULE_BOOK.may("read", caller(LS, role), facts(ZF), TREE)
    assert RULE_BOOK.may("read", caller("INSA", "admin"), facts(ZF), TREE)
    with pytest.raises(NotFound):  # as if it did not exist
        RULE_BOOK.check("decision", caller(LS), facts(ZF), TREE)


def test_the_admin_reads_everything_and_acts_on_no_complaint():
    admin = caller("BANKA", "admin")
    acting = [name for name in RULE_BOOK.actions if name not in ("read", "submit", "read_reports")]
    assert not [name for name in acting if RULE_BOOK.may(name, admin, facts(ZF), TREE)]
    assert RULE_BOOK.may("submit", admin, facts(None), TREE)


@pytest.mark.parametrize("action", ["decision", "close", "reopen", "withdraw", "transfer", "escalate", "extend",
                                    "pause", "resume", "refer", "raise_authority", "record_carried_out"])
def test_acting_on_a_complaint_is_for_its_unit_and_the_units_above(action):
    for role in ACTING:
        assert RULE_BOOK.may(action, caller(ZF, role), facts(ZF), TREE)
        assert RULE_BOOK.may(action, caller(SD, role), facts(ZF), TREE)
        assert not RULE_BOOK.may(action, caller(LS, role), facts(ZF), TREE)
    for role in ("inspector", "auditor", "admin"):
        with pytest.raises(Forbidden, match=f"{action} needs"):
            RULE_BOOK.check(action, caller("BANKA", role), facts(ZF), TREE)


def test_accepting_is_for_the_accountable_unit_itself_and_misconduct_also_for_inspectors():
    assert RULE_BOOK.may("accept", caller(ZF), facts(ZF), TREE)
    assert not RULE_BOOK.may("accept", caller(YT), facts(ZF), TREE)
    assert RULE_BOOK.may("misconduct", caller(YT, "inspector"), facts(ZF), TREE)


@pytest.mark.parametrize("action", [name for name, spec in RULE_BOOK.actions.items() if spec.recusal])
def test_staff_named_in_the_complaint_may_do_nothing_on_it(action):
    named = caller(ZF, *ACTING, sub="A0027")
    pending = facts(ZF, offered=ZF, named=["A0027"])  # offered_unit too, for the transfer answers
    assert not RULE_BOOK.may(action, named, pending, TREE)
    with pytest.raises(Forbidden, match="recuse"):
        RULE_BOOK.check(action, named, pending, TREE)
    assert RULE_BOOK.may("read", named, pending, TREE)


def test_only_reading_needs_no_recusal_among_the_complaint_actions():
    assert {name for name, spec in RULE_BOOK.actions.items() if not spec.recusal} == {
        "read", "submit", "read_reports"}


BANK_UNITS = sorted(u for u in ORG.units if ORG.unit(u).institution == "BANKA")


def test_until_a_transfer_is_accepted_only_the_sender_and_the_units_above_it_act():
    answers = {"transfer_accept", "transfer_reject"}
    others = [name for name in RULE_BOOK.actions if name not in answers | {"read", "submit", "read_reports"}]
    for sender, offered in itertools.permutations(BANK_UNITS[:12], 2):
        pending = facts(sender, offered=offered)
        for role in ACTING:
            receiver = caller(offered, role)
            above_sender = offered in TREE.ancestors(sender)
            assert RULE_BOOK.may("read", receiver, pending, TREE)
            assert all(RULE_BOOK.may(name, receiver, pending, TREE) for name in answers)
            # The offered unit acts on it only when it stands above the sender anyway.
            assert [RULE_BOOK.may(name, receiver, pending, TREE) for name in others if name != "accept"] == [
                above_sender] * (len(others) - 1)
            assert all(not RULE_BOOK.may(name, caller(sender, role), pending, TREE) for name in answers)


def test_the_offered_unit_is_told_why_it_may_not_act_yet():
    with pytest.raises(Forbidden, match="pending: BANKA-SD-YT-ZF stays accountable"):
        RULE_BOOK.check("withdraw", caller(ZJ_SX), facts(ZF, offered=ZJ_SX), TREE)


def test_the_edge_refuses_early_only_roles_that_may_never_do_an_action():
    assert RULE_BOOK.roles_for("decision") == set(ACTING)
    assert RULE_BOOK.roles_for("misconduct") == {*ACTING, "inspector"}
    assert RULE_BOOK.roles_for("read") == set(RULE_BOOK.roles)
    assert RULE_BOOK.approver_roles() == {"handler", "supervisor", "consumer_protection"}


# -- approvals --------------------------------------------------------------------------------

def test_positions_are_held_by_roles_in_places():
    step = ["superior_unit", "head_office_senior_manager"]
    assert RULE_BOOK.held(step, caller(YT, "handler"), facts(YT), TREE) == []
    assert RULE_BOOK.held(step, caller(YT, "supervisor"), facts(YT), TREE) == []  # its own unit is not superior
    assert RULE_BOOK.held(step, caller(SD, "consumer_protection"), facts(YT), TREE) == ["superior_unit"]
    assert RULE_BOOK.held(step, caller("BANKA", "supervisor"), facts(YT), TREE) == step
    assert RULE_BOOK.held(["handler", "supervisor"], caller(YT, "supervisor"), facts(YT), TREE) == ["supervisor"]
    # A member of staff the complaint names holds nothing on it.
    named = caller(SD, "consumer_protection", sub="A0027")
    assert RULE_BOOK.held(step, named, facts(YT, named=["A0027"]), TREE) == []


def test_a_step_is_addressed_to_the_nearest_unit_its_positions_name():
    step = ["superior_unit", "head_office_senior_manager"]
    assert RULE_BOOK.needs(step) == ["consumer_protection", "supervisor"]
    assert RULE_BOOK.of_unit(step, facts(YT), TREE) == SD
    assert RULE_BOOK.of_unit(step, facts("BANKA"), TREE) == "BANKA"  # nobody above the head office
    assert RULE_BOOK.deciding_units(step, facts(ZF), TREE) == sorted({YT, SD, "BANKA"})
    assert RULE_BOOK.deciding_units(["supervisor"], facts(ZF), TREE) == sorted({ZF, YT, SD, "BANKA"})


def test_every_approver_the_policy_data_names_is_a_position_of_the_book():
    named = {position for policy in load_policies().policies.values() for clock in policy.clocks.values()
             for step in clock.extensions for position in step.approval}
    assert named and named <= set(RULE_BOOK.positions)


# -- the data ----------------------------------------------------------------------------------

def test_every_role_a_sample_user_holds_is_in_the_book():
    users = yaml.safe_load((ROOT / "config" / "users.yaml").read_text(encoding="utf-8"))["users"]
    assert {role for user in users for role in user["roles"]} <= set(RULE_BOOK.roles)


def test_broken_data_is_refused_with_every_problem():
    data = yaml.safe_load(RULE_BOOK_DATA.read_text(encoding="utf-8"))
    data["actions"]["decision"]["rules"][0]["roles"].append("director")
    data["actions"]["close"]["rules"][0]["where"] = ["next_door"]
    data["actions"]["raise_authority"]["approval"] = ["chairman"]
    del data["places"]["anywhere"]
    with pytest.raises(RuleBookError) as refused:
        rule_book_from_data(data)
    problems = "\n".join(refused.value.problems)
    for fault in ("director", "next_door", "chairman", "'anywhere'"):
        assert fault in problems
    assert len(refused.value.problems) == 4


def test_the_readme_table_is_the_rule_book():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    found = re.search(r"<!-- access-table -->\n(.*?)<!-- /access-table -->", readme, re.S)
    assert found, "README.md needs the rule book's table between <!-- access-table --> markers"
    assert found.group(1) == RULE_BOOK.table(), "regenerate it: python -m services.common.access"


def test_the_tree_routing_announces_is_the_tree_it_decides_with():
    from services.common import events
    from services.routing.routing import announcement

    body = announcement(ORG)
    events.make_event("organization_changed", None, body, "routing")  # valid against the catalogue
    announced = OrgTree(body["units"])
    for unit in ORG.units:
        assert announced.ancestors(unit) == tuple(u.code for u in ORG.ancestors(unit))
        assert announced.subtree(unit) == ORG.subtree(unit)
    assert body["institutions"]["BANKA"] == sorted(u for u in ORG.units if ORG.unit(u).institution == "BANKA")
