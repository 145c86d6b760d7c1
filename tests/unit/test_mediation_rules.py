"""Mediation's pure rules: the signature as CONTRACTS §4 writes it, regions, the order of
statuses, how an answer is judged, backoff, and who may act."""
import hashlib
import hmac
import random
from datetime import datetime, timedelta

import pytest

from services.common.errors import Forbidden, Invalid
from services.common.policy import SHANGHAI
from services.mediation import access, regions, signature
from services.mediation.rules import Backoff, judge, statuses

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


def test_who_may_refer_and_approve_an_authority():
    supervisor = {"sub": "s1", "roles": ["supervisor"]}
    handler = {"sub": "h1", "roles": ["handler"]}
    access.may("refer", handler, {"respondent_staff": []})
    with pytest.raises(Forbidden):
        access.may("refer", {"sub": "a1", "roles": ["auditor"]}, {})
    with pytest.raises(Forbidden):
        access.may("carried_out", handler, {"respondent_staff": ["h1"]})
    authority = {"max_settlement_amount": "500.00", "currency": "CNY"}
    assert access.approve_authority(supervisor, authority) == dict(authority, approver="s1")
    assert access.approve_authority(supervisor, dict(authority, approver="s1"))["approver"] == "s1"
    with pytest.raises(Forbidden):
        access.approve_authority(handler, authority)
    with pytest.raises(Forbidden):
        access.approve_authority({"sub": "root", "roles": ["admin"]}, authority)
    with pytest.raises(Invalid):
        access.approve_authority(supervisor, dict(authority, approver="the-president"))
