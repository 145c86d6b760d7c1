"""The one optimistic retry every service uses after losing a race on a write."""
import pytest

from services.common.errors import Conflict, Stale
from services.common.store import CONFLICT_ATTEMPTS, retry_on_conflict


def test_a_lost_race_is_computed_again_from_a_fresh_read():
    reads = []

    def attempt():
        reads.append(len(reads))
        if len(reads) < 3:
            raise Stale("changed meanwhile")
        return f"applied on read {reads[-1]}"

    assert retry_on_conflict(attempt, "the record") == "applied on read 2"
    assert reads == [0, 1, 2]


def test_it_gives_up_after_the_stated_number_of_attempts():
    calls = []

    def attempt():
        calls.append(1)
        raise Stale("changed meanwhile")

    with pytest.raises(Conflict) as gave_up:
        retry_on_conflict(attempt, "complaint BANKA-1")
    assert len(calls) == CONFLICT_ATTEMPTS
    assert not isinstance(gave_up.value, Stale)
    assert f"complaint BANKA-1 kept changing: gave up after {CONFLICT_ATTEMPTS} attempts" == str(gave_up.value)


def test_any_other_error_is_not_retried():
    calls = []

    def attempt():
        calls.append(1)
        raise Conflict("the complaint is closed")

    with pytest.raises(Conflict, match="closed"):
        retry_on_conflict(attempt, "the record")
    assert calls == [1]


def test_a_stale_write_is_a_conflict_to_a_caller():
    assert issubclass(Stale, Conflict)
    assert Stale("x").status == 409
