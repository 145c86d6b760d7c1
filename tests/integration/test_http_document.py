"""The OpenAPI document says what the edge accepts and answers: schemathesis generates
requests from it (valid ones, and ones it calls invalid) against the real platform (edge,
intake, routing, sla over the real broker and store), with a valid token.

Every response must match the document (status, content type, headers, body). A request the
document calls valid is answered 2xx, or with a refusal the document names as semantic: 404
for a complaint that does not exist, 409 for a state that does not allow the action, and
422 only for the fields each operation lists in ``x-semantic-refusals`` (their rules depend
on data or the clock). A request it calls invalid is refused with a 4xx.
"""
from __future__ import annotations

import uuid
from datetime import timedelta

import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from schemathesis.specs.openapi.checks import positive_data_acceptance

from services.common import timeutil
from services.gateway.auth import issue_token
from services.gateway.openapi import document
from tests.support.harness import http_platform, submission, wait_until

pytestmark = [pytest.mark.integration, pytest.mark.slow]

# Every role but admin (whom routing lets read, not handle), at the head office of the
# institution the complaints below belong to: it sees them wherever escalation takes them.
CALLER = {"sub": "banka-all", "name": "总行全能", "unit": "BANKA",
          "roles": ["handler", "supervisor", "consumer_protection", "inspector"]}
EXAMPLES = 50
# Statuses a valid request may get for reasons of data the document states per operation.
SEMANTIC_STATUSES = {404, 409}

# The document as the edge serves it (test_the_served_document_is_the_one_generated).
schema = schemathesis.openapi.from_dict(document())


# Complaints the platform holds for the run (the generated actions move them along).
EXISTING: list[str] = []


@pytest.fixture(scope="module")
def platform(mongo_uri):
    with http_platform(mongo_uri) as running:
        base, config = running
        token = {"Authorization": "Bearer " + issue_token(CALLER, config.jwt_secret)}
        for _ in range(6):
            body = dict(submission(branch="BANKA-SD-YT"), channel="web")
            created = wait_until(lambda body=body: requests.post(
                f"{base}/api/v1/complaints", json=body, timeout=30,
                headers={**token, "Idempotency-Key": uuid.uuid4().hex}).json().get("complaint_no"),
                "intake takes a complaint")
            EXISTING.append(created)
        yield running
        EXISTING.clear()


def test_the_served_document_is_the_one_generated(platform):
    base, _ = platform
    assert requests.get(f"{base}/api/v1/openapi.json", timeout=30).json() == document()


@schemathesis.check
def refusals_are_documented(ctx, response, case):
    """A request the document calls valid is accepted, or refused for a reason it names."""
    meta = case.meta
    if meta is None or not meta.generation.mode.is_positive or response.status_code < 400:
        return None
    status = response.status_code
    if status in (401, 403) or status >= 500:
        return None  # other checks' business (the token is valid; who may act is not the document's)
    if status in SEMANTIC_STATUSES and str(status) in case.operation.definition.raw["responses"]:
        return None
    if status == 422:
        semantic = set(case.operation.definition.raw["responses"]["422"].get("x-semantic-refusals", ()))
        refused = set(response.json()["error"]["details"])
        if refused and refused <= semantic:
            return None
    raise AssertionError(f"A request the document calls valid was refused with {status}: {response.text[:500]}")


@schema.parametrize()
@settings(max_examples=EXAMPLES, deadline=None, derandomize=True, database=None,
          suppress_health_check=list(HealthCheck))
def test_the_edge_keeps_to_its_document(case, platform):
    base, config = platform
    token = issue_token(CALLER, config.jwt_secret)
    case.call_and_validate(base_url=base, headers={"Authorization": f"Bearer {token}"}, timeout=30,
                           excluded_checks=[positive_data_acceptance],
                           additional_checks=[refusals_are_documented])


@schemathesis.hook
def flatmap_case(context, case):
    """Valid submissions half of the time for an institution of the organization, always
    received now-ish (the plausible window moves with the clock, so the document states it
    in words), so that the happy path and its answers are checked too; invalid ones as made."""
    if case.operation.label != "POST /api/v1/complaints" or not case.meta.generation.mode.is_positive \
            or not isinstance(case.body, dict):
        return st.just(case)

    def plausible(known_institution: bool):
        case.body["received_at"] = (timeutil.now() - timedelta(hours=1)).isoformat()
        if known_institution:  # the caller's own, without a repeat of a complaint it does not hold
            case.body["institution"] = "BANKA"
            for name in ("branch", "repeat_of", "new_facts"):
                case.body.pop(name, None)
        return case

    return st.booleans().map(plausible)


@schemathesis.hook
def flatmap_path_parameters(context, path_parameters):
    """Actions and reads on complaints that exist (their state decides 200 or 409), as well
    as on numbers that do not (404)."""
    if not path_parameters or "complaint_no" not in path_parameters or not EXISTING:
        return st.just(path_parameters)
    return st.sampled_from([path_parameters["complaint_no"], *EXISTING]).map(
        lambda number: {**path_parameters, "complaint_no": number})

