"""Mediation's pure rules: the signature as CONTRACTS §4 writes it, regions, the order of
statuses, how an answer is judged, backoff, and who may act."""
import hashlib
import hmac
import random
from datetime import datetime, timedelta

import pytest

from services.common.access import Caller, Facts
from services.common.errors import Forbidden, Invalid
from services.common.orgtree import OrgTree
from services.common.policy import SHANGHAI
from services.mediation import access, regions, signature
from services.mediation.rules import Backoff, judge, statuses
from services.routing.organization import load_organization

SECRET = "a-shared-secret-of-the-organization"


def test_the_signature_is_hmac_sha256_of_time_dot_raw_body():
    body = '{"referral_id":"X-M1","summary":"年费"}'.encode()
    header = signature.sign(SECRET, body, now=1_795_000_000)
    expected = hmac.new(SECRET.encode(), b"1795000000." + body, hashlib.sha256).hexdigest()
    assert header == f"t=1795000000,v1={expected}"
    assert signature.verify(header, body, SECRET, now=1_795_000_000 + 299) == 1_795_000_000


@pytest.mark.parametrize("header,body,secret,now,why", [
    (None, b"{}", SECRET, 1000, "missing"),
    ("t=1000", b"{}", SECRET, 1000, "must be"),
    ("v1=abc", b"{}", SECRET, 1000, "must be"),
    (signature.sign(SECRET, b"{}", now=1000), b"{} ", SECRET, 1000, "does not match"),
    (signature.sign("another-organizations-secret", b"{}", now=1000), b"{}", SECRET, 1000, "does not match"),
    (signature.sign(SECRET, b"{}", now=1000), b"{}", SECRET, 1000 + 301, "seconds away"),
    (signature.sign(SECRET, b"{}", now=1400), b"{}", SECRET, 1000, "seconds away"),
])
def test_a_signature_is_refused_with_the_reason(header, body, secret, now, why):
    with pytest.raises(signature.BadSignature) as refused:
        signature.verify(header, body, secret, now=now)
    assert why in str(refused.value)


def test_a_rotating_organization_may_sign_with_two_secrets():
    old = signature.sign("the-old-secret-0000", b"{}", now=1000)
    new = signature.sign(SECRET, b"{}", now=1000)
    both = old + "," + new.split(",")[1]
    assert signature.verify(both, b"{}", SECRET, now=1000) == 1000


def test_region_codes_and_what_covers_them():
    assert regions.problem("370602") is None and regions.problem("370000") is None
    assert "six digits" in regions.problem("37060")
    assert "province" in regions.problem("990000")
    assert "prefecture" in regions.problem("370002")
    assert regions.ancestors("370602") == ["370602", "370600", "370000"]
    assert regions.ancestors("370000") == ["370000"]
    assert regions.covers("370000", "370602") and regions.covers("370600", "370602")
    assert not regions.covers("370700", "370602") and not regions.covers("370602", "370600")
    province = {"code": "SD", "regions": ["370000"]}
    city = {"code": "YT", "regions": ["370600", "330000"]}
    twin = {"code": "AA", "regions": ["370600"]}
    assert regions.covering("370602", [province, city]) is city
    assert regions.covering("370705", [province, city]) is province
    assert regions.covering("370602", [city, twin, province]) is twin  # a tie: the smallest code
    assert regions.covering("510100", [province, city]) is None


def test_the_statuses_follow_the_contracts_order():
    book = statuses()
    assert set(book.callbacks) == {"accepted", "declined", "hearing_scheduled", "agreement_reached", "failed",
                                   "withdrawn"}
    assert book.may_follow("referred", "accepted") and book.may_follow("accepted", "agreement_reached")
    assert book.may_follow("hearing_scheduled", "hearing_scheduled")
    assert not book.may_follow("referred", "agreement_reached")
    assert not book.may_follow("failed", "accepted") and not book.may_follow("accepted", "accepted")
    assert book.may_follow("agreement_reached", book.carried_out)
    assert {s for s in book.statuses if book.ends(s)} == {"declined", "failed", "withdrawn"}
    assert book.open_statuses() == ["referred", "accepted", "hearing_scheduled", "agreement_reached"]


@pytest.mark.parametrize("status,verdict", [
    (200, "delivered"), (202, "delivered"), (204, "delivered"), (None, "retry"), (301, "retry"),
    (408, "retry"), (429, "retry"), (500, "retry"), (503, "retry"),
    (400, "refused"), (401, "refused"), (403, "refused"), (404, "refused"), (409, "refused"), (422, "refused"),
])
def test_how_an_answer_is_judged(status, verdict):
    assert judge(status) == verdict


def test_backoff_doubles_with_jitter_up_to_the_cap_for_the_whole_period():
    backoff = Backoff(base=10, cap=3600, retry_for=24 * 3600)
    rng = random.Random(1)
    for failures, ceiling in [(1, 10), (2, 20), (3, 40), (9, 2560), (10, 3600), (30, 3600)]:
        waits = [backoff.delay(failures, rng) for _ in range(200)]
        assert ceiling / 2 <= min(waits) and max(waits) <= ceiling
        assert max(waits) - min(waits) > ceiling / 4  # jittered: instances do not retry in step
    assert backoff.delay(1, rng, retry_after=120) >= 120
    assert backoff.delay(1, rng, retry_after=99999) <= 3600
    first = datetime(2026, 11, 20, 10, tzinfo=SHANGHAI)
    assert backoff.next_attempt(first, first + timedelta(hours=23, minutes=59), 40, rng) is not None
    assert backoff.next_attempt(first, first + timedelta(hours=24), 41, rng) is None


YT, SD = "BANKA-SD-YT", "BANKA-SD"
TREE = OrgTree(load_organization().tree_data())


def facts(named=()):
    """A complaint of Yantai, naming ``named`` among its staff."""
    return Facts("BANKA", YT, None, frozenset(named), "BANKA-261124-0000018")


def caller(unit, *roles, sub="u1"):
    return Caller(sub, unit, frozenset(roles))


def test_who_approves_a_mediators_authority_is_the_rule_books():
    held = {name: access.approving(access.REFER, caller(unit, *roles), facts(), TREE)[1]
            for name, unit, roles in (("handler", YT, ["handler"]), ("supervisor", YT, ["supervisor"]),
                                      ("superior", SD, ["consumer_protection"]))}
    # A referral's authority: a supervisor of the unit or above, or the superior unit.
    assert held == {"handler": [], "supervisor": ["supervisor"], "superior": ["superior_unit"]}
    # A raise: the superior unit, or a head-office supervisor; not the unit's own supervisor.
    raise_ = access.RAISE_AUTHORITY
    assert access.approving(raise_, caller(YT, "supervisor"), facts(), TREE) == (
        ("superior_unit", "head_office_senior_manager"), [])
    assert access.approving(raise_, caller(SD, "supervisor"), facts(), TREE)[1] == ["superior_unit"]
    assert access.approving(raise_, caller("BANKA", "supervisor"), facts(), TREE)[1] == [
        "superior_unit", "head_office_senior_manager"]
    # Staff the complaint names hold nothing on it.
    assert access.approving(raise_, caller(SD, "supervisor", sub="s9"), facts(named=["s9"]), TREE)[1] == []


def test_an_authority_names_its_approver_by_identity():
    authority = {"max_settlement_amount": "500.00", "currency": "CNY"}
    assert access.granted(dict(authority, approver="s1"), "s2") == dict(authority, approver="s2")
    access.named_approver(caller(YT, "supervisor", sub="s1"), dict(authority, approver="s1"))
    access.named_approver(caller(YT, "supervisor", sub="s1"), authority)
    with pytest.raises(Invalid):
        access.named_approver(caller(YT, "supervisor", sub="s1"), dict(authority, approver="the-president"))


def test_the_registry_is_the_platform_operators():
    access.may_manage_registry({"sub": "root", "roles": ["admin"]})
    with pytest.raises(Forbidden):
        access.may_manage_registry({"sub": "s1", "roles": ["supervisor", "consumer_protection"]})
