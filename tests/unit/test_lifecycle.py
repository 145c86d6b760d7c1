import pytest
from hypothesis import given
from hypothesis import strategies as st

from services.common.errors import Conflict
from services.intake.lifecycle import Lifecycle

LIFECYCLE = Lifecycle.load()

# Every status CONTRACTS.md's status messages and the HTTP actions imply.
EXPECTED_STATUSES = {"received", "assigned", "in_progress", "transfer_pending", "escalated", "decided",
                     "referred", "reopened", "closed", "withdrawn"}
EXPECTED_ACTIONS = {"assign", "accept", "transfer", "transfer_accept", "transfer_reject", "escalate", "extend",
                    "decision", "mediation", "close", "reopen", "withdraw"}


def test_every_status_and_action_is_declared():
    assert set(LIFECYCLE.statuses) == EXPECTED_STATUSES
    assert set(LIFECYCLE.actions) == EXPECTED_ACTIONS


@pytest.mark.parametrize("action, start, end", [
    ("assign", "received", "assigned"),
    ("accept", "assigned", "in_progress"),
    ("transfer", "in_progress", "transfer_pending"),
    ("transfer_accept", "transfer_pending", "in_progress"),
    ("transfer_reject", "transfer_pending", "escalated"),
    ("decision", "in_progress", "decided"),
    ("close", "decided", "closed"),
    ("reopen", "closed", "reopened"),
    ("decision", "reopened", "decided"),
    ("extend", "in_progress", "in_progress"),
    ("mediation", "decided", "referred"),
    ("close", "referred", "closed"),
    ("withdraw", "assigned", "withdrawn"),
])
def test_allowed_transitions(action, start, end):
    assert LIFECYCLE.next_status(action, start) == end


@pytest.mark.parametrize("action, start", [
    ("close", "received"),        # no decision yet
    ("decision", "closed"),       # reopen first
    ("transfer_accept", "decided"),
    ("reopen", "in_progress"),
    ("withdraw", "closed"),
    ("accept", "closed"),
])
def test_refused_transitions_are_conflicts(action, start):
    with pytest.raises(Conflict) as refused:
        LIFECYCLE.next_status(action, start)
    assert refused.value.status == 409
    assert refused.value.details["status"] == start


def test_closed_and_withdrawn_are_the_only_final_statuses():
    assert {s for s in LIFECYCLE.statuses if not LIFECYCLE.is_open(s)} == {"closed", "withdrawn"}


@given(st.lists(st.sampled_from(sorted(EXPECTED_ACTIONS)), max_size=30))
def test_any_sequence_of_actions_follows_the_declared_transitions_and_withdrawn_is_final(actions):
    status = "received"
    withdrawn = False
    for action in actions:
        before = status
        if action in LIFECYCLE.actions and before in LIFECYCLE.actions[action]["from"]:
            target = LIFECYCLE.actions[action]["to"]
            status = LIFECYCLE.next_status(action, before)
            assert status == (before if target == "same" else target)
        else:
            with pytest.raises(Conflict):
                LIFECYCLE.next_status(action, before)
        assert status in EXPECTED_STATUSES
        # Once this sequence withdrew the complaint, nothing later in it moves it again.
        withdrawn = withdrawn or status == "withdrawn"
        assert status == "withdrawn" or not withdrawn, (actions, before, action)
