"""complaint.submit/1 without a broker: every field rule, and the parsing of raw deliveries."""
import json
from datetime import datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st
from marshmallow import ValidationError

from services.common import ids, timeutil
from services.common.consumers import Delivery
from services.common.errors import flatten_errors
from services.common.fields import AMOUNT
from services.common.submission import ReceivedWindow, SubmissionSchema
from services.intake.intake import parse_delivery
from tests.support.harness import submission


def load(body, known_units=None):
    return SubmissionSchema(known_units=known_units).load(dict(body, channel=body.get("channel", "phone")))


def errors_of(body, known_units=None):
    with pytest.raises(ValidationError) as invalid:
        load(body, known_units)
    return flatten_errors(invalid.value.messages)


def test_a_realistic_complaint_loads_with_defaults():
    data = load(submission())
    assert data["currency"] == "CNY"
    assert data["direct"] is False
    assert data["group_size"] == 1
    assert data["respondent_staff"] == []
    assert data["amount_in_dispute"] == "300.00"
    assert data["received_at"].utcoffset() is not None


@pytest.mark.parametrize("change, path, message", [
    ({"schema": "complaint.submit/2"}, "schema", "must be complaint.submit/1"),
    ({"received_at": "2026-11-22T09:30:00"}, "received_at", "Not a valid aware datetime."),
    ({"institution": "银行"}, "institution", "must be an ASCII code (letters, digits, - _ . :)"),
    ({"product": "crypto"}, "product", None),
    ({"description": "x" * 20001}, "description", "Length must be between 1 and 20000."),
    ({"amount_in_dispute": "-1"}, "amount_in_dispute", "must be a non-negative amount"),
    ({"amount_in_dispute": "1000000000000000.00"}, "amount_in_dispute", "is too large"),
    ({"amount_in_dispute": "12.345"}, "amount_in_dispute", "must have at most two decimal places"),
    ({"amount_in_dispute": 300}, "amount_in_dispute", 'must be a decimal string such as "1200.00"'),
    ({"institution": "BANKA\n"}, "institution", "must be an ASCII code (letters, digits, - _ . :)"),
    ({"direct": "yes"}, "direct", "must be true or false"),
    ({"direct": 1}, "direct", "must be true or false"),
    ({"currency": "rmb"}, "currency", "must be an ISO 4217 code such as CNY"),
    ({"group_size": 0}, "group_size", "Must be greater than or equal to 1 and less than or equal to 100000."),
    ({"group_size": "25"}, "group_size", "Not a valid integer."),
    ({"cause_event": "flood"}, "cause_event", None),
    ({"respondent_staff": ["李四"]}, "respondent_staff.0", "must be an ASCII code (letters, digits, - _ . :)"),
    ({"customer": {"name": "", "phone": "13800138000"}}, "customer.name", "Length must be between 1 and 100."),
    ({"customer": {"name": "王芳", "email": "not-mail"}}, "customer.email", "Not a valid email address."),
    ({"unexpected": 1}, "unexpected", "Unknown field."),
])
def test_each_rule_names_its_field_path(change, path, message):
    found = errors_of(submission(**change))
    assert path in found
    if message is not None:
        assert message in found[path]


@pytest.mark.parametrize("written, stored", [("1000", "1000.00"), ("12.5", "12.50"), ("0.00", "0.00")])
def test_an_amount_is_stored_exactly_with_two_places(written, stored):
    assert load(submission(amount_in_dispute=written))["amount_in_dispute"] == stored


@pytest.mark.parametrize("written", ["1e3", " 12", "1_000", "+5", "1."])
def test_an_amount_is_a_plain_decimal_string_as_the_document_says(written):
    assert errors_of(submission(amount_in_dispute=written)) == {"amount_in_dispute": [AMOUNT.error]}


@pytest.mark.parametrize("missing", ["schema", "received_at", "institution", "kind", "customer", "product",
                                     "subject", "description"])
def test_required_fields(missing):
    body = submission()
    del body[missing]
    assert errors_of(body)[missing] == ["Missing data for required field."]


def test_regulator_channel_needs_its_reference():
    assert errors_of(submission(channel="regulator")) == {
        "regulator_ref": ["is required for complaints forwarded by a regulator"]}
    assert load(submission(channel="regulator", regulator_ref="SD-2026-1"))["regulator_ref"] == "SD-2026-1"


def test_the_customer_must_be_answerable():
    assert errors_of(submission(customer={"name": "王芳"})) == {
        "customer": ["give at least one of phone, email or address so the customer can be answered"]}
    assert load(submission(customer={"name": "王芳", "address": "济南市历下区泉城路1号"}))


def test_unknown_codes_once_the_organization_is_known():
    known = {"BANKA": {"BANKA", "BANKA-SD"}}
    assert load(submission(branch="NOWHERE"))  # before the organization is known
    assert errors_of(submission(branch="NOWHERE"), known) == {"branch": ["unknown branch of this institution"]}
    assert errors_of(submission(institution="BANKZ"), known) == {"institution": ["unknown institution"]}
    assert load(submission(branch="BANKA-SD"), known)["branch"] == "BANKA-SD"


def delivery(body: bytes, routing_key="complaint.submit.web", **properties):
    props = {"app_id": "cc-zj", "message_id": "m-1", "content_type": "application/json", **properties}
    return Delivery(body=body, routing_key=routing_key, properties={k: v for k, v in props.items() if v is not None},
                    headers={})


def test_parse_delivery_takes_the_channel_from_the_routing_key():
    payload, errors = parse_delivery(delivery(json.dumps(submission()).encode()))
    assert errors == {}
    assert payload["channel"] == "web"


@pytest.mark.parametrize("raw, properties, routing_key, paths", [
    (b"\xff", {}, "complaint.submit.web", {"body"}),
    (b"{", {}, "complaint.submit.web", {"body"}),
    (b'"text"', {}, "complaint.submit.web", {"body"}),
    (b"{}", {"message_id": None}, "complaint.submit.web", {"properties.message_id"}),
    (b"{}", {"content_type": "application/xml"}, "complaint.submit.web", {"properties.content_type"}),
    (b"{}", {}, "complaint.web", {"routing_key"}),
    (b"{}", {}, "complaint.submit.web.extra", {"routing_key"}),
])
def test_parse_delivery_errors(raw, properties, routing_key, paths):
    payload, errors = parse_delivery(delivery(raw, routing_key, **properties))
    assert payload is None
    assert set(errors) == paths


def test_flatten_errors_gives_dotted_paths():
    nested = {"customer": {"phone": ["bad"], "_schema": ["unanswerable"]}, "respondent_staff": {1: ["bad code"]}}
    assert flatten_errors(nested) == {"customer.phone": ["bad"], "customer": ["unanswerable"],
                                      "respondent_staff.1": ["bad code"]}


@given(st.integers(min_value=0, max_value=10**9))
def test_complaint_numbers_catch_any_single_misheard_digit(serial):
    from datetime import datetime

    number = ids.format_complaint_no("BANKA", datetime(2026, 11, 24), serial)
    assert ids.is_valid_complaint_no(number)
    digits_start = number.rindex("-") + 1
    for position in range(digits_start, len(number)):
        for digit in "0123456789":
            if digit != number[position]:
                wrong = number[:position] + digit + number[position + 1:]
                assert not ids.is_valid_complaint_no(wrong)


# -- repeats of an earlier complaint (repeat_of, new_facts) ---------------------------------

REPEATED = "BANKA-261124-0004218"


def test_a_repeat_names_the_earlier_complaint_and_defaults_to_no_new_facts():
    assert ids.is_valid_complaint_no(REPEATED)
    data = load(submission(repeat_of=REPEATED))
    assert data["repeat_of"] == REPEATED
    assert data["new_facts"] is False
    assert load(submission(repeat_of=REPEATED, new_facts=True))["new_facts"] is True


def test_a_first_complaint_carries_no_repeat_fields():
    data = load(submission())
    assert "repeat_of" not in data and "new_facts" not in data


@pytest.mark.parametrize("number", [
    "BANKA-261124-0004217",   # one digit misheard: the check digit catches it
    "banka-261124-0004218",
    "BANKA-2611240004218",
    "",
])
def test_repeat_of_must_be_a_complaint_number(number):
    assert errors_of(submission(repeat_of=number)) == {
        "repeat_of": ["is not a complaint number such as BANKA-261124-0004218 (check digit included)"]}


def test_repeat_of_must_be_a_string():
    assert errors_of(submission(repeat_of=4217)) == {"repeat_of": ["Not a valid string."]}


@pytest.mark.parametrize("value", ["true", "yes", 1, 0, ["x"]])
def test_new_facts_is_a_json_boolean(value):
    assert errors_of(submission(repeat_of=REPEATED, new_facts=value)) == {"new_facts": ["must be true or false"]}
    assert errors_of(submission(repeat_of=REPEATED, new_facts=None)) == {"new_facts": ["Field may not be null."]}


def test_new_facts_needs_repeat_of():
    assert errors_of(submission(new_facts=True)) == {"new_facts": ["is given without repeat_of"]}
    assert "new_facts" in load(submission(new_facts=False))  # false says nothing; it is harmless


# -- a plausible received_at (the same rule over AMQP and HTTP) --------------------------------

NOW = datetime(2026, 11, 24, 10, 0, tzinfo=timeutil.SHANGHAI)


def at(received_at: str, window: ReceivedWindow = ReceivedWindow()):
    return SubmissionSchema(window=window, now=lambda: NOW).load(dict(submission(received_at=received_at),
                                                                  channel="phone"))


@pytest.mark.parametrize("received_at", [
    "2026-11-24T10:04:59+08:00",            # within the clock skew
    "2026-11-24T02:00:00Z",                 # the same instant written in another offset
    "2025-11-25T10:00:00+08:00",            # 364 days ago
])
def test_a_plausible_received_at_is_taken(received_at):
    assert at(received_at)["received_at"] == datetime.fromisoformat(received_at.replace("Z", "+00:00"))


@pytest.mark.parametrize("received_at, says", [
    ("2026-11-24T10:05:01+08:00", "in the future: at most 5 minutes after now"),
    ("2099-01-01T00:00:00+08:00", "in the future"),
    ("9999-12-31T23:59:59-10:00", "in the future"),
    ("2025-11-23T10:00:00+08:00", "more than 365 days ago"),
    ("1900-01-01T00:00:00+08:05:43", "more than 365 days ago"),
    ("0001-01-01T00:00:00+14:00", "more than 365 days ago"),
])
def test_an_implausible_received_at_is_refused_saying_why(received_at, says):
    with pytest.raises(ValidationError) as refused:
        at(received_at)
    [message] = refused.value.messages["received_at"]
    assert says in message


def test_the_window_is_a_setting():
    wide = ReceivedWindow(skew=timedelta(hours=1), max_age=timedelta(days=3650))
    assert at("2026-11-24T10:30:00+08:00", wide)
    assert at("2020-01-01T00:00:00+08:00", wide)
