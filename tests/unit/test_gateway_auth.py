"""Bearer tokens at the edge: what is accepted, what answers 401, what answers 403."""
import time

import jwt
import pytest

from services.gateway.auth import Identity, authenticate, authorize, bearer_token, issue_token, verify_token
from services.gateway.errors import Forbidden, Unauthorized
from services.gateway.routes import BY_NAME

SECRET = "unit-test-secret-of-at-least-32-bytes"
USER = {"sub": "banka-sd-yt-handler", "name": "刘洋", "unit": "BANKA-SD-YT", "roles": ["handler"]}


def raw(claims, secret=SECRET):
    return jwt.encode(claims, secret, algorithm="HS256")


def test_a_valid_token_names_the_identity():
    identity = verify_token(issue_token(USER, SECRET), SECRET)
    assert identity == Identity(sub=USER["sub"], name="刘洋", unit="BANKA-SD-YT", roles=("handler",),
                                exp=identity.exp)
    assert not identity.is_admin
    assert identity.exp > time.time()


def test_expired_token_is_401():
    token = issue_token(USER, SECRET, ttl=-600)
    with pytest.raises(Unauthorized, match="expired"):
        verify_token(token, SECRET)


def test_small_clock_skew_is_tolerated():
    verify_token(issue_token(USER, SECRET, ttl=-5), SECRET)


def test_wrong_secret_is_401():
    with pytest.raises(Unauthorized):
        verify_token(issue_token(USER, "another-secret-of-at-least-32-bytes"), SECRET)


def test_other_algorithms_are_refused():
    unsigned = jwt.encode({**USER, "exp": int(time.time()) + 60}, None, algorithm="none")
    with pytest.raises(Unauthorized):
        verify_token(unsigned, SECRET)


def test_garbage_is_401():
    with pytest.raises(Unauthorized):
        verify_token("not.a.token", SECRET)


@pytest.mark.parametrize("claim", ["sub", "name", "unit", "roles", "exp"])
def test_each_claim_is_required(claim):
    claims = {**USER, "exp": int(time.time()) + 60}
    del claims[claim]
    with pytest.raises(Unauthorized) as caught:
        verify_token(raw(claims), SECRET)
    assert caught.value.status == 401


@pytest.mark.parametrize("bad", [{"roles": "handler"}, {"roles": [1]}, {"unit": ""}, {"name": 7}])
def test_malformed_claims_are_401(bad):
    with pytest.raises(Unauthorized, match="malformed") as caught:
        verify_token(raw({**USER, "exp": int(time.time()) + 60, **bad}), SECRET)
    assert caught.value.details["token"]


@pytest.mark.parametrize("header", [None, "", "Bearer", "Bearer ", "Basic abc", "token abc"])
def test_authorization_header_must_be_bearer(header):
    with pytest.raises(Unauthorized):
        bearer_token(header)


def test_authenticate_reads_the_header():
    headers = {"Authorization": f"Bearer {issue_token(USER, SECRET)}"}
    assert authenticate(headers, SECRET).unit == "BANKA-SD-YT"


def test_unauthorized_asks_for_a_bearer_token():
    assert Unauthorized("x").headers["WWW-Authenticate"].startswith("Bearer")


@pytest.mark.parametrize("roles,allowed", [
    (("handler",), True), (("supervisor",), True), (("consumer_protection",), True), (("admin",), True),
    (("auditor",), False), (("inspector",), False), ((), False), (("unknown",), False),
    (("auditor", "handler"), True),
])
def test_who_may_submit(roles, allowed):
    identity = Identity("u", "n", "BANKA", roles, 0)
    if allowed:
        authorize(identity, BY_NAME["submit_complaint"].roles)
    else:
        with pytest.raises(Forbidden) as caught:
            authorize(identity, BY_NAME["submit_complaint"].roles)
        assert caught.value.status == 403


def test_every_role_may_read():
    for role in ("handler", "supervisor", "consumer_protection", "inspector", "auditor", "admin"):
        for name in ("get_complaint", "list_complaints", "org_units"):
            authorize(Identity("u", "n", "BANKA", (role,), 0), BY_NAME[name].roles)


def test_only_health_and_openapi_are_public_and_the_mediation_callbacks_signed():
    public = {route.name for route in BY_NAME.values() if route.roles is None and not route.signed}
    assert public == {"health", "openapi"}
    signed_only = {route.name for route in BY_NAME.values() if route.roles is None and route.signed}
    assert signed_only == {"mediation_callback"}
